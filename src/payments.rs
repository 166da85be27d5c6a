//! The seam to a payment processor. Test mode has a built-in processor with
//! Stripe's well-known test cards; live mode has none configured yet, so
//! live links refuse payment (a real connector is later work).

use async_trait::async_trait;

use crate::domain::Currency;
use crate::domain::card::Card;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded,
    Declined { message: String },
}

#[async_trait]
pub trait PaymentProcessor: Send + Sync + 'static {
    /// Charges `amount` minor units of `currency` to `card`.
    async fn charge(&self, amount: i64, currency: Currency, card: &Card) -> ChargeOutcome;
}

pub const TEST_CARD_SUCCEEDS: &str = "4242424242424242";
pub const TEST_CARD_DECLINED: &str = "4000000000000002";

/// Test mode: `4242 4242 4242 4242` succeeds, `4000 0000 0000 0002` is
/// declined, and any other (real-looking) number is refused, as real
/// processors do in test mode.
pub struct TestProcessor;

#[async_trait]
impl PaymentProcessor for TestProcessor {
    async fn charge(&self, _amount: i64, _currency: Currency, card: &Card) -> ChargeOutcome {
        match card.number() {
            TEST_CARD_SUCCEEDS => ChargeOutcome::Succeeded,
            TEST_CARD_DECLINED => ChargeOutcome::Declined {
                message: "Your card was declined.".into(),
            },
            _ => ChargeOutcome::Declined {
                message: "Your card was declined: this is a test-mode link, use a test card such as 4242 4242 4242 4242."
                    .into(),
            },
        }
    }
}

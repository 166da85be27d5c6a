//! The seam to a payment processor, and the built-in test processor.
//!
//! Every call carries the payment attempt, whose id is the processor's
//! idempotency key: charging the same attempt twice returns the first
//! answer, and asking about an attempt (the reconciler does, for attempts a
//! crash or a timeout left pending) returns what became of it. A processor
//! that never saw an attempt closes it as failed when asked, so a charge
//! that arrives later cannot succeed behind the reconciler's back.
//!
//! Live mode has no processor configured yet, so live links refuse
//! payment (the Stripe connector is later work).

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;

use crate::domain::card::Card;
use crate::domain::{ChargeOutcome, PaymentAttempt, ids};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The processor could not be reached or did not answer; the attempt
    /// stays pending and is asked about again later.
    #[error("the payment processor is unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for ProcessorError {
    fn from(error: StoreError) -> Self {
        ProcessorError::Unavailable(error.to_string())
    }
}

#[async_trait]
pub trait PaymentProcessor: Send + Sync + 'static {
    /// The name stored with each attempt (`test`, `stripe`).
    fn name(&self) -> &'static str;
    /// Charges `attempt.amount` of `attempt.currency` to `card`, with the
    /// attempt id as idempotency key.
    async fn charge(
        &self,
        attempt: &PaymentAttempt,
        card: &Card,
    ) -> Result<ChargeOutcome, ProcessorError>;
    /// What became of `attempt`; an attempt the processor never saw is
    /// closed as declined, for good.
    async fn outcome(&self, attempt: &PaymentAttempt) -> Result<ChargeOutcome, ProcessorError>;
}

pub const TEST_CARD_SUCCEEDS: &str = "4242424242424242";
pub const TEST_CARD_DECLINED: &str = "4000000000000002";
/// What the test processor answers about an attempt that never reached it.
pub const ABANDONED_MESSAGE: &str =
    "The payment was interrupted before it reached the processor; you have not been charged.";

/// Test mode: `4242 4242 4242 4242` succeeds, `4000 0000 0000 0002` is
/// declined, and any other (real-looking) number is refused, as real
/// processors do in test mode. Its ledger is a table of the store (the
/// first answer for an attempt id is kept), so its answers survive
/// restarts and agree across nodes.
pub struct TestProcessor {
    store: Arc<dyn Store>,
}

impl TestProcessor {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl PaymentProcessor for TestProcessor {
    fn name(&self) -> &'static str {
        "test"
    }

    async fn charge(
        &self,
        attempt: &PaymentAttempt,
        card: &Card,
    ) -> Result<ChargeOutcome, ProcessorError> {
        let decided = match card.number() {
            TEST_CARD_SUCCEEDS => ChargeOutcome::Succeeded {
                payment_id: ids::new_payment_id(),
            },
            TEST_CARD_DECLINED => ChargeOutcome::Declined {
                message: "Your card was declined.".into(),
            },
            _ => ChargeOutcome::Declined {
                message: "Your card was declined: this is a test-mode link, use a test card such as 4242 4242 4242 4242."
                    .into(),
            },
        };
        Ok(self
            .store
            .record_test_charge(&attempt.id, &decided, Timestamp::now())
            .await?)
    }

    async fn outcome(&self, attempt: &PaymentAttempt) -> Result<ChargeOutcome, ProcessorError> {
        let abandoned = ChargeOutcome::Declined {
            message: ABANDONED_MESSAGE.into(),
        };
        Ok(self
            .store
            .record_test_charge(&attempt.id, &abandoned, Timestamp::now())
            .await?)
    }
}

//! Payment attempts: the durable record of every try to take a link's money.
//!
//! An attempt is written in the same transaction that moves its link
//! `active -> processing`, and settled (succeeded or failed) in the same
//! transaction that moves the link on. Its id is the idempotency key of
//! every call to the processor, so a retry or a reconciler's question can
//! never charge twice, and a `processing` link always has exactly one
//! pending attempt that someone can finish.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::money::Currency;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Written with `active -> processing`; the processor call may or may
    /// not have happened.
    Pending,
    Succeeded,
    Failed,
}

impl AttemptState {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptState::Pending => "pending",
            AttemptState::Succeeded => "succeeded",
            AttemptState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentAttempt {
    /// `pa_...`; also the processor's idempotency key.
    pub id: String,
    pub link_id: String,
    pub account_id: String,
    pub livemode: bool,
    pub amount: i64,
    pub currency: Currency,
    /// Which processor takes it (`test`, `stripe`).
    pub processor: String,
    pub state: AttemptState,
    /// The processor's payment id, once succeeded.
    pub payment_id: Option<String>,
    /// The processor's own id of this attempt's payment as soon as it
    /// exists (a Stripe PaymentIntent, made before it is confirmed), so a
    /// crash after that point can be reconciled by asking about it.
    pub processor_reference: Option<String>,
    /// Why it failed, in words fit for the customer.
    pub failure_message: Option<String>,
    /// Only the brand and last four digits of a card are ever kept.
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a processor says became of an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ChargeOutcome {
    Succeeded {
        payment_id: String,
    },
    Declined {
        message: String,
    },
    /// Not settled: the customer must authenticate (3-D Secure) on the
    /// page, with this secret of the processor's payment; its outcome
    /// arrives later (webhook, the page's return, or the reconciler).
    RequiresAction {
        client_secret: String,
    },
}

impl PaymentAttempt {
    /// The attempt as settled by `outcome` at `now`.
    pub fn settled(&self, outcome: &ChargeOutcome, now: Timestamp) -> PaymentAttempt {
        let mut settled = self.clone();
        settled.updated_at = now.max(self.updated_at);
        match outcome {
            ChargeOutcome::Succeeded { payment_id } => {
                settled.state = AttemptState::Succeeded;
                settled.payment_id = Some(payment_id.clone());
            }
            ChargeOutcome::Declined { message } => {
                settled.state = AttemptState::Failed;
                settled.failure_message = Some(message.clone());
            }
            ChargeOutcome::RequiresAction { .. } => {}
        }
        settled
    }
}

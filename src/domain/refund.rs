//! Refunds: money given back on a paid link, and the automatic refund of a
//! payment that succeeded at the processor for a link that could no longer
//! take it (cancelled or expired meanwhile, or already paid by another
//! attempt).
//!
//! A refund is reserved on its link before the processor is called: the
//! transition that writes it `pending` also adds its amount to the link's
//! `amount_refunded` (as Stripe counts pending refunds in a charge's
//! `amount_refunded`), version-checked like every transition, so refunds
//! can never add up to more than the amount, however many run at once. Its
//! outcome is written with the link's next transition: a failure gives the
//! reserved amount back. Its id is the processor's idempotency key.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::money::Currency;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Reserved on the link; the processor call may or may not have happened.
    Pending,
    Succeeded,
    Failed,
}

impl RefundState {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Pending => "pending",
            RefundState::Succeeded => "succeeded",
            RefundState::Failed => "failed",
        }
    }
}

/// Why a refund exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundKind {
    /// The merchant asked for it (`POST /v1/payment-links/{id}/refunds`).
    Requested,
    /// paylink gave back a payment that succeeded for a link that was no
    /// longer payable: money is never kept for a cancelled link. It does not
    /// count in the link's `amount_refunded` (the link was never paid by it)
    /// and it is retried until the processor confirms it.
    LatePayment,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// `re_...`; also the processor's idempotency key.
    pub id: String,
    pub link_id: String,
    pub account_id: String,
    pub livemode: bool,
    /// Minor units of `currency`, > 0.
    pub amount: i64,
    pub currency: Currency,
    pub kind: RefundKind,
    /// The merchant's words (see `domain::Reason`), or paylink's for a
    /// late payment.
    pub reason: Option<String>,
    /// The processor that took the payment and gives it back.
    pub processor: String,
    /// The processor's id of the payment refunded (`pay_...`, `pi_...`).
    pub payment_id: String,
    /// The processor's id of the refund, once it answered.
    pub processor_refund_id: Option<String>,
    pub state: RefundState,
    pub failure_message: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a processor says became of a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RefundOutcome {
    Succeeded { processor_refund_id: String },
    Failed { message: String },
}

impl Refund {
    /// The refund as settled by `outcome` at `now`.
    pub fn settled(&self, outcome: &RefundOutcome, now: Timestamp) -> Refund {
        let mut settled = self.clone();
        settled.updated_at = now.max(self.updated_at);
        match outcome {
            RefundOutcome::Succeeded {
                processor_refund_id,
            } => {
                settled.state = RefundState::Succeeded;
                settled.processor_refund_id = Some(processor_refund_id.clone());
            }
            RefundOutcome::Failed { message } => {
                settled.state = RefundState::Failed;
                settled.failure_message = Some(message.clone());
            }
        }
        settled
    }
}

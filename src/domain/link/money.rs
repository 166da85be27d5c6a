//! A payment and its refunds: attempts started, settled, refunded.

use jiff::Timestamp;

use crate::domain::event::{Actor, EventType};
use crate::domain::payment::{AttemptState, ChargeOutcome, PaymentAttempt};
use crate::domain::reason::Reason;
use crate::domain::refund::{Refund, RefundKind, RefundOutcome, RefundState};
use crate::domain::validation::FieldError;

use super::*;

/// What a new refund needs beyond the link.
#[derive(Debug, Clone)]
pub struct RefundStart<'a> {
    pub refund_id: &'a str,
    /// Default: what is left to refund.
    pub amount: Option<i64>,
    pub reason: Option<String>,
    /// The processor that took the payment.
    pub processor: &'a str,
    pub actor: Actor,
}

/// What a new payment attempt needs beyond the link.
#[derive(Debug, Clone, Copy)]
pub struct AttemptStart<'a> {
    pub attempt_id: &'a str,
    pub processor: &'a str,
    pub card_brand: Option<&'a str>,
    pub card_last4: Option<&'a str>,
}

impl Link {
    /// A customer starts paying: active -> processing.
    /// A customer starts paying: active -> processing, with the pending
    /// attempt `attempt_id` at `processor` written in the same transaction.
    pub fn begin_payment(
        &self,
        start: AttemptStart<'_>,
        now: Timestamp,
    ) -> Result<Transition, StateConflict> {
        if self.status != LinkStatus::Active {
            return Err(StateConflict {
                status: self.status,
                message: format!("This payment link is {}.", self.status.as_str()),
            });
        }
        let mut next = self.next(now);
        next.status = LinkStatus::Processing;
        let mut transition =
            self.transition(next, EventType::PaymentStarted, Actor::Customer, None, now);
        transition.attempt = Some(PaymentAttempt {
            id: start.attempt_id.to_owned(),
            link_id: self.id.clone(),
            account_id: self.account_id.clone(),
            livemode: self.livemode,
            amount: self.amount,
            currency: self.currency,
            processor: start.processor.to_owned(),
            state: AttemptState::Pending,
            payment_id: None,
            processor_reference: None,
            failure_message: None,
            card_brand: start.card_brand.map(str::to_owned),
            card_last4: start.card_last4.map(str::to_owned),
            created_at: now,
            updated_at: now,
        });
        Ok(transition)
    }

    /// The processor's answer for the pending `attempt`: processing -> paid
    /// or back to active, with the attempt settled in the same transaction.
    /// If the link's time ran out meanwhile, the caller's next
    /// [`Link::expire_if_due`] stores the expiry as its own transition, so
    /// each fact keeps its own event.
    pub fn settle_payment(
        &self,
        attempt: &PaymentAttempt,
        outcome: &ChargeOutcome,
        now: Timestamp,
    ) -> Result<Transition, StateConflict> {
        self.require_processing()?;
        if attempt.state != AttemptState::Pending || attempt.link_id != self.id {
            return Err(StateConflict {
                status: self.status,
                message: format!("The payment attempt {} is already settled.", attempt.id),
            });
        }
        let mut next = self.next(now);
        let mut transition = match outcome {
            ChargeOutcome::Succeeded { payment_id } => {
                next.status = LinkStatus::Paid;
                next.paid_at = Some(now);
                next.payment_id = Some(payment_id.clone());
                self.transition(next, EventType::Paid, Actor::Customer, None, now)
            }
            ChargeOutcome::Declined { message } => {
                next.status = LinkStatus::Active;
                // Only brand and last four digits are ever recorded.
                let detail = match (&attempt.card_brand, &attempt.card_last4) {
                    (Some(brand), Some(last4)) => format!("{message} ({brand} ending {last4})"),
                    _ => message.clone(),
                };
                self.transition(
                    next,
                    EventType::PaymentFailed,
                    Actor::Customer,
                    Some(detail),
                    now,
                )
            }
            ChargeOutcome::RequiresAction { .. } => {
                return Err(StateConflict {
                    status: self.status,
                    message: "A payment waiting for authentication is not settled yet.".into(),
                });
            }
        };
        transition.attempt = Some(attempt.settled(outcome, now));
        Ok(transition)
    }

    /// A payment the processor took for `attempt` after this link stopped
    /// being payable by it (cancelled or expired meanwhile, or paid by
    /// another attempt): the attempt is recorded as succeeded and, in the
    /// same transaction, an automatic refund of it is reserved, so money is
    /// never kept for a link that did not sell.
    pub fn refund_late_payment(
        &self,
        attempt: &PaymentAttempt,
        payment_id: &str,
        refund_id: &str,
        now: Timestamp,
    ) -> Result<Transition, StateConflict> {
        // A failed attempt may still turn out to have taken money (its
        // customer finished 3-D Secure after paylink gave up on it).
        let open = matches!(attempt.state, AttemptState::Pending | AttemptState::Failed);
        if !open || attempt.link_id != self.id {
            return Err(StateConflict {
                status: self.status,
                message: format!("The payment attempt {} is already settled.", attempt.id),
            });
        }
        let reason = match self.status {
            LinkStatus::Active | LinkStatus::Processing => format!(
                "The payment attempt {} succeeded after it had been closed as failed; it is refunded automatically.",
                attempt.id
            ),
            status => format!(
                "A payment of this link succeeded after it was {}; it is refunded automatically.",
                status.as_str()
            ),
        };
        let refund = Refund {
            id: refund_id.to_owned(),
            link_id: self.id.clone(),
            account_id: self.account_id.clone(),
            livemode: self.livemode,
            amount: attempt.amount,
            currency: attempt.currency,
            kind: RefundKind::LatePayment,
            reason: Some(reason.clone()),
            processor: attempt.processor.clone(),
            payment_id: payment_id.to_owned(),
            processor_refund_id: None,
            state: RefundState::Pending,
            failure_message: None,
            created_at: now,
            updated_at: now,
        };
        let next = self.next(now);
        let mut transition = self.transition(
            next,
            EventType::RefundCreated,
            Actor::System,
            Some(reason),
            now,
        );
        let mut settled = attempt.settled(
            &ChargeOutcome::Succeeded {
                payment_id: payment_id.to_owned(),
            },
            now,
        );
        settled.failure_message = None;
        transition.attempt = Some(settled);
        transition.event.refund = Some(refund.clone());
        transition.refund = Some(refund);
        Ok(transition)
    }

    /// What is left to refund.
    pub fn refundable(&self) -> i64 {
        self.amount - self.amount_refunded
    }

    /// Reserves a refund of a paid link: `amount_refunded` grows by it in
    /// the transition that writes the refund pending.
    pub fn begin_refund(
        &self,
        start: RefundStart<'_>,
        now: Timestamp,
    ) -> Result<Transition, UpdateError> {
        if self.status != LinkStatus::Paid {
            return Err(UpdateError::State(StateConflict {
                status: self.status,
                message: format!(
                    "Only a paid link can be refunded; this one is {}.",
                    self.status.as_str()
                ),
            }));
        }
        let Some(payment_id) = self.payment_id.clone() else {
            return Err(UpdateError::State(StateConflict {
                status: self.status,
                message: "This link has no payment to refund.".into(),
            }));
        };
        let left = self.refundable();
        if left <= 0 {
            return Err(UpdateError::State(StateConflict {
                status: self.status,
                message: "This payment has been refunded in full already.".into(),
            }));
        }
        let amount = start.amount.unwrap_or(left);
        if amount <= 0 {
            return Err(UpdateError::Field(FieldError::new(
                "amount",
                format!("`amount` must be a positive integer in minor units (got {amount})."),
            )));
        }
        if amount > left {
            return Err(UpdateError::Field(FieldError::new(
                "amount",
                format!(
                    "`amount` ({amount}) is more than what is left to refund ({left} of {} {}).",
                    self.amount,
                    self.currency.code()
                ),
            )));
        }
        let reason = Reason::parse_optional(start.reason.clone()).map_err(UpdateError::Field)?;
        let refund = Refund {
            id: start.refund_id.to_owned(),
            link_id: self.id.clone(),
            account_id: self.account_id.clone(),
            livemode: self.livemode,
            amount,
            currency: self.currency,
            kind: RefundKind::Requested,
            reason: reason.map(Reason::into_string),
            processor: start.processor.to_owned(),
            payment_id,
            processor_refund_id: None,
            state: RefundState::Pending,
            failure_message: None,
            created_at: now,
            updated_at: now,
        };
        let mut next = self.next(now);
        next.amount_refunded += amount;
        let mut transition = self.transition(
            next,
            EventType::RefundCreated,
            start.actor,
            start.reason,
            now,
        );
        transition.event.refund = Some(refund.clone());
        transition.refund = Some(refund);
        Ok(transition)
    }

    /// The processor's answer for the pending `refund`: `payment_link.refunded`,
    /// or `payment_link.refund_failed` with the reserved amount given back.
    pub fn settle_refund(
        &self,
        refund: &Refund,
        outcome: &RefundOutcome,
        now: Timestamp,
    ) -> Result<Transition, StateConflict> {
        if refund.state != RefundState::Pending || refund.link_id != self.id {
            return Err(StateConflict {
                status: self.status,
                message: format!("The refund {} is already settled.", refund.id),
            });
        }
        let mut next = self.next(now);
        let settled = refund.settled(outcome, now);
        let (event_type, reason) = match outcome {
            RefundOutcome::Succeeded { .. } => (EventType::Refunded, refund.reason.clone()),
            RefundOutcome::Failed { message } => {
                if refund.kind == RefundKind::Requested {
                    next.amount_refunded = (next.amount_refunded - refund.amount).max(0);
                }
                (EventType::RefundFailed, Some(message.clone()))
            }
        };
        let mut transition = self.transition(next, event_type, Actor::System, reason, now);
        transition.event.refund = Some(settled.clone());
        transition.refund = Some(settled);
        Ok(transition)
    }

    fn require_processing(&self) -> Result<(), StateConflict> {
        if self.status != LinkStatus::Processing {
            return Err(StateConflict {
                status: self.status,
                message: format!(
                    "No payment is in progress on this link (it is {}).",
                    self.status.as_str()
                ),
            });
        }
        Ok(())
    }
}

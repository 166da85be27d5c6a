//! The payment link and its status machine.
//!
//! Each transition is a pure function from the current link to a
//! [`Transition`]: the new state plus the event that records it, tagged with
//! the version it was computed from. A store applies it only if the stored
//! version still matches, which is what makes racing writers safe.
//!
//! [`creation`] makes a link from a merchant's request (and validates it);
//! here it expires; [`changes`] cancels and updates one; [`money`] moves it through
//! a payment and its refunds.

mod changes;
mod creation;
mod money;

pub use changes::{LinkUpdate, UpdateError};
pub use creation::*;
pub use money::{AttemptStart, RefundStart};

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::event::{Actor, EventType, LinkEvent};
use super::money::Currency;
use super::payment::PaymentAttempt;
use super::refund::Refund;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    Active,
    Processing,
    Paid,
    Expired,
    Cancelled,
}

impl LinkStatus {
    pub const ALL: [LinkStatus; 5] = [
        LinkStatus::Active,
        LinkStatus::Processing,
        LinkStatus::Paid,
        LinkStatus::Expired,
        LinkStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Active => "active",
            LinkStatus::Processing => "processing",
            LinkStatus::Paid => "paid",
            LinkStatus::Expired => "expired",
            LinkStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Terminal statuses never change again (Zelta's expired -> cancelled
    /// is the one documented exception, granted by its cancel policy).
    pub fn is_terminal(self) -> bool {
        match self {
            LinkStatus::Paid | LinkStatus::Expired | LinkStatus::Cancelled => true,
            LinkStatus::Active | LinkStatus::Processing => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentType {
    OneTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Customer {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
    pub unit_amount: i64,
}

/// A stored payment link. `amount` and `currency` never change after creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub id: String,
    pub account_id: String,
    pub livemode: bool,
    pub slug: String,
    pub amount: i64,
    pub currency: Currency,
    pub description: Option<String>,
    pub payment_type: PaymentType,
    pub customer: Option<Customer>,
    pub line_items: Option<Vec<LineItem>>,
    pub order_reference: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub status: LinkStatus,
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub cancelled_at: Option<Timestamp>,
    /// The merchant's internal reason for a cancel: API, events and
    /// webhooks only, never a public page.
    pub cancellation_reason: Option<String>,
    /// What the hosted page tells the customer about a cancel, when the
    /// merchant chose to say something.
    #[serde(default)]
    pub customer_message: Option<String>,
    pub paid_at: Option<Timestamp>,
    pub payment_id: Option<String>,
    /// Minor units given back or being given back (pending refunds count,
    /// as in a Stripe charge's `amount_refunded`); never above `amount`.
    #[serde(default)]
    pub amount_refunded: i64,
    /// Bumped by every transition; the optimistic-concurrency token.
    pub version: i64,
}

/// A new state of a link with its event, valid only if the stored link is
/// still at `expected_version`.
#[derive(Debug, Clone)]
pub struct Transition {
    pub expected_version: i64,
    pub link: Link,
    pub event: LinkEvent,
    /// The payment attempt this transition starts (written new) or settles
    /// (written only if it is still pending), in the same transaction.
    pub attempt: Option<PaymentAttempt>,
    /// The refund this transition reserves (written new) or settles
    /// (written only if it is still pending), in the same transaction.
    pub refund: Option<Refund>,
}

/// Why a state-changing request is refused: the link is not in a status
/// that allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConflict {
    pub status: LinkStatus,
    pub message: String,
}

impl Link {
    /// The status every reader sees: an active link whose `expires_at` has
    /// passed is expired whether or not the sweeper has stored that yet.
    pub fn effective_status(&self, now: Timestamp) -> LinkStatus {
        match self.status {
            LinkStatus::Active if self.expires_at <= now => LinkStatus::Expired,
            status => status,
        }
    }

    /// The link as a reader at `now` must see it.
    pub fn as_seen_at(mut self, now: Timestamp) -> Self {
        if self.effective_status(now) != self.status {
            self.updated_at = self.expires_at;
            self.status = LinkStatus::Expired;
        }
        self
    }

    fn next(&self, now: Timestamp) -> Link {
        let mut next = self.clone();
        next.version = self.version + 1;
        next.updated_at = now.max(self.updated_at);
        next
    }

    fn transition(
        &self,
        next: Link,
        event_type: EventType,
        actor: Actor,
        reason: Option<String>,
        now: Timestamp,
    ) -> Transition {
        let event = LinkEvent::new(event_type, &next, actor, reason, now);
        Transition {
            expected_version: self.version,
            link: next,
            event,
            attempt: None,
            refund: None,
        }
    }

    /// Stores the expiry of an active link whose time has come; `None` when
    /// there is nothing to expire. Run before any write so that writes see
    /// the same status as reads.
    pub fn expire_if_due(&self, now: Timestamp) -> Option<Transition> {
        if self.effective_status(now) != LinkStatus::Expired || self.status == LinkStatus::Expired {
            return None;
        }
        let mut next = self.next(now);
        next.status = LinkStatus::Expired;
        Some(self.transition(next, EventType::Expired, Actor::System, None, now))
    }
}

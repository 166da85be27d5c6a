//! Events: the record of every transition, written in the same transaction
//! as the transition itself (the outbox webhooks deliver from).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::ids;
use super::link::Link;
use super::refund::Refund;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "payment_link.created")]
    Created,
    #[serde(rename = "payment_link.updated")]
    Updated,
    #[serde(rename = "payment_link.processing")]
    PaymentStarted,
    #[serde(rename = "payment_link.paid")]
    Paid,
    #[serde(rename = "payment_link.payment_failed")]
    PaymentFailed,
    #[serde(rename = "payment_link.cancelled")]
    Cancelled,
    #[serde(rename = "payment_link.expired")]
    Expired,
    /// A refund was reserved and sent to the processor (`refund.status`
    /// is `pending`).
    #[serde(rename = "payment_link.refund_created")]
    RefundCreated,
    /// The processor gave the money back.
    #[serde(rename = "payment_link.refunded")]
    Refunded,
    /// The processor refused the refund; its amount is refundable again.
    #[serde(rename = "payment_link.refund_failed")]
    RefundFailed,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::Created,
        EventType::Updated,
        EventType::PaymentStarted,
        EventType::Paid,
        EventType::PaymentFailed,
        EventType::Cancelled,
        EventType::Expired,
        EventType::RefundCreated,
        EventType::Refunded,
        EventType::RefundFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "payment_link.created",
            EventType::Updated => "payment_link.updated",
            EventType::PaymentStarted => "payment_link.processing",
            EventType::Paid => "payment_link.paid",
            EventType::PaymentFailed => "payment_link.payment_failed",
            EventType::Cancelled => "payment_link.cancelled",
            EventType::Expired => "payment_link.expired",
            EventType::RefundCreated => "payment_link.refund_created",
            EventType::Refunded => "payment_link.refunded",
            EventType::RefundFailed => "payment_link.refund_failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Events that put a link in a status it never leaves.
    pub fn is_terminal(self) -> bool {
        match self {
            EventType::Paid | EventType::Cancelled | EventType::Expired => true,
            EventType::Created
            | EventType::Updated
            | EventType::PaymentStarted
            | EventType::PaymentFailed
            | EventType::RefundCreated
            | EventType::Refunded
            | EventType::RefundFailed => false,
        }
    }
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// A merchant request, by the id (never the secret) of its API key.
    ApiKey { id: String },
    /// The customer on the hosted page.
    Customer,
    /// paylink itself (the expiry sweeper).
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEvent {
    pub id: String,
    pub event_type: EventType,
    pub created_at: Timestamp,
    pub actor: Actor,
    pub reason: Option<String>,
    /// The link right after the transition.
    pub link: Link,
    /// For updates: the changed fields' values before the change.
    pub previous_attributes: Option<serde_json::Value>,
    /// For refund events: the refund as this event left it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<Refund>,
}

impl LinkEvent {
    pub fn new(
        event_type: EventType,
        link: &Link,
        actor: Actor,
        reason: Option<String>,
        now: Timestamp,
    ) -> Self {
        Self {
            id: ids::new_event_id(),
            event_type,
            created_at: now,
            actor,
            reason,
            link: link.clone(),
            previous_attributes: None,
            refund: None,
        }
    }
}

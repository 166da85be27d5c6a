//! Events (the audit trail) and their webhook deliveries.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::webhook::delivery::{Delivery, DeliveryStatus};
use crate::domain::{self, LinkEvent};
use crate::web::schemas::actor_tag;

use super::*;

/// Who caused an event, told apart by `type` (the discriminator).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[schema(discriminator(property_name = "type", mapping(
    ("api_key" = "#/components/schemas/ApiKeyActor"),
    ("customer" = "#/components/schemas/CustomerActor"),
    ("system" = "#/components/schemas/SystemActor"),
)))]
pub enum ActorBody {
    ApiKey(ApiKeyActor),
    Customer(CustomerActor),
    System(SystemActor),
}

/// An API request, by the key's id (never the secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyActor {
    /// `api_key`.
    #[serde(rename = "type")]
    #[schema(schema_with = actor_tag::api_key)]
    pub kind: &'static str,
    #[schema(example = "key_8Kq2mD4xW1pZ")]
    pub id: String,
}

/// The customer, on the hosted page.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerActor {
    /// `customer`.
    #[serde(rename = "type")]
    #[schema(schema_with = actor_tag::customer)]
    pub kind: &'static str,
}

/// paylink itself: an expiry, the reconciler, a processor's webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct SystemActor {
    /// `system`.
    #[serde(rename = "type")]
    #[schema(schema_with = actor_tag::system)]
    pub kind: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventData {
    /// The payment link right after the event.
    pub object: PaymentLinkResource,
    /// For `payment_link.updated`: changed fields' previous values.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub previous_attributes: Option<serde_json::Value>,
    /// For `payment_link.refund_created`, `.refunded` and `.refund_failed`:
    /// the refund as the event left it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund: Option<RefundResource>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventResource {
    pub id: String,
    /// Always `event`.
    pub object: &'static str,
    /// `payment_link.created`, `.updated`, `.processing`, `.paid`,
    /// `.payment_failed`, `.cancelled`, `.expired`, `.refund_created`,
    /// `.refunded` or `.refund_failed`.
    #[serde(rename = "type")]
    #[schema(schema_with = crate::web::schemas::event_type)]
    pub event_type: String,
    pub created_at: Timestamp,
    pub actor: ActorBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub data: EventData,
}

impl EventResource {
    pub fn new(event: LinkEvent, public_url: &str) -> Self {
        Self {
            id: event.id,
            object: "event",
            event_type: event.event_type.as_str().to_owned(),
            created_at: event.created_at,
            actor: match event.actor {
                domain::Actor::ApiKey { id } => ActorBody::ApiKey(ApiKeyActor {
                    kind: "api_key",
                    id,
                }),
                domain::Actor::Customer => ActorBody::Customer(CustomerActor { kind: "customer" }),
                domain::Actor::System => ActorBody::System(SystemActor { kind: "system" }),
            },
            reason: event.reason,
            data: EventData {
                object: PaymentLinkResource::new(event.link, public_url),
                previous_attributes: event.previous_attributes,
                refund: event.refund.map(RefundResource::from),
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    /// Always `list`.
    pub object: &'static str,
    /// Oldest first.
    pub data: Vec<EventResource>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPageBody {
    /// Always `list`.
    pub object: &'static str,
    /// Newest first.
    pub data: Vec<EventResource>,
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatusBody {
    Pending,
    Succeeded,
    Failed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptBody {
    pub attempted_at: Timestamp,
    /// The receiver's HTTP status; null when no response came.
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    /// Why the attempt failed; null on success.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryBody {
    /// The webhook endpoint's id.
    pub endpoint: String,
    pub status: DeliveryStatusBody,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<Timestamp>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptBody>,
    pub created_at: Timestamp,
}

impl From<Delivery> for DeliveryBody {
    fn from(delivery: Delivery) -> Self {
        Self {
            endpoint: delivery.endpoint_id,
            status: match delivery.status {
                DeliveryStatus::Pending => DeliveryStatusBody::Pending,
                DeliveryStatus::Succeeded => DeliveryStatusBody::Succeeded,
                DeliveryStatus::Failed => DeliveryStatusBody::Failed,
            },
            next_attempt_at: delivery.next_attempt_at,
            attempts: delivery
                .attempts
                .into_iter()
                .map(|attempt| AttemptBody {
                    attempted_at: attempt.attempted_at,
                    status_code: attempt.status_code,
                    latency_ms: attempt.latency_ms,
                    error: attempt.error,
                })
                .collect(),
            created_at: delivery.created_at,
        }
    }
}

/// An event with its webhook deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    pub event: EventResource,
    /// One per endpoint the event was sent to.
    pub deliveries: Vec<DeliveryBody>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeliverRequest {
    /// Only this endpoint (`we_...`); by default every enabled endpoint
    /// that wants the event's type.
    pub endpoint: Option<String>,
}

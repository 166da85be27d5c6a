//! The native v1 wire format: request and response bodies, translated to and
//! from domain types. Kept apart from the domain so the JSON contract (and
//! the OpenAPI document generated from these types) is explicit.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::domain::link::{LinkUpdate, NewLink};
use crate::domain::webhook::delivery::{Delivery, DeliveryStatus};
use crate::domain::webhook::endpoint::{PayloadFormat, WebhookEndpoint};
use crate::domain::{self, LinkEvent, LinkStatus};
use crate::service::{EndpointUpdate, NewEndpoint};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentLinkStatus {
    Active,
    Processing,
    Paid,
    Expired,
    Cancelled,
}

impl From<LinkStatus> for PaymentLinkStatus {
    fn from(status: LinkStatus) -> Self {
        match status {
            LinkStatus::Active => Self::Active,
            LinkStatus::Processing => Self::Processing,
            LinkStatus::Paid => Self::Paid,
            LinkStatus::Expired => Self::Expired,
            LinkStatus::Cancelled => Self::Cancelled,
        }
    }
}

impl From<PaymentLinkStatus> for LinkStatus {
    fn from(status: PaymentLinkStatus) -> Self {
        match status {
            PaymentLinkStatus::Active => Self::Active,
            PaymentLinkStatus::Processing => Self::Processing,
            PaymentLinkStatus::Paid => Self::Paid,
            PaymentLinkStatus::Expired => Self::Expired,
            PaymentLinkStatus::Cancelled => Self::Cancelled,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerBody {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineItemBody {
    pub product_id: String,
    pub name: String,
    /// At least 1.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub quantity: i64,
    /// Minor units, > 0.
    #[schema(minimum = 1, maximum = 99_999_999_999_i64)]
    pub unit_amount: i64,
}

/// Create a payment link. Give `amount`, or `line_items` (then `amount`,
/// if also given, must equal their sum).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentLinkRequest {
    /// Minor units of `currency` (4995 = $49.95; JPY has no minor unit), > 0.
    #[schema(minimum = 1, maximum = 99_999_999_999_i64)]
    pub amount: Option<i64>,
    /// ISO 4217 code, e.g. `USD` (any case; stored upper case).
    #[schema(pattern = "^[A-Za-z]{3}$", example = "USD")]
    pub currency: String,
    /// At most 1000 characters.
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    /// Only `one_time`, the default.
    pub payment_type: Option<String>,
    pub customer: Option<CustomerBody>,
    pub line_items: Option<Vec<LineItemBody>>,
    /// Your order id, at most 255 characters; filterable, not unique.
    #[schema(min_length = 1, max_length = 255)]
    pub order_reference: Option<String>,
    /// Up to 50 string keys (<= 40 chars) with string values (<= 500 chars).
    pub metadata: Option<BTreeMap<String, String>>,
    /// Absolute http(s) URL.
    #[schema(max_length = 2048)]
    pub success_url: Option<String>,
    /// Absolute http(s) URL.
    #[schema(max_length = 2048)]
    pub cancel_url: Option<String>,
    /// RFC 3339; in the future and at most one year ahead. Default: 14 days from now.
    pub expires_at: Option<Timestamp>,
}

impl From<CreatePaymentLinkRequest> for NewLink {
    fn from(request: CreatePaymentLinkRequest) -> Self {
        NewLink {
            amount: request.amount,
            currency: Some(request.currency),
            description: request.description,
            payment_type: request.payment_type,
            customer: request.customer.map(|c| domain::Customer {
                email: c.email,
                first_name: c.first_name,
                last_name: c.last_name,
            }),
            line_items: request.line_items.map(|items| {
                items
                    .into_iter()
                    .map(|item| domain::LineItem {
                        product_id: item.product_id,
                        name: item.name,
                        quantity: item.quantity,
                        unit_amount: item.unit_amount,
                    })
                    .collect()
            }),
            order_reference: request.order_reference,
            metadata: request.metadata,
            success_url: request.success_url,
            cancel_url: request.cancel_url,
            expires_at: request.expires_at,
        }
    }
}

/// Change an active link. `metadata` merges into the existing metadata; a
/// key set to `""` or `null` is removed. `description: null` clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePaymentLinkRequest {
    pub expires_at: Option<Timestamp>,
    pub metadata: Option<BTreeMap<String, Option<String>>>,
    #[serde(default, deserialize_with = "present_or_null")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
}

/// Distinguishes an absent field (outer `None`) from an explicit `null`.
fn present_or_null<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(deserializer)?))
}

impl From<UpdatePaymentLinkRequest> for LinkUpdate {
    fn from(request: UpdatePaymentLinkRequest) -> Self {
        LinkUpdate {
            expires_at: request.expires_at,
            metadata: request.metadata.map(|changes| {
                changes
                    .into_iter()
                    .map(|(key, value)| (key, value.filter(|v| !v.is_empty())))
                    .collect()
            }),
            description: request.description,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[schema(schema_with = crate::web::schemas::reason)]
    pub reason: Option<String>,
}

/// Bulk cancel: the list filters as top-level fields, plus `reason` and `dry_run`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkCancelRequest {
    pub status: Option<PaymentLinkStatus>,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
    pub order_reference: Option<String>,
    pub product_id: Option<String>,
    /// Every pair must match.
    pub metadata: Option<BTreeMap<String, String>>,
    /// 1..1000, default 1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Continue after this link id (the last of the previous call).
    pub starting_after: Option<String>,
    #[schema(schema_with = crate::web::schemas::reason)]
    pub reason: Option<String>,
    /// Report what would happen; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Required (`true`) to act with no filter at all, on every link of
    /// the account and mode: a stray empty POST must not cancel them.
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentLinkResource {
    pub id: String,
    /// Always `payment_link`.
    pub object: &'static str,
    pub livemode: bool,
    /// The hosted payment page.
    pub url: String,
    pub slug: String,
    /// Minor units.
    pub amount: i64,
    pub currency: String,
    pub description: Option<String>,
    pub payment_type: String,
    pub customer: Option<CustomerBody>,
    pub line_items: Option<Vec<LineItemBody>>,
    pub order_reference: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub status: PaymentLinkStatus,
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub cancelled_at: Option<Timestamp>,
    pub cancellation_reason: Option<String>,
    pub paid_at: Option<Timestamp>,
    pub payment_id: Option<String>,
    /// Minor units refunded or being refunded (pending refunds count).
    pub amount_refunded: i64,
}

impl PaymentLinkResource {
    pub fn new(link: domain::Link, public_url: &str) -> Self {
        Self {
            url: crate::web::hosted_url(public_url, &link.slug),
            id: link.id,
            object: "payment_link",
            livemode: link.livemode,
            slug: link.slug,
            amount: link.amount,
            currency: link.currency.code().to_owned(),
            description: link.description,
            payment_type: "one_time".to_owned(),
            customer: link.customer.map(|c| CustomerBody {
                email: c.email,
                first_name: c.first_name,
                last_name: c.last_name,
            }),
            line_items: link.line_items.map(|items| {
                items
                    .into_iter()
                    .map(|item| LineItemBody {
                        product_id: item.product_id,
                        name: item.name,
                        quantity: item.quantity,
                        unit_amount: item.unit_amount,
                    })
                    .collect()
            }),
            order_reference: link.order_reference,
            metadata: link.metadata,
            success_url: link.success_url,
            cancel_url: link.cancel_url,
            status: link.status.into(),
            expires_at: link.expires_at,
            created_at: link.created_at,
            updated_at: link.updated_at,
            cancelled_at: link.cancelled_at,
            cancellation_reason: link.cancellation_reason,
            paid_at: link.paid_at,
            payment_id: link.payment_id,
            amount_refunded: link.amount_refunded,
        }
    }
}

/// Refund a paid link: all that is left (the default) or `amount`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRefundRequest {
    /// Minor units, > 0 and at most what is left to refund; default: all of it.
    #[schema(minimum = 1, maximum = 99_999_999_999_i64)]
    pub amount: Option<i64>,
    #[schema(schema_with = crate::web::schemas::reason)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundKindBody {
    /// Asked for through the API.
    Requested,
    /// Made by paylink: a payment that succeeded after its link was
    /// cancelled or expired is given back automatically.
    LatePayment,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundResource {
    /// `re_...`
    pub id: String,
    /// Always `refund`.
    pub object: &'static str,
    pub payment_link: String,
    pub livemode: bool,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: String,
    pub status: RefundStatus,
    pub kind: RefundKindBody,
    pub reason: Option<String>,
    /// The payment refunded (the link's `payment_id`).
    pub payment_id: String,
    /// The processor's id of the refund (`re_...` at Stripe), once made.
    pub processor_refund_id: Option<String>,
    pub failure_message: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<domain::Refund> for RefundResource {
    fn from(refund: domain::Refund) -> Self {
        Self {
            id: refund.id,
            object: "refund",
            payment_link: refund.link_id,
            livemode: refund.livemode,
            amount: refund.amount,
            currency: refund.currency.code().to_owned(),
            status: match refund.state {
                domain::RefundState::Pending => RefundStatus::Pending,
                domain::RefundState::Succeeded => RefundStatus::Succeeded,
                domain::RefundState::Failed => RefundStatus::Failed,
            },
            kind: match refund.kind {
                domain::RefundKind::Requested => RefundKindBody::Requested,
                domain::RefundKind::LatePayment => RefundKindBody::LatePayment,
            },
            reason: refund.reason,
            payment_id: refund.payment_id,
            processor_refund_id: refund.processor_refund_id,
            failure_message: refund.failure_message,
            created_at: refund.created_at,
            updated_at: refund.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<RefundResource>,
    /// Always false: a link's refunds come in one page.
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentLinkList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<PaymentLinkResource>,
    /// More links follow; pass the last `id` as `starting_after`.
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkOutcomeKind {
    /// Cancelled by this call.
    Cancelled,
    /// `dry_run`: this call would cancel it.
    WouldCancel,
    /// Was already cancelled; left unchanged.
    AlreadyCancelled,
    /// Its status does not allow cancelling (see `error`).
    Refused,
    /// Could not be processed now (see `error`); retry.
    Failed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkOutcomeError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkCancelItem {
    pub id: String,
    pub outcome: BulkOutcomeKind,
    /// The link's status after this call.
    pub status: PaymentLinkStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<BulkOutcomeError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkCancelResponse {
    /// Always `bulk_cancel`.
    pub object: &'static str,
    pub dry_run: bool,
    pub data: Vec<BulkCancelItem>,
    /// Count of links per outcome in `data`.
    pub summary: BTreeMap<String, usize>,
    /// More links match; call again with `starting_after` = the last `id` in `data`.
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsRowBody {
    pub status: PaymentLinkStatus,
    pub currency: String,
    pub count: i64,
    /// Sum of `amount` in minor units of `currency`.
    pub amount: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse {
    /// Always `payment_link_stats`.
    pub object: &'static str,
    pub livemode: bool,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
    /// Links per status (every status present, zeros included).
    pub count_by_status: BTreeMap<String, i64>,
    /// One row per (status, currency) that has links.
    pub data: Vec<StatsRowBody>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActorBody {
    /// An API request, by the key's id (never the secret).
    ApiKey {
        id: String,
    },
    Customer,
    System,
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
                domain::Actor::ApiKey { id } => ActorBody::ApiKey { id },
                domain::Actor::Customer => ActorBody::Customer,
                domain::Actor::System => ActorBody::System,
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

// ---- webhooks ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookPayloadFormat {
    /// The event resource, as `GET /v1/events/{id}` shows it.
    Native,
    /// Gale's `{"type", "data": {id, status, cancelled_at, cancellation_reason}}`.
    Gale,
}

impl From<PayloadFormat> for WebhookPayloadFormat {
    fn from(format: PayloadFormat) -> Self {
        match format {
            PayloadFormat::Native => Self::Native,
            PayloadFormat::Gale => Self::Gale,
        }
    }
}

impl From<WebhookPayloadFormat> for PayloadFormat {
    fn from(format: WebhookPayloadFormat) -> Self {
        match format {
            WebhookPayloadFormat::Native => Self::Native,
            WebhookPayloadFormat::Gale => Self::Gale,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookEndpointRequest {
    /// An http(s) URL on the public internet (internal addresses are refused).
    #[schema(
        example = "https://shop.example.com/webhooks/paylink",
        max_length = 2048
    )]
    pub url: String,
    /// Event types to send, or `["*"]` (the default) for all of them.
    #[schema(example = json!(["payment_link.cancelled", "payment_link.paid"]))]
    pub events: Option<Vec<String>>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// The payload format; `native` by default.
    pub format: Option<WebhookPayloadFormat>,
}

impl From<CreateWebhookEndpointRequest> for NewEndpoint {
    fn from(request: CreateWebhookEndpointRequest) -> Self {
        NewEndpoint {
            url: request.url,
            events: request.events,
            description: request.description,
            format: request.format.map(PayloadFormat::from),
        }
    }
}

/// Change an endpoint; absent fields stay as they are. Enabling an endpoint
/// the service disabled (after a 410) resumes its waiting deliveries.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookEndpointRequest {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

impl From<UpdateWebhookEndpointRequest> for EndpointUpdate {
    fn from(request: UpdateWebhookEndpointRequest) -> Self {
        EndpointUpdate {
            url: request.url,
            events: request.events,
            description: request.description,
            enabled: request.enabled,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointResource {
    pub id: String,
    /// Always `webhook_endpoint`.
    pub object: &'static str,
    pub url: String,
    pub description: Option<String>,
    /// The event types sent; `["*"]` means all.
    pub events: Vec<String>,
    pub format: WebhookPayloadFormat,
    pub enabled: bool,
    /// Set when paylink disabled the endpoint itself (the receiver answered 410).
    pub disabled_reason: Option<String>,
    pub livemode: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The signing secret (`whsec_...`): present only in the response that
    /// created the endpoint or rotated its secret. Keep it; it is not shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Until then a secret replaced by a rotation also signs (the latest
    /// such expiry when several rotations happened within 24 hours).
    pub previous_secret_expires_at: Option<Timestamp>,
}

impl WebhookEndpointResource {
    /// The endpoint as every response but creation and rotation shows it.
    pub fn new(endpoint: WebhookEndpoint, now: Timestamp) -> Self {
        let previous_secret_expires_at = endpoint.retired_secrets_expire_at(now);
        Self {
            events: match &endpoint.events {
                None => vec!["*".to_owned()],
                Some(types) => types.iter().map(|t| t.as_str().to_owned()).collect(),
            },
            id: endpoint.id,
            object: "webhook_endpoint",
            url: endpoint.url,
            description: endpoint.description,
            format: endpoint.format.into(),
            enabled: endpoint.enabled,
            disabled_reason: endpoint.disabled_reason,
            livemode: endpoint.livemode,
            created_at: endpoint.created_at,
            updated_at: endpoint.updated_at,
            secret: None,
            previous_secret_expires_at,
        }
    }

    /// The endpoint with its secret: only right after creation or rotation.
    pub fn with_secret(endpoint: WebhookEndpoint, now: Timestamp) -> Self {
        let secret = endpoint.secret.clone();
        Self {
            secret: Some(secret),
            ..Self::new(endpoint, now)
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointList {
    /// Always `list`.
    pub object: &'static str,
    /// Oldest first (an account has at most 16 per mode).
    pub data: Vec<WebhookEndpointResource>,
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedResource {
    pub id: String,
    pub object: &'static str,
    pub deleted: bool,
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

/// Rotation takes no fields; a body, if sent, must be an empty JSON object.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretRequest {}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeliverRequest {
    /// Only this endpoint (`we_...`); by default every enabled endpoint
    /// that wants the event's type.
    pub endpoint: Option<String>,
}

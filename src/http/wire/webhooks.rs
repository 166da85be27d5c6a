//! Webhook endpoints.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::webhook::endpoint::{PayloadFormat, WebhookEndpoint};
use crate::service::{EndpointUpdate, NewEndpoint};

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

/// Rotation takes no fields; a body, if sent, must be an empty JSON object.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretRequest {}

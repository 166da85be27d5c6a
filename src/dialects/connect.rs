//! The "Connect" API (seed 003_fc38700f2176c7e0.txt), under
//! `/compat/connect`.
//!
//! `POST /payment-links/{paymentLinkId}/cancel` with `X-API-Key`, answering
//! the payment link object (`paymentLinkId, url, status, description,
//! paymentId, expiresAt, completedAt, createdAt, updatedAt, metadata`) with
//! upper-case statuses `ACTIVE, EXPIRED, COMPLETED, CANCELLED` (a payment
//! in progress shows as `ACTIVE`). `X-Idempotency-Key` (<= 256 chars):
//! the same key replays the same result for 24 hours; the same key with a
//! modified request is refused with 409 Conflict, as the seed says.
//!
//! Where the seed is silent: the cancel rules are the native ones (an
//! active link cancels; cancelling a cancelled link answers 200 with it
//! unchanged; completed and expired links are refused with 409
//! `PAYMENT_LINK_NOT_CANCELLABLE`); `GET /payment-links/{paymentLinkId}`
//! retrieves; errors are `{"error": {"code", "message"}}` with upper-case
//! codes (`UNAUTHORIZED` 401, `FORBIDDEN` 403, `NOT_FOUND` 404,
//! `IDEMPOTENCY_KEY_REUSED` 409, `RATE_LIMITED` 429, `INVALID_REQUEST` 400).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{iso_seconds, json_response};
use crate::domain::{CancelPolicy, Link, LinkStatus};
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::extract::Authenticated;
use crate::service::ServiceError;

pub const PREFIX: &str = "/compat/connect";

/// The seed states no rules of its own: the native ones.
pub const POLICY: CancelPolicy = CancelPolicy::NATIVE;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_link))
        .routes(routes!(cancel_link))
}

fn status_word(status: LinkStatus) -> &'static str {
    match status {
        LinkStatus::Active | LinkStatus::Processing => "ACTIVE",
        LinkStatus::Paid => "COMPLETED",
        LinkStatus::Expired => "EXPIRED",
        LinkStatus::Cancelled => "CANCELLED",
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectPaymentLink {
    pub payment_link_id: String,
    pub url: String,
    /// `ACTIVE`, `EXPIRED`, `COMPLETED` or `CANCELLED`.
    pub status: &'static str,
    pub description: Option<String>,
    pub payment_id: Option<String>,
    pub expires_at: String,
    pub completed_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub metadata: BTreeMap<String, String>,
}

impl ConnectPaymentLink {
    fn new(state: &AppState, link: Link) -> Self {
        Self {
            url: super::hosted_url(state, &link),
            status: status_word(link.status),
            payment_link_id: link.id,
            description: link.description,
            payment_id: link.payment_id,
            expires_at: iso_seconds(link.expires_at),
            completed_at: link.paid_at.map(iso_seconds),
            created_at: iso_seconds(link.created_at),
            updated_at: iso_seconds(link.updated_at),
            metadata: link.metadata,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectErrorBody {
    pub error: ConnectErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectErrorDetail {
    pub code: String,
    pub message: String,
}

pub struct ConnectError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for ConnectError {
    fn into_response(self) -> Response {
        json_response(
            self.status,
            json!({"error": {"code": self.code, "message": self.message}}),
        )
    }
}

pub fn render_native(error: &ApiError) -> Response {
    ConnectError::from(error.clone()).into_response()
}

impl From<ApiError> for ConnectError {
    fn from(error: ApiError) -> Self {
        let (status, code) = match error.code {
            ErrorCode::InvalidRequest => (error.status, "INVALID_REQUEST"),
            ErrorCode::Unauthorized => (error.status, "UNAUTHORIZED"),
            ErrorCode::AccountSuspended => (error.status, "FORBIDDEN"),
            ErrorCode::NotFound => (error.status, "NOT_FOUND"),
            ErrorCode::InvalidState => (error.status, "PAYMENT_LINK_NOT_CANCELLABLE"),
            // "Modified requests with the same idempotency keys are
            // rejected with a 409 Conflict status code."
            ErrorCode::IdempotencyKeyReused => (StatusCode::CONFLICT, "IDEMPOTENCY_KEY_REUSED"),
            ErrorCode::IdempotencyKeyInUse => (error.status, "IDEMPOTENCY_KEY_IN_USE"),
            ErrorCode::RateLimited => (error.status, "RATE_LIMITED"),
            ErrorCode::Unavailable => (error.status, "UNAVAILABLE"),
            ErrorCode::Internal => (error.status, "INTERNAL"),
        };
        ConnectError {
            status,
            code,
            message: error.message,
        }
    }
}

impl From<ServiceError> for ConnectError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound => ConnectError {
                status: StatusCode::NOT_FOUND,
                code: "NOT_FOUND",
                message: "Payment link not found.".into(),
            },
            ServiceError::InvalidState { status, message } => ConnectError {
                status: StatusCode::CONFLICT,
                code: "PAYMENT_LINK_NOT_CANCELLABLE",
                message: format!(
                    "A payment link with status {} cannot be cancelled. {message}",
                    status_word(status)
                ),
            },
            other => ApiError::from(other).into(),
        }
    }
}

/// Retrieve a payment link.
#[utoipa::path(get, path = "/payment-links/{paymentLinkId}", tag = "connect",
    params(("paymentLinkId" = String, Path, description = "The unique identifier for the payment link.")),
    responses(
        (status = 200, description = "Payment link details.", body = ConnectPaymentLink),
        (status = 401, description = "Invalid or missing API key", body = ConnectErrorBody),
        (status = 403, description = "Account suspended", body = ConnectErrorBody),
        (status = 404, description = "No such payment link", body = ConnectErrorBody),
        (status = 429, description = "Too many requests", body = ConnectErrorBody),
        (status = 503, description = "Database unavailable", body = ConnectErrorBody),
    ),
    security(("api_key" = [])))]
async fn get_link(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ConnectPaymentLink>, ConnectError> {
    let link = super::find_link(&state, &caller, &id).await?;
    Ok(Json(ConnectPaymentLink::new(&state, link)))
}

/// Cancel a payment link.
#[utoipa::path(post, path = "/payment-links/{paymentLinkId}/cancel", tag = "connect",
    params(
        ("paymentLinkId" = String, Path, description = "The unique identifier for the payment link."),
        ("X-Idempotency-Key" = Option<String>, Header, description = "Same key, same result (24 hours); a modified request with the same key is refused with 409.", max_length = 256),
    ),
    responses(
        (status = 200, description = "Payment link details.", body = ConnectPaymentLink),
        (status = 400, description = "A bad idempotency key", body = ConnectErrorBody),
        (status = 401, description = "Invalid or missing API key", body = ConnectErrorBody),
        (status = 403, description = "Account suspended", body = ConnectErrorBody),
        (status = 404, description = "No such payment link", body = ConnectErrorBody),
        (status = 409, description = "Not cancellable, or the idempotency key was used with another request", body = ConnectErrorBody),
        (status = 429, description = "Too many requests", body = ConnectErrorBody),
        (status = 503, description = "Database unavailable", body = ConnectErrorBody),
    ),
    security(("api_key" = [])))]
async fn cancel_link(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ConnectPaymentLink>, ConnectError> {
    let link = super::find_link(&state, &caller, &id).await?;
    let cancelled = state
        .service
        .cancel_link(&caller, &link.id, None, &POLICY)
        .await?;
    Ok(Json(ConnectPaymentLink::new(&state, cancelled)))
}

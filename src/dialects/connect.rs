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
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Dialect, DialectError, find_link, iso_seconds};
use crate::domain::{CancelPolicy, Link, LinkStatus};
use crate::web::ApiState;
use crate::web::error::{ApiError, ErrorCode};
use crate::web::extract::{Authenticated, KeyHeader};

/// Connect's tables.
pub struct Connect;

/// An error in Connect's envelope.
pub type ConnectError = DialectError<Connect>;

impl Dialect for Connect {
    const PREFIX: &'static str = "/compat/connect";
    const KEY_HEADER: KeyHeader = KeyHeader::ApiKey;
    /// The seed states no rules of its own: the native ones.
    const POLICY: CancelPolicy = CancelPolicy::NATIVE;

    fn status_word(status: LinkStatus) -> &'static str {
        match status {
            LinkStatus::Active | LinkStatus::Processing => "ACTIVE",
            LinkStatus::Paid => "COMPLETED",
            LinkStatus::Expired => "EXPIRED",
            LinkStatus::Cancelled => "CANCELLED",
        }
    }

    fn code(code: ErrorCode) -> &'static str {
        match code {
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::AccountSuspended => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::InvalidState => "PAYMENT_LINK_NOT_CANCELLABLE",
            ErrorCode::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ErrorCode::IdempotencyKeyInUse => "IDEMPOTENCY_KEY_IN_USE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// `{"error": {"code", "message"}}`.
    fn envelope(error: &ConnectError) -> serde_json::Value {
        json!({"error": {"code": error.code, "message": error.message}})
    }

    fn not_found() -> ConnectError {
        ConnectError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Payment link not found.",
        )
    }

    fn refusal(status: LinkStatus, message: String) -> ConnectError {
        ConnectError::new(
            StatusCode::CONFLICT,
            "PAYMENT_LINK_NOT_CANCELLABLE",
            format!(
                "A payment link with status {} cannot be cancelled. {message}",
                Self::status_word(status)
            ),
        )
    }

    /// "Modified requests with the same idempotency keys are rejected with
    /// a 409 Conflict status code."
    fn translate(error: ApiError) -> ConnectError {
        let status = match error.code {
            ErrorCode::IdempotencyKeyReused => StatusCode::CONFLICT,
            _ => error.status,
        };
        ConnectError::new(status, Self::code(error.code), error.message)
    }

    fn routes() -> OpenApiRouter<ApiState> {
        OpenApiRouter::new()
            .routes(routes!(get_link))
            .routes(routes!(cancel_link))
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectPaymentLink {
    pub payment_link_id: String,
    pub url: String,
    /// `ACTIVE`, `EXPIRED`, `COMPLETED` or `CANCELLED`.
    pub status: &'static str,
    /// Optional, not nullable (the seed's schema): absent when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub description: Option<String>,
    /// Present once the link is paid.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub payment_id: Option<String>,
    #[schema(format = DateTime, example = "2024-12-31T23:59:59Z")]
    pub expires_at: String,
    /// Present once the link is paid.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime, example = "2024-01-15T14:30:00Z")]
    pub completed_at: Option<String>,
    #[schema(format = DateTime, example = "2024-01-15T10:00:00Z")]
    pub created_at: String,
    pub updated_at: String,
    pub metadata: BTreeMap<String, String>,
}

impl ConnectPaymentLink {
    fn new(state: &ApiState, link: Link) -> Self {
        Self {
            url: state.hosted_url(&link),
            status: Connect::status_word(link.status),
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

dialect_responses!(ConnectErrorBody);

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectErrorDetail {
    pub code: String,
    pub message: String,
}

/// Retrieve a payment link.
#[utoipa::path(get, path = "/payment-links/{paymentLinkId}", tag = "connect",
    params(("paymentLinkId" = String, Path, description = "The unique identifier for the payment link.")),
    responses(
        (status = 200, description = "Payment link details.", body = ConnectPaymentLink),
        (status = 404, description = "No such payment link", body = ConnectErrorBody),
        AuthErrors,
    ),
    security(("api_key" = [])))]
async fn get_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ConnectPaymentLink>, ConnectError> {
    let link = find_link(&state, &caller, &id).await?;
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
        (status = 404, description = "No such payment link", body = ConnectErrorBody),
        (status = 409, description = "Not cancellable, or the idempotency key was used with another request", body = ConnectErrorBody),
        AuthErrors,
    ),
    security(("api_key" = [])))]
async fn cancel_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ConnectPaymentLink>, ConnectError> {
    let link = find_link(&state, &caller, &id).await?;
    let cancelled = state
        .service
        .cancel_link(&caller, &link.id, None, &Connect::POLICY)
        .await?;
    Ok(Json(ConnectPaymentLink::new(&state, cancelled)))
}

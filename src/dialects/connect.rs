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
//! Where the seed is silent: `POST /payment-links` creates (`amount`,
//! `currency`, `description`, `expiresAt`, `successUrl`, `cancelUrl`,
//! `metadata`; 201 with the link object, which has no amount field of its
//! own), `GET /payment-links` lists newest first (`status` in Connect's
//! words, `limit`, `startingAfter`; `{"data": [...], "hasMore"}`); the
//! cancel rules are the native ones (an
//! active link cancels; cancelling a cancelled link answers 200 with it
//! unchanged; completed and expired links are refused with 409
//! `PAYMENT_LINK_NOT_CANCELLABLE`); `GET /payment-links/{paymentLinkId}`
//! retrieves; errors are `{"error": {"code", "message"}}` with upper-case
//! codes (`UNAUTHORIZED` 401, `FORBIDDEN` 403, `NOT_FOUND` 404,
//! `IDEMPOTENCY_KEY_REUSED` 409, `RATE_LIMITED` 429, `INVALID_REQUEST` 400).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Dialect, DialectError, IdPointers, find_link, iso_seconds, with_field_names};
use crate::domain::{CancelPolicy, Link, LinkStatus, NewLink};
use crate::web::ApiState;
use crate::web::error::{ApiError, ErrorCode};
use crate::web::extract::{Authenticated, JsonBody, KeyHeader};
use crate::web::list_query::ListSyntax;
use crate::web::schemas::CurrencyCode;

/// Connect's tables.
pub struct Connect;

/// An error in Connect's envelope.
pub type ConnectError = DialectError<Connect>;

impl Dialect for Connect {
    const PREFIX: &'static str = "/compat/connect";
    const KEY_HEADER: KeyHeader = KeyHeader::ApiKey;
    /// The seed states no rules of its own: the native ones.
    const POLICY: CancelPolicy = CancelPolicy::NATIVE;
    const ID_IN_ANSWERS: IdPointers = IdPointers {
        created: "/paymentLinkId",
        listed: "/data/0/paymentLinkId",
    };

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
            .routes(routes!(create_link, list_links))
            .routes(routes!(get_link))
            .routes(routes!(cancel_link))
    }
}

/// How Connect spells a list query: its status words, camelCase paging.
/// `ACTIVE` finds links open for payment; one with a payment in flight
/// (shown `ACTIVE` too) is found again a moment later, once it resolves.
const LIST: ListSyntax = ListSyntax {
    status: Some((
        "ACTIVE, EXPIRED, COMPLETED or CANCELLED",
        |word| match word {
            "ACTIVE" => Some(LinkStatus::Active),
            "EXPIRED" => Some(LinkStatus::Expired),
            "COMPLETED" => Some(LinkStatus::Paid),
            "CANCELLED" => Some(LinkStatus::Cancelled),
            _ => None,
        },
    )),
    created_range: false,
    native_filters: false,
    paging: Some(("limit", "startingAfter")),
};

/// The native field names a create's errors are spelled in, and Connect's.
const FIELD_NAMES: &[(&str, &str)] = &[
    ("expires_at", "expiresAt"),
    ("success_url", "successUrl"),
    ("cancel_url", "cancelUrl"),
];

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
    #[schema(format = DateTime, example = "2024-01-15T10:00:00Z")]
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
#[serde(rename_all = "camelCase")]
pub struct ConnectPaymentLinkList {
    /// Newest first.
    pub data: Vec<ConnectPaymentLink>,
    /// Whether another page follows (ask with `startingAfter`).
    pub has_more: bool,
}

/// A new payment link. The link object carries no amount (the seed's
/// schema has none), so the amount is given here and shown on its page.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectCreateRequest {
    /// Minor units (4995 is 49.95).
    #[schema(minimum = 1, maximum = 99_999_999_999_i64, example = 4995)]
    pub amount: i64,
    /// ISO 4217, e.g. `USD`.
    #[schema(value_type = CurrencyCode, example = "USD")]
    pub currency: String,
    #[schema(max_length = 1000, example = "Pay your monthly subscription")]
    pub description: Option<String>,
    /// When the link stops taking payments (at most a year ahead);
    /// paylink's default lifetime when absent.
    #[schema(format = DateTime, example = "2024-12-31T23:59:59Z")]
    pub expires_at: Option<Timestamp>,
    /// Where the customer goes after paying.
    #[schema(max_length = 2048)]
    pub success_url: Option<String>,
    /// Where the customer goes on leaving without paying.
    #[schema(max_length = 2048)]
    pub cancel_url: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
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

/// Create a payment link.
#[utoipa::path(post, path = "/payment-links", tag = "connect",
    request_body = ConnectCreateRequest,
    params(
        ("X-Idempotency-Key" = Option<String>, Header, description = "Same key, same result (24 hours); a modified request with the same key is refused with 409.", max_length = 256),
    ),
    responses(
        (status = 201, description = "Payment link details.", body = ConnectPaymentLink),
        (status = 400, description = "A field is invalid", body = ConnectErrorBody),
        (status = 409, description = "The idempotency key was used with another request, or is in use", body = ConnectErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("api_key" = [])))]
async fn create_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    JsonBody(request): JsonBody<ConnectCreateRequest>,
) -> Result<(StatusCode, Json<ConnectPaymentLink>), ConnectError> {
    let link = state
        .service
        .create_link(
            &caller,
            NewLink {
                amount: Some(request.amount),
                currency: Some(request.currency),
                description: request.description,
                metadata: request.metadata,
                success_url: request.success_url,
                cancel_url: request.cancel_url,
                expires_at: request.expires_at,
                ..NewLink::default()
            },
        )
        .await
        .map_err(|error| with_field_names(error, FIELD_NAMES))?;
    Ok((
        StatusCode::CREATED,
        Json(ConnectPaymentLink::new(&state, link)),
    ))
}

/// List payment links, newest first.
#[utoipa::path(get, path = "/payment-links", tag = "connect",
    params(
        ("status" = Option<String>, Query, description = "`ACTIVE`, `EXPIRED`, `COMPLETED` or `CANCELLED`"),
        ("limit" = Option<i64>, Query, description = "1..100, default 20", minimum = 1, maximum = 100),
        ("startingAfter" = Option<String>, Query, description = "The last `paymentLinkId` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of payment links", body = ConnectPaymentLinkList),
        (status = 400, description = "A query parameter is invalid", body = ConnectErrorBody),
        AuthErrors,
    ),
    security(("api_key" = [])))]
async fn list_links(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    RawQuery(raw): RawQuery,
) -> Result<Json<ConnectPaymentLinkList>, ConnectError> {
    let page = super::list_page::<Connect>(&state, &caller, raw.as_deref(), &LIST).await?;
    Ok(Json(ConnectPaymentLinkList {
        data: page
            .links
            .into_iter()
            .map(|link| ConnectPaymentLink::new(&state, link))
            .collect(),
        has_more: page.has_more,
    }))
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
        .cancel_link(&caller, &link.id, None, None, &Connect::POLICY)
        .await?;
    Ok(Json(ConnectPaymentLink::new(&state, cancelled)))
}

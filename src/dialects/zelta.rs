//! Zelta (seed 001_47d5bb42b7381973.txt), under `/compat/zelta`.
//!
//! `PATCH /v1/payment-links/{hashUrl}/cancel` with `X-API-Key`; `hashUrl`
//! is the last path segment of `paymentLinkUrl` (a paylink slug), and a
//! link id is accepted too. Success is `{"success": true, "data":
//! {"paymentLink": {...}}, "message", "timestamp"}`; errors are
//! `{"success": false, "message", "error": {"code", "details"?},
//! "timestamp"}` with `ERR_MISSING_API_KEY` (401), `ERR_INVALID_API_KEY`
//! (401), `ERR_ACCOUNT_SUSPENDED` (403), `ERR_PAYMENT_LINK_NOT_FOUND` (404,
//! also for another account's link), `ERR_INVALID_STATE` (400),
//! `ERR_RATE_LIMIT_EXCEEDED` (429). Statuses `pending`, `completed`,
//! `expired`, `cancelled`; `pending` and `expired` links cancel,
//! `completed` and `cancelled` are refused.
//!
//! Where the seed is silent:
//! - `GET /v1/payment-links/{hashUrl}` answers `data.paymentLink` (the
//!   seed's `safeCancelPaymentLink` calls it); `GET /v1/payment-links`
//!   answers `data.paymentLinks` (newest first, `limit` 1..100 default 20,
//!   `startingAfter`, `data.hasMore`); `POST /v1/payment-links` creates from
//!   `{amount, currency?, concept?, customerName?, customerEmail?,
//!   expiresAt?, redirectUrl?, metadata?}` (`currency` defaults to USD, as
//!   Zelta's objects carry none) and answers 201;
//! - a payment in progress shows as `pending` and is refused with
//!   `ERR_INVALID_STATE` saying so; `customerName` is the customer's first
//!   and last name joined by a space (split at the first space on create).

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

use super::{Dialect, DialectError, IdPointers, find_link, iso_millis};
use crate::domain::cancel::AlreadyCancelled;
use crate::domain::{CancelPolicy, Customer, Link, LinkStatus, NewLink};
use crate::web::ApiState;
use crate::web::auth::MISSING_KEY_MESSAGE;
use crate::web::error::{ApiError, ErrorCode};
use crate::web::extract::{Authenticated, JsonBody, KeyHeader};
use crate::web::list_query::ListSyntax;
use crate::web::schemas::CurrencyCode;

/// Zelta's tables.
pub struct Zelta;

/// An error in Zelta's envelope.
pub type ZeltaError = DialectError<Zelta>;

impl Dialect for Zelta {
    const PREFIX: &'static str = "/compat/zelta";
    const KEY_HEADER: KeyHeader = KeyHeader::ApiKey;
    /// `pending` and `expired` cancel; `completed` and `cancelled` are refused.
    const POLICY: CancelPolicy = CancelPolicy {
        cancel_expired: true,
        already_cancelled: AlreadyCancelled::Refuse,
    };
    const ID_IN_ANSWERS: IdPointers = IdPointers {
        created: "/data/paymentLink/id",
        listed: "/data/paymentLinks/0/id",
    };

    fn status_word(status: LinkStatus) -> &'static str {
        match status {
            LinkStatus::Active | LinkStatus::Processing => "pending",
            LinkStatus::Paid => "completed",
            LinkStatus::Expired => "expired",
            LinkStatus::Cancelled => "cancelled",
        }
    }

    fn code(code: ErrorCode) -> &'static str {
        match code {
            ErrorCode::InvalidRequest => "ERR_VALIDATION",
            ErrorCode::Unauthorized => "ERR_INVALID_API_KEY",
            ErrorCode::AccountSuspended => "ERR_ACCOUNT_SUSPENDED",
            ErrorCode::NotFound => "ERR_NOT_FOUND",
            ErrorCode::InvalidState => "ERR_INVALID_STATE",
            ErrorCode::IdempotencyKeyReused => "ERR_IDEMPOTENCY_KEY_REUSED",
            ErrorCode::IdempotencyKeyInUse => "ERR_IDEMPOTENCY_KEY_IN_USE",
            ErrorCode::RateLimited => "ERR_RATE_LIMIT_EXCEEDED",
            ErrorCode::Unavailable => "ERR_SERVICE_UNAVAILABLE",
            ErrorCode::Internal => "ERR_INTERNAL",
        }
    }

    /// `{"success": false, "message", "error": {"code", "details"?}, "timestamp"}`.
    fn envelope(error: &ZeltaError) -> serde_json::Value {
        let mut body = json!({"code": error.code});
        if let Some(details) = &error.details {
            body["details"] = json!(details);
        }
        json!({
            "success": false,
            "message": error.message,
            "error": body,
            "timestamp": iso_millis(Timestamp::now()),
        })
    }

    fn not_found() -> ZeltaError {
        ZeltaError::new(
            StatusCode::NOT_FOUND,
            "ERR_PAYMENT_LINK_NOT_FOUND",
            "Payment link not found",
        )
    }

    fn refusal(status: LinkStatus, _: String) -> ZeltaError {
        let details = match status {
            LinkStatus::Paid => "Payment link is already completed",
            LinkStatus::Cancelled => "Payment link is already cancelled",
            LinkStatus::Active | LinkStatus::Processing | LinkStatus::Expired => {
                "Payment link cannot be cancelled"
            }
        };
        ZeltaError::new(
            StatusCode::BAD_REQUEST,
            "ERR_INVALID_STATE",
            "Payment link cannot be cancelled",
        )
        .with_details(Some(details.into()))
    }

    /// Zelta's own words for a missing or bad key and a rate limit; a
    /// validation error names its field in `details`.
    fn translate(error: ApiError) -> ZeltaError {
        let (code, message) = match error.code {
            ErrorCode::Unauthorized if error.message == MISSING_KEY_MESSAGE => {
                ("ERR_MISSING_API_KEY", "Missing X-API-Key header".to_owned())
            }
            ErrorCode::Unauthorized => ("ERR_INVALID_API_KEY", "Invalid API key".to_owned()),
            ErrorCode::AccountSuspended => {
                ("ERR_ACCOUNT_SUSPENDED", "Account suspended".to_owned())
            }
            ErrorCode::RateLimited => ("ERR_RATE_LIMIT_EXCEEDED", "Too many requests".to_owned()),
            other => (Self::code(other), error.message),
        };
        let details = match error.code {
            ErrorCode::InvalidRequest => error.param.map(|param| format!("Invalid field: {param}")),
            _ => None,
        };
        ZeltaError::new(error.status, code, message).with_details(details)
    }

    fn routes() -> OpenApiRouter<ApiState> {
        OpenApiRouter::new()
            .routes(routes!(create_link, list_links))
            .routes(routes!(get_link))
            .routes(routes!(cancel_link))
    }
}

/// How Zelta spells a list query: pages only.
const LIST: ListSyntax = ListSyntax {
    status: None,
    created_range: false,
    native_filters: false,
    paging: Some(("limit", "startingAfter")),
};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZeltaPaymentLink {
    pub id: String,
    pub payment_link_url: String,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub concept: Option<String>,
    /// Cents.
    pub amount: i64,
    pub currency: String,
    /// `pending`, `completed`, `expired` or `cancelled`.
    pub status: &'static str,
    pub created_at: String,
    pub expires_at: String,
    pub cancelled_at: Option<String>,
    pub completed_at: Option<String>,
    pub is_test: bool,
    pub redirect_url: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

impl ZeltaPaymentLink {
    fn new(state: &ApiState, link: Link) -> Self {
        let customer = link.customer.clone().unwrap_or_default();
        let name = [customer.first_name, customer.last_name]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            payment_link_url: state.hosted_url(&link),
            customer_name: Some(name).filter(|n| !n.is_empty()),
            customer_email: customer.email,
            status: Zelta::status_word(link.status),
            id: link.id,
            concept: link.description,
            amount: link.amount,
            currency: link.currency.code().to_owned(),
            created_at: iso_millis(link.created_at),
            expires_at: iso_millis(link.expires_at),
            cancelled_at: link.cancelled_at.map(iso_millis),
            completed_at: link.paid_at.map(iso_millis),
            is_test: !link.livemode,
            redirect_url: link.success_url,
            metadata: link.metadata,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZeltaLinkData {
    pub payment_link: ZeltaPaymentLink,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ZeltaLinkEnvelope {
    /// Always true.
    pub success: bool,
    pub data: ZeltaLinkData,
    pub message: String,
    pub timestamp: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZeltaListData {
    pub payment_links: Vec<ZeltaPaymentLink>,
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ZeltaListEnvelope {
    pub success: bool,
    pub data: ZeltaListData,
    pub message: String,
    pub timestamp: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ZeltaErrorBody {
    /// Always false.
    pub success: bool,
    pub message: String,
    pub error: ZeltaErrorDetail,
    pub timestamp: String,
}

dialect_responses!(ZeltaErrorBody);

#[derive(Debug, Serialize, ToSchema)]
pub struct ZeltaErrorDetail {
    /// `ERR_...`
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZeltaCreateRequest {
    /// Cents, > 0.
    #[schema(minimum = 1, maximum = 99_999_999_999_i64)]
    pub amount: i64,
    /// ISO 4217; USD when absent.
    #[schema(value_type = Option<CurrencyCode>)]
    pub currency: Option<String>,
    #[schema(max_length = 1000)]
    pub concept: Option<String>,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub expires_at: Option<Timestamp>,
    #[schema(max_length = 2048)]
    pub redirect_url: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
}

fn envelope(state: &ApiState, link: Link, message: &str) -> Json<ZeltaLinkEnvelope> {
    Json(ZeltaLinkEnvelope {
        success: true,
        data: ZeltaLinkData {
            payment_link: ZeltaPaymentLink::new(state, link),
        },
        message: message.to_owned(),
        timestamp: iso_millis(state.service.now()),
    })
}

/// Create a payment link.
#[utoipa::path(post, path = "/v1/payment-links", tag = "zelta",
    request_body = ZeltaCreateRequest,
    responses(
        (status = 201, description = "Created", body = ZeltaLinkEnvelope),
        (status = 400, description = "`ERR_VALIDATION`", body = ZeltaErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("api_key" = [])))]
async fn create_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    JsonBody(request): JsonBody<ZeltaCreateRequest>,
) -> Result<(StatusCode, Json<ZeltaLinkEnvelope>), ZeltaError> {
    let (first_name, last_name) = match request.customer_name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => match name.split_once(' ') {
            Some((first, last)) => (Some(first.to_owned()), Some(last.trim().to_owned())),
            None => (Some(name.to_owned()), None),
        },
        _ => (None, None),
    };
    let has_customer = first_name.is_some() || request.customer_email.is_some();
    let customer = has_customer.then_some(Customer {
        email: request.customer_email,
        first_name,
        last_name,
    });
    let link = state
        .service
        .create_link(
            &caller,
            NewLink {
                amount: Some(request.amount),
                currency: Some(request.currency.unwrap_or_else(|| "USD".into())),
                description: request.concept,
                customer,
                metadata: request.metadata,
                success_url: request.redirect_url,
                expires_at: request.expires_at,
                ..NewLink::default()
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        envelope(&state, link, "Payment link created successfully"),
    ))
}

/// List payment links, newest first.
#[utoipa::path(get, path = "/v1/payment-links", tag = "zelta",
    params(
        ("limit" = Option<i64>, Query, description = "1..100, default 20", minimum = 1, maximum = 100),
        ("startingAfter" = Option<String>, Query, description = "The last id of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of links", body = ZeltaListEnvelope),
        (status = 400, description = "`ERR_VALIDATION`", body = ZeltaErrorBody),
        AuthErrors,
    ),
    security(("api_key" = [])))]
async fn list_links(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    RawQuery(raw): RawQuery,
) -> Result<Json<ZeltaListEnvelope>, ZeltaError> {
    let page = super::list_page::<Zelta>(&state, &caller, raw.as_deref(), &LIST).await?;
    Ok(Json(ZeltaListEnvelope {
        success: true,
        data: ZeltaListData {
            payment_links: page
                .links
                .into_iter()
                .map(|link| ZeltaPaymentLink::new(&state, link))
                .collect(),
            has_more: page.has_more,
        },
        message: "Payment links retrieved successfully".into(),
        timestamp: iso_millis(state.service.now()),
    }))
}

/// Get a payment link by its hash URL (or id).
#[utoipa::path(get, path = "/v1/payment-links/{hashUrl}", tag = "zelta",
    params(("hashUrl" = String, Path, description = "The last segment of `paymentLinkUrl`, or the link id")),
    responses(
        (status = 200, description = "The link", body = ZeltaLinkEnvelope),
        (status = 404, description = "`ERR_PAYMENT_LINK_NOT_FOUND`", body = ZeltaErrorBody),
        AuthErrors,
    ),
    security(("api_key" = [])))]
async fn get_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(hash_url): Path<String>,
) -> Result<Json<ZeltaLinkEnvelope>, ZeltaError> {
    let link = find_link(&state, &caller, &hash_url).await?;
    Ok(envelope(
        &state,
        link,
        "Payment link retrieved successfully",
    ))
}

/// Cancel a payment link (pending or expired).
#[utoipa::path(patch, path = "/v1/payment-links/{hashUrl}/cancel", tag = "zelta",
    params(("hashUrl" = String, Path, description = "The hash URL of the payment link (or its id)")),
    responses(
        (status = 200, description = "Payment link cancelled successfully", body = ZeltaLinkEnvelope),
        (status = 400, description = "`ERR_INVALID_STATE`: completed or already cancelled", body = ZeltaErrorBody),
        (status = 404, description = "`ERR_PAYMENT_LINK_NOT_FOUND`, also when owned by another account", body = ZeltaErrorBody),
        (status = 409, description = "The same Idempotency-Key is still running", body = ZeltaErrorBody),
        (status = 422, description = "Idempotency-Key reused with another request", body = ZeltaErrorBody),
        AuthErrors,
    ),
    security(("api_key" = [])))]
async fn cancel_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(hash_url): Path<String>,
) -> Result<Json<ZeltaLinkEnvelope>, ZeltaError> {
    let link = find_link(&state, &caller, &hash_url).await?;
    let cancelled = state
        .service
        .cancel_link(&caller, &link.id, None, None, &Zelta::POLICY)
        .await?;
    Ok(envelope(
        &state,
        cancelled,
        "Payment link cancelled successfully",
    ))
}

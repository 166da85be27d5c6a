//! The "payments" API (seed 002_118dd7120ce40ebd.txt), under
//! `/compat/payments`.
//!
//! `POST /payments/{id}/cancel`, API key in a header (`X-API-Key`; the
//! seed names no header, so paylink's own API-key header is the one). Success is `{"success": true, "data":
//! {payment}}` where a link is a payment of `kind: "link"`; errors are
//! `{"success": false, "error": {"type", "code", "message", "param",
//! "details", "doc_url"}}`. A link that is not paid and not processing
//! cancels (expired included); cancelling a `canceled` link is a no-op
//! answering 200 with the same object. A charge never cancels: in paylink a
//! charge is the payment made on a link (`pay_...`), refused with 400
//! `charge_not_cancelable`.
//!
//! The seed shows six error responses without their statuses; paylink uses
//! 400 (bad request, or a charge), 401 (key), 403 (account suspended), 404
//! (no such payment), 409 (`payment_not_cancelable`: paid or processing)
//! and 429 (rate limit). Status words: `pending` (active), `processing`,
//! `paid`, `expired`, `canceled` (American spelling, as this API writes
//! it). `GET /payments/{id}` retrieves (the seed is silent; served so a
//! client can look before it cancels). `POST /payments` creates a link
//! (`amountTotal`, `currency`, optional `kind: "link"`, `description`,
//! `metadata`, `expiresAt`: the object's own names; 201 with the object)
//! and `GET /payments` lists them newest first (`status` in this API's
//! words, `limit`, `startingAfter`; `{"success": true, "data": [...],
//! "hasMore"}`); the seed shows neither, so both follow its object and
//! casing. `provider` is `paylink`;
//! `amountSubtotal` and `amountTotal` are the amount, `taxAmount` 0;
//! `customerId` is null (paylink has no customer objects).

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

use super::{Dialect, DialectError, IdPointers, iso_seconds, with_field_names};
use crate::domain::cancel::AlreadyCancelled;
use crate::domain::{CancelPolicy, Link, LinkFilter, LinkStatus, NewLink, ids};
use crate::service::{Caller, ServiceError};
use crate::web::ApiState;
use crate::web::error::ErrorCode;
use crate::web::extract::{Authenticated, JsonBody, KeyHeader};
use crate::web::list_query::ListSyntax;
use crate::web::schemas::CurrencyCode;

/// The payments API's tables.
pub struct Payments;

/// An error in the payments API's envelope.
pub type PaymentsError = DialectError<Payments>;

/// This format's own OpenAPI document.
const DOC_URL: &str = "/compat/payments/openapi.json";

impl Dialect for Payments {
    const PREFIX: &'static str = "/compat/payments";
    const KEY_HEADER: KeyHeader = KeyHeader::ApiKey;
    /// Anything not paid and not processing cancels; a second cancel is a no-op.
    const POLICY: CancelPolicy = CancelPolicy {
        cancel_expired: true,
        already_cancelled: AlreadyCancelled::ReturnUnchanged,
    };
    const ID_IN_ANSWERS: IdPointers = IdPointers {
        created: "/data/id",
        listed: "/data/0/id",
    };

    fn status_word(status: LinkStatus) -> &'static str {
        match status {
            LinkStatus::Active => "pending",
            LinkStatus::Processing => "processing",
            LinkStatus::Paid => "paid",
            LinkStatus::Expired => "expired",
            LinkStatus::Cancelled => "canceled",
        }
    }

    fn code(code: ErrorCode) -> &'static str {
        match code {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::AccountSuspended => "account_suspended",
            ErrorCode::NotFound => "resource_missing",
            ErrorCode::InvalidState => "payment_not_cancelable",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::IdempotencyKeyInUse => "idempotency_key_in_use",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// `{"success": false, "error": {"type", "code", "message", "param",
    /// "details", "doc_url"}}`; the type is the code's class.
    fn envelope(error: &PaymentsError) -> serde_json::Value {
        let error_type = match error.code {
            "unauthorized" => "authentication_error",
            "account_suspended" => "permission_error",
            "idempotency_key_reused" | "idempotency_key_in_use" => "idempotency_error",
            "rate_limited" => "rate_limit_error",
            "unavailable" | "internal" => "api_error",
            _ => "invalid_request_error",
        };
        json!({
            "success": false,
            "error": {
                "type": error_type,
                "code": error.code,
                "message": error.message,
                "param": error.param,
                "details": null,
                "doc_url": DOC_URL,
            }
        })
    }

    fn not_found() -> PaymentsError {
        PaymentsError::new(
            StatusCode::NOT_FOUND,
            "resource_missing",
            "No such payment.",
        )
        .with_param(Some("id".into()))
    }

    fn refusal(status: LinkStatus, message: String) -> PaymentsError {
        PaymentsError::new(
            StatusCode::CONFLICT,
            "payment_not_cancelable",
            format!(
                "This payment is {} and cannot be canceled. {message}",
                Self::status_word(status)
            ),
        )
    }

    fn routes() -> OpenApiRouter<ApiState> {
        OpenApiRouter::new()
            .routes(routes!(create_payment, list_payments))
            .routes(routes!(get_payment))
            .routes(routes!(cancel_payment))
    }
}

/// How this API spells a list query: its status words, camelCase paging.
const LIST: ListSyntax = ListSyntax {
    status: Some((
        "pending, processing, paid, expired or canceled",
        |word| match word {
            "pending" => Some(LinkStatus::Active),
            "processing" => Some(LinkStatus::Processing),
            "paid" => Some(LinkStatus::Paid),
            "expired" => Some(LinkStatus::Expired),
            "canceled" => Some(LinkStatus::Cancelled),
            _ => None,
        },
    )),
    created_range: false,
    native_filters: false,
    paging: Some(("limit", "startingAfter")),
};

/// The native field names a create's errors are spelled in, and this
/// API's.
const FIELD_NAMES: &[(&str, &str)] = &[("amount", "amountTotal"), ("expires_at", "expiresAt")];

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentsPayment {
    pub id: String,
    pub customer_id: Option<String>,
    /// Always `link`.
    pub kind: &'static str,
    /// `pending`, `processing`, `paid`, `expired` or `canceled`.
    pub status: &'static str,
    pub provider: &'static str,
    pub amount_subtotal: i64,
    pub tax_amount: i64,
    pub amount_total: i64,
    pub currency: String,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub url: String,
    /// Whole seconds, UTC, as the seed shows (`2019-08-24T14:15:22Z`).
    #[schema(format = DateTime, example = "2019-08-24T14:15:22Z")]
    pub expires_at: String,
    #[schema(format = DateTime, example = "2019-08-24T14:15:22Z")]
    pub created_at: String,
    #[schema(format = DateTime, example = "2019-08-24T14:15:22Z")]
    pub updated_at: String,
    /// Always `payment`.
    pub object: &'static str,
    pub livemode: bool,
}

impl PaymentsPayment {
    fn new(state: &ApiState, link: Link) -> Self {
        Self {
            url: state.hosted_url(&link),
            status: Payments::status_word(link.status),
            id: link.id,
            customer_id: None,
            kind: "link",
            provider: "paylink",
            amount_subtotal: link.amount,
            tax_amount: 0,
            amount_total: link.amount,
            currency: link.currency.code().to_owned(),
            description: link.description,
            metadata: link.metadata,
            expires_at: iso_seconds(link.expires_at),
            created_at: iso_seconds(link.created_at),
            updated_at: iso_seconds(link.updated_at),
            object: "payment",
            livemode: link.livemode,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentsEnvelope {
    /// Always true.
    pub success: bool,
    pub data: PaymentsPayment,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentsList {
    /// Always true.
    pub success: bool,
    /// Newest first.
    pub data: Vec<PaymentsPayment>,
    /// Whether another page follows (ask with `startingAfter`).
    pub has_more: bool,
}

/// What a payment is; this API creates links only.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaymentKind {
    Link,
}

/// A new payment link: the object's own field names.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PaymentsCreateRequest {
    /// `link` (the only kind created here; a charge is made by paying a
    /// link). Optional.
    pub kind: Option<PaymentKind>,
    /// What the customer pays, in minor units (4995 is 49.95); no tax is
    /// added, so `amountSubtotal` is the same and `taxAmount` 0.
    #[schema(minimum = 1, maximum = 99_999_999_999_i64, example = 4995)]
    pub amount_total: i64,
    /// ISO 4217, e.g. `usd`.
    #[schema(value_type = CurrencyCode, example = "usd")]
    pub currency: String,
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    /// Up to 50 string pairs.
    pub metadata: Option<BTreeMap<String, String>>,
    /// When the link stops taking payments (at most a year ahead); paylink's
    /// default lifetime when absent.
    #[schema(format = DateTime, example = "2019-08-24T14:15:22Z")]
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentsErrorBody {
    /// Always false.
    pub success: bool,
    pub error: PaymentsErrorDetail,
}

dialect_responses!(PaymentsErrorBody);

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentsErrorDetail {
    #[serde(rename = "type")]
    pub error_type: String,
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    pub details: Option<serde_json::Value>,
    pub doc_url: String,
}

/// The link a payment id names: a link id, or (for the refusal) a charge.
async fn find_link(state: &ApiState, caller: &Caller, id: &str) -> Result<Link, PaymentsError> {
    if ids::is_well_formed(id, "pay_") {
        let filter = LinkFilter {
            payment_id: Some(id.to_owned()),
            ..LinkFilter::default()
        };
        let found = state.service.list_links(caller, &filter, 1, None).await?;
        return Err(if found.links.is_empty() {
            ServiceError::NotFound.into()
        } else {
            PaymentsError::new(
                StatusCode::BAD_REQUEST,
                "charge_not_cancelable",
                "Charges cannot be canceled; refund the charge instead (POST /v1/payment-links/{id}/refunds on paylink's native API).",
            )
            .with_param(Some("id".into()))
        });
    }
    if !ids::is_well_formed(id, "plink_") {
        return Err(ServiceError::NotFound.into());
    }
    Ok(state.service.get_link(caller, id).await?)
}

/// Create a payment link.
#[utoipa::path(post, path = "/payments", tag = "payments",
    request_body = PaymentsCreateRequest,
    responses(
        (status = 201, description = "The new payment (`kind: link`, `status: pending`)", body = PaymentsEnvelope),
        (status = 400, description = "A field is invalid (`param` names it)", body = PaymentsErrorBody),
        (status = 409, description = "An Idempotency-Key in use", body = PaymentsErrorBody),
        (status = 422, description = "Idempotency-Key reused with another request", body = PaymentsErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("api_key" = [])))]
async fn create_payment(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    JsonBody(request): JsonBody<PaymentsCreateRequest>,
) -> Result<(StatusCode, Json<PaymentsEnvelope>), PaymentsError> {
    let link = state
        .service
        .create_link(
            &caller,
            NewLink {
                amount: Some(request.amount_total),
                currency: Some(request.currency),
                description: request.description,
                metadata: request.metadata,
                expires_at: request.expires_at,
                ..NewLink::default()
            },
        )
        .await
        .map_err(|error| with_field_names(error, FIELD_NAMES))?;
    Ok((
        StatusCode::CREATED,
        Json(PaymentsEnvelope {
            success: true,
            data: PaymentsPayment::new(&state, link),
        }),
    ))
}

/// List payments (links), newest first.
#[utoipa::path(get, path = "/payments", tag = "payments",
    params(
        ("status" = Option<String>, Query, description = "`pending`, `processing`, `paid`, `expired` or `canceled`"),
        ("limit" = Option<i64>, Query, description = "1..100, default 20", minimum = 1, maximum = 100),
        ("startingAfter" = Option<String>, Query, description = "The last id of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of payments", body = PaymentsList),
        (status = 400, description = "A query parameter is invalid (`param` names it)", body = PaymentsErrorBody),
        AuthErrors,
    ),
    security(("api_key" = [])))]
async fn list_payments(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    RawQuery(raw): RawQuery,
) -> Result<Json<PaymentsList>, PaymentsError> {
    let page = super::list_page::<Payments>(&state, &caller, raw.as_deref(), &LIST).await?;
    Ok(Json(PaymentsList {
        success: true,
        data: page
            .links
            .into_iter()
            .map(|link| PaymentsPayment::new(&state, link))
            .collect(),
        has_more: page.has_more,
    }))
}

/// Retrieve a payment (a link).
#[utoipa::path(get, path = "/payments/{id}", tag = "payments",
    params(("id" = String, Path, description = "The payment's id (`plink_...`)")),
    responses(
        (status = 200, description = "The payment", body = PaymentsEnvelope),
        (status = 400, description = "A charge id (charges are not links)", body = PaymentsErrorBody),
        (status = 404, description = "No such payment", body = PaymentsErrorBody),
        AuthErrors,
    ),
    security(("api_key" = [])))]
async fn get_payment(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<PaymentsEnvelope>, PaymentsError> {
    let link = find_link(&state, &caller, &id).await?;
    Ok(Json(PaymentsEnvelope {
        success: true,
        data: PaymentsPayment::new(&state, link),
    }))
}

/// Cancel a payment link. Only a link that has not been paid or started
/// processing can be canceled; canceling a canceled link is a no-op.
/// Charges cannot be canceled.
#[utoipa::path(post, path = "/payments/{id}/cancel", tag = "payments",
    params(("id" = String, Path, description = "The payment's id")),
    responses(
        (status = 200, description = "The canceled payment (or the already canceled one)", body = PaymentsEnvelope),
        (status = 400, description = "`charge_not_cancelable`", body = PaymentsErrorBody),
        (status = 404, description = "No such payment", body = PaymentsErrorBody),
        (status = 409, description = "`payment_not_cancelable`: paid or processing (or an Idempotency-Key in use)", body = PaymentsErrorBody),
        (status = 422, description = "Idempotency-Key reused with another request", body = PaymentsErrorBody),
        AuthErrors,
    ),
    security(("api_key" = [])))]
async fn cancel_payment(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<PaymentsEnvelope>, PaymentsError> {
    let link = find_link(&state, &caller, &id).await?;
    let cancelled = state
        .service
        .cancel_link(&caller, &link.id, None, None, &Payments::POLICY)
        .await?;
    Ok(Json(PaymentsEnvelope {
        success: true,
        data: PaymentsPayment::new(&state, cancelled),
    }))
}

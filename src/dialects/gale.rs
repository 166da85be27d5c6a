//! Gale (seed 000_329b9a4bccee37fd.txt), under `/compat/gale`.
//!
//! `POST /v2/payment-links/{id}/cancel` with an optional `{"reason"}`,
//! `Authorization: Bearer <key>`, the link object with `amount_cents`, and
//! errors as `{"error": {"code", "message", "param"}}`. Only `active`
//! links cancel; `paid`, `expired` and `cancelled` answer 400
//! `invalid_state` "Cannot cancel payment link with status '<status>'".
//!
//! Where the seed is silent (its use cases call them, so they are served):
//! - create `POST /v2/payment-links` takes the link object's writable fields
//!   (`amount_cents`, `currency`, `description`, `payment_type`, `customer`,
//!   `success_url`, `cancel_url`, `metadata`, `expires_at`, `products`) and
//!   answers 201 with the link;
//! - list `GET /v2/payment-links` filters by `status`, `created_before`,
//!   `created_after`, pages with `limit` and `starting_after`, and answers
//!   `{"data": [...], "has_more"}`; retrieve is `GET /v2/payment-links/{id}`;
//! - a payment in progress shows as `active` (Gale has no word for it) and
//!   is refused like `paid`, with a message saying why;
//! - `customer` is always an object and `products` always an array (the
//!   seed's examples read `link.customer.email` and `link.products.some`);
//! - errors the seed does not list keep the native codes (`invalid_request`
//!   400, `account_suspended` 403, `unavailable` 503) in Gale's envelope.

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

use super::{Dialect, DialectError, IdPointers, find_link, iso_seconds};
use crate::domain::cancel::AlreadyCancelled;
use crate::domain::{CancelPolicy, Customer, LineItem, Link, LinkStatus, NewLink};
use crate::service::ServiceError;
use crate::web::ApiState;
use crate::web::error::ErrorCode;
use crate::web::extract::{Authenticated, JsonBody, KeyHeader};
use crate::web::list_query::ListSyntax;
use crate::web::schemas::CurrencyCode;

/// Gale's tables.
pub struct Gale;

/// An error in Gale's envelope.
pub type GaleError = DialectError<Gale>;

impl Dialect for Gale {
    const PREFIX: &'static str = "/compat/gale";
    const KEY_HEADER: KeyHeader = KeyHeader::Bearer;
    /// Only `active` cancels; a second cancel is refused like any other status.
    const POLICY: CancelPolicy = CancelPolicy {
        cancel_expired: false,
        already_cancelled: AlreadyCancelled::Refuse,
    };
    const ID_IN_ANSWERS: IdPointers = IdPointers {
        created: "/id",
        listed: "/data/0/id",
    };

    /// Gale knows `active, paid, expired, cancelled`; a payment in progress
    /// is still `active` to it (it has no word for the moment in between).
    fn status_word(status: LinkStatus) -> &'static str {
        match status {
            LinkStatus::Active | LinkStatus::Processing => "active",
            LinkStatus::Paid => "paid",
            LinkStatus::Expired => "expired",
            LinkStatus::Cancelled => "cancelled",
        }
    }

    fn code(code: ErrorCode) -> &'static str {
        match code {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::AccountSuspended => "account_suspended",
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::IdempotencyKeyInUse => "idempotency_key_in_use",
            ErrorCode::RateLimited => "rate_limit_exceeded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// `{"error": {"code", "message", "param"?}}`.
    fn envelope(error: &GaleError) -> serde_json::Value {
        let mut body = json!({"code": error.code, "message": error.message});
        if let Some(param) = &error.param {
            body["param"] = json!(param);
        }
        json!({ "error": body })
    }

    fn not_found() -> GaleError {
        GaleError::new(StatusCode::NOT_FOUND, "not_found", "Payment link not found")
            .with_param(Some("id".into()))
    }

    fn refusal(status: LinkStatus, _: String) -> GaleError {
        let word = Self::status_word(status);
        GaleError::new(
            StatusCode::BAD_REQUEST,
            "invalid_state",
            format!("Cannot cancel payment link with status '{word}'"),
        )
        .with_param(Some("status".into()))
    }

    fn routes() -> OpenApiRouter<ApiState> {
        OpenApiRouter::new()
            .routes(routes!(create_link, list_links))
            .routes(routes!(get_link))
            .routes(routes!(cancel_link))
    }
}

/// How Gale spells a list query.
const LIST: ListSyntax = ListSyntax {
    status: Some(("active, paid, expired or cancelled", |word| match word {
        "active" => Some(LinkStatus::Active),
        "paid" => Some(LinkStatus::Paid),
        "expired" => Some(LinkStatus::Expired),
        "cancelled" => Some(LinkStatus::Cancelled),
        _ => None,
    })),
    created_range: true,
    native_filters: false,
    paging: Some(("limit", "starting_after")),
};

#[derive(Debug, Serialize, Deserialize, ToSchema, Default)]
pub struct GaleCustomer {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GaleProduct {
    pub merchant_product_id: String,
    pub name: String,
    pub quantity: i64,
    pub price_cents: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GalePaymentLink {
    pub id: String,
    pub url: String,
    pub amount_cents: i64,
    pub currency: String,
    pub description: Option<String>,
    pub payment_type: &'static str,
    /// `active`, `paid`, `expired` or `cancelled`.
    pub status: &'static str,
    pub customer: GaleCustomer,
    pub products: Vec<GaleProduct>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub expires_at: String,
    pub created_at: String,
    pub cancelled_at: Option<String>,
    pub cancellation_reason: Option<String>,
}

impl GalePaymentLink {
    fn new(state: &ApiState, link: Link) -> Self {
        Self {
            url: state.hosted_url(&link),
            status: Gale::status_word(link.status),
            customer: link
                .customer
                .map(|c| GaleCustomer {
                    email: c.email,
                    first_name: c.first_name,
                    last_name: c.last_name,
                })
                .unwrap_or_default(),
            products: link
                .line_items
                .unwrap_or_default()
                .into_iter()
                .map(|item| GaleProduct {
                    merchant_product_id: item.product_id,
                    name: item.name,
                    quantity: item.quantity,
                    price_cents: item.unit_amount,
                })
                .collect(),
            id: link.id,
            amount_cents: link.amount,
            currency: link.currency.code().to_owned(),
            description: link.description,
            payment_type: "one_time",
            success_url: link.success_url,
            cancel_url: link.cancel_url,
            metadata: link.metadata,
            expires_at: iso_seconds(link.expires_at),
            created_at: iso_seconds(link.created_at),
            cancelled_at: link.cancelled_at.map(iso_seconds),
            cancellation_reason: link.cancellation_reason,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GalePaymentLinkList {
    pub data: Vec<GalePaymentLink>,
    pub has_more: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GaleCreateRequest {
    #[schema(minimum = 1, maximum = 99_999_999_999_i64)]
    pub amount_cents: i64,
    #[schema(value_type = CurrencyCode, example = "USD")]
    pub currency: String,
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    pub payment_type: Option<String>,
    pub customer: Option<GaleCustomer>,
    pub products: Option<Vec<GaleProduct>>,
    #[schema(max_length = 2048)]
    pub success_url: Option<String>,
    #[schema(max_length = 2048)]
    pub cancel_url: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GaleCancelRequest {
    #[schema(schema_with = crate::web::schemas::reason)]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GaleErrorBody {
    pub error: GaleErrorDetail,
}

dialect_responses!(GaleErrorBody);

#[derive(Debug, Serialize, ToSchema)]
pub struct GaleErrorDetail {
    /// `invalid_state`, `unauthorized`, `not_found`, `rate_limit_exceeded`, ...
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
}

/// Create a payment link (Gale's fields).
#[utoipa::path(post, path = "/v2/payment-links", tag = "gale",
    request_body = GaleCreateRequest,
    responses(
        (status = 201, description = "Created", body = GalePaymentLink),
        (status = 400, description = "A field is invalid", body = GaleErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("bearer" = [])))]
async fn create_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    JsonBody(request): JsonBody<GaleCreateRequest>,
) -> Result<(StatusCode, Json<GalePaymentLink>), GaleError> {
    let new_link = NewLink {
        amount: Some(request.amount_cents),
        currency: Some(request.currency),
        description: request.description,
        payment_type: request.payment_type,
        customer: request.customer.map(|c| Customer {
            email: c.email,
            first_name: c.first_name,
            last_name: c.last_name,
        }),
        line_items: request.products.map(|products| {
            products
                .into_iter()
                .map(|p| LineItem {
                    product_id: p.merchant_product_id,
                    name: p.name,
                    quantity: p.quantity,
                    unit_amount: p.price_cents,
                })
                .collect()
        }),
        order_reference: None,
        metadata: request.metadata,
        success_url: request.success_url,
        cancel_url: request.cancel_url,
        expires_at: request.expires_at,
    };
    let link = state
        .service
        .create_link(&caller, new_link)
        .await
        .map_err(|error| match error {
            // Native field names where Gale's differ.
            ServiceError::Invalid(mut field) => {
                field.param = field
                    .param
                    .replacen("line_items", "products", 1)
                    .replace("product_id", "merchant_product_id")
                    .replace("unit_amount", "price_cents");
                if field.param == "amount" {
                    field.param = "amount_cents".into();
                }
                GaleError::from(ServiceError::Invalid(field))
            }
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(GalePaymentLink::new(&state, link)),
    ))
}

/// List payment links, newest first.
#[utoipa::path(get, path = "/v2/payment-links", tag = "gale",
    params(
        ("status" = Option<String>, Query, description = "`active`, `paid`, `expired` or `cancelled`"),
        ("created_before" = Option<String>, Query, description = "RFC 3339"),
        ("created_after" = Option<String>, Query, description = "RFC 3339"),
        ("limit" = Option<i64>, Query, description = "1..100, default 20", minimum = 1, maximum = 100),
        ("starting_after" = Option<String>, Query, description = "The last id of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of links", body = GalePaymentLinkList),
        (status = 400, description = "A query parameter is invalid", body = GaleErrorBody),
        AuthErrors,
    ),
    security(("bearer" = [])))]
async fn list_links(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    RawQuery(raw): RawQuery,
) -> Result<Json<GalePaymentLinkList>, GaleError> {
    let page = super::list_page::<Gale>(&state, &caller, raw.as_deref(), &LIST).await?;
    Ok(Json(GalePaymentLinkList {
        data: page
            .links
            .into_iter()
            .map(|link| GalePaymentLink::new(&state, link))
            .collect(),
        has_more: page.has_more,
    }))
}

/// Retrieve a payment link.
#[utoipa::path(get, path = "/v2/payment-links/{id}", tag = "gale",
    params(("id" = String, Path, description = "Payment link ID, `plink_...`")),
    responses(
        (status = 200, description = "The link", body = GalePaymentLink),
        (status = 404, description = "Payment link not found", body = GaleErrorBody),
        AuthErrors,
    ),
    security(("bearer" = [])))]
async fn get_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<GalePaymentLink>, GaleError> {
    let link = find_link(&state, &caller, &id).await?;
    Ok(Json(GalePaymentLink::new(&state, link)))
}

/// Cancel an active payment link.
#[utoipa::path(post, path = "/v2/payment-links/{id}/cancel", tag = "gale",
    params(("id" = String, Path, description = "Payment link ID (e.g., plink_abc123xyz)")),
    request_body(content = Option<GaleCancelRequest>, description = "Optional; `{}` is allowed"),
    responses(
        (status = 200, description = "The cancelled link", body = GalePaymentLink),
        (status = 400, description = "`invalid_state` (not active), or a bad body", body = GaleErrorBody),
        (status = 404, description = "Payment link not found", body = GaleErrorBody),
        (status = 409, description = "The same Idempotency-Key is still running", body = GaleErrorBody),
        (status = 422, description = "Idempotency-Key reused with another request", body = GaleErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("bearer" = [])))]
async fn cancel_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<GaleCancelRequest>,
) -> Result<Json<GalePaymentLink>, GaleError> {
    let link = find_link(&state, &caller, &id).await?;
    let cancelled = state
        .service
        .cancel_link(&caller, &link.id, request.reason, None, &Gale::POLICY)
        .await?;
    Ok(Json(GalePaymentLink::new(&state, cancelled)))
}

/// Gale's webhook event, as its documentation shows it:
/// `{"type": "payment_link.cancelled", "data": {"id", "status",
/// "cancelled_at", "cancellation_reason"}}`, times in whole seconds, UTC.
pub fn webhook_event(event: &crate::domain::LinkEvent) -> Vec<u8> {
    #[derive(Serialize)]
    struct GaleEvent<'a> {
        #[serde(rename = "type")]
        event_type: &'static str,
        data: GaleLinkState<'a>,
    }
    #[derive(Serialize)]
    struct GaleLinkState<'a> {
        id: &'a str,
        status: &'static str,
        cancelled_at: Option<String>,
        cancellation_reason: Option<&'a str>,
    }
    let link = &event.link;
    serde_json::to_vec(&GaleEvent {
        event_type: event.event_type.as_str(),
        data: GaleLinkState {
            id: &link.id,
            status: Gale::status_word(link.status),
            cancelled_at: link.cancelled_at.map(iso_seconds),
            cancellation_reason: link.cancellation_reason.as_deref(),
        },
    })
    .expect("event payloads serialize")
}

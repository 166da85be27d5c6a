//! Plexy (seed 004_02435a1adeeb4ece.txt), under `/compat/plexy`.
//!
//! `DELETE /v1/payment-links/{external_id}` with `Authorization: <key>`
//! (the raw key, no scheme) cancels and answers 204 with an empty body;
//! 404 when there is no such link (an id paylink never issues included),
//! 422 when it cannot be cancelled (paid, expired, already cancelled, or a
//! payment in progress), 500 on a server fault. `external_id` is the
//! paylink link id; in double quotes, as the seed's own example writes it,
//! it is read without them.
//!
//! The seed's menu also lists these, served over the native operations in
//! snake_case: create `POST /v1/payment-links` (201), list `GET
//! /v1/payment-links` (`status`, `limit`, `starting_after`; `{"data",
//! "has_more"}`), retrieve by order reference `GET
//! /v1/payment-links/order-reference/{order_reference}` (the newest link
//! with it), retrieve `GET /v1/payment-links/{external_id}`, update the
//! expiration `PATCH /v1/payment-links/{external_id}` (`{"expires_at"}`)
//! and statistics `GET /v1/payment-links/statistics`. Statuses are written
//! as the seed writes "Cancelled": `Active`, `Processing`, `Paid`,
//! `Expired`, `Cancelled`. Errors (the seed shows none) are
//! `{"error": {"code", "message"}}`.

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

use super::{Dialect, DialectError, IdPointers, iso_seconds};
use crate::domain::cancel::AlreadyCancelled;
use crate::domain::link::LinkUpdate;
use crate::domain::{CancelPolicy, Link, LinkFilter, LinkStatus, NewLink, ids};
use crate::service::ServiceError;
use crate::web::ApiState;
use crate::web::error::ErrorCode;
use crate::web::extract::{Authenticated, JsonBody, KeyHeader};
use crate::web::list_query::ListSyntax;
use crate::web::schemas::CurrencyCode;

/// Plexy's tables.
pub struct Plexy;

/// An error in Plexy's envelope.
pub type PlexyError = DialectError<Plexy>;

impl Dialect for Plexy {
    const PREFIX: &'static str = "/compat/plexy";
    const KEY_HEADER: KeyHeader = KeyHeader::RawAuthorization;
    /// Only an active link cancels; anything else is 422.
    const POLICY: CancelPolicy = CancelPolicy {
        cancel_expired: false,
        already_cancelled: AlreadyCancelled::Refuse,
    };
    const ID_IN_ANSWERS: IdPointers = IdPointers {
        created: "/external_id",
        listed: "/data/0/external_id",
    };

    fn status_word(status: LinkStatus) -> &'static str {
        match status {
            LinkStatus::Active => "Active",
            LinkStatus::Processing => "Processing",
            LinkStatus::Paid => "Paid",
            LinkStatus::Expired => "Expired",
            LinkStatus::Cancelled => "Cancelled",
        }
    }

    fn code(code: ErrorCode) -> &'static str {
        match code {
            ErrorCode::InvalidRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::AccountSuspended => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidState => "unprocessable_entity",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::IdempotencyKeyInUse => "idempotency_key_in_use",
            ErrorCode::RateLimited => "too_many_requests",
            ErrorCode::Unavailable => "service_unavailable",
            ErrorCode::Internal => "internal_server_error",
        }
    }

    /// `{"error": {"code", "message"}}`.
    fn envelope(error: &PlexyError) -> serde_json::Value {
        json!({"error": {"code": error.code, "message": error.message}})
    }

    fn not_found() -> PlexyError {
        PlexyError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Payment link not found.",
        )
    }

    fn refusal(status: LinkStatus, message: String) -> PlexyError {
        PlexyError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            format!(
                "The payment link is {} and cannot be changed. {message}",
                Self::status_word(status)
            ),
        )
    }

    fn routes() -> OpenApiRouter<ApiState> {
        OpenApiRouter::new()
            .routes(routes!(create_link, list_links))
            .routes(routes!(statistics))
            .routes(routes!(by_order_reference))
            .routes(routes!(get_link, update_expiration, cancel_link))
    }
}

/// How Plexy spells a list query: its status words, pages.
const LIST: ListSyntax = ListSyntax {
    status: Some(("Active, Processing, Paid, Expired or Cancelled", |word| {
        LinkStatus::parse(&word.to_lowercase())
    })),
    created_range: false,
    native_filters: false,
    paging: Some(("limit", "starting_after")),
};

#[derive(Debug, Serialize, ToSchema)]
pub struct PlexyPaymentLink {
    pub external_id: String,
    pub url: String,
    pub amount: i64,
    pub currency: String,
    pub description: Option<String>,
    /// `Active`, `Processing`, `Paid`, `Expired` or `Cancelled`.
    pub status: &'static str,
    pub order_reference: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    /// Times are whole seconds, UTC (`2024-01-15T10:00:00Z`), one fixed
    /// format (the seed shows none).
    #[schema(format = DateTime, example = "2024-01-15T10:00:00Z")]
    pub expires_at: String,
    #[schema(format = DateTime, example = "2024-01-15T10:00:00Z")]
    pub created_at: String,
    #[schema(format = DateTime, example = "2024-01-15T10:00:00Z")]
    pub updated_at: String,
    #[schema(format = DateTime, example = "2024-01-15T10:00:00Z")]
    pub cancelled_at: Option<String>,
    #[schema(format = DateTime, example = "2024-01-15T10:00:00Z")]
    pub paid_at: Option<String>,
}

impl PlexyPaymentLink {
    fn new(state: &ApiState, link: Link) -> Self {
        Self {
            url: state.hosted_url(&link),
            status: Plexy::status_word(link.status),
            external_id: link.id,
            amount: link.amount,
            currency: link.currency.code().to_owned(),
            description: link.description,
            order_reference: link.order_reference,
            metadata: link.metadata,
            success_url: link.success_url,
            cancel_url: link.cancel_url,
            expires_at: iso_seconds(link.expires_at),
            created_at: iso_seconds(link.created_at),
            updated_at: iso_seconds(link.updated_at),
            cancelled_at: link.cancelled_at.map(iso_seconds),
            paid_at: link.paid_at.map(iso_seconds),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlexyPaymentLinkList {
    pub data: Vec<PlexyPaymentLink>,
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlexyStatisticsItem {
    pub status: &'static str,
    pub currency: String,
    pub count: i64,
    pub amount: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlexyStatistics {
    pub data: Vec<PlexyStatisticsItem>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlexyCreateRequest {
    /// Minor units, > 0.
    #[schema(minimum = 1, maximum = 99_999_999_999_i64)]
    pub amount: i64,
    #[schema(value_type = CurrencyCode, example = "EUR")]
    pub currency: String,
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    #[schema(min_length = 1, max_length = 255)]
    pub order_reference: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    #[schema(max_length = 2048)]
    pub success_url: Option<String>,
    #[schema(max_length = 2048)]
    pub cancel_url: Option<String>,
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlexyUpdateExpiration {
    /// The new expiration: in the future, at most a year ahead.
    pub expires_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlexyErrorBody {
    pub error: PlexyErrorDetail,
}

dialect_responses!(PlexyErrorBody);

#[derive(Debug, Serialize, ToSchema)]
pub struct PlexyErrorDetail {
    pub code: String,
    pub message: String,
}

/// The link id an `external_id` names. The seed's own example writes it in
/// double quotes (`"abcd1234-..."`), so one pair of quotes is read past;
/// an id paylink could never have issued is as absent as an unknown one
/// (404), so ids cannot be told apart by their shape.
fn link_id(external_id: &str) -> Result<&str, PlexyError> {
    let id = external_id
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(external_id);
    if ids::is_well_formed(id, "plink_") {
        Ok(id)
    } else {
        Err(Plexy::not_found())
    }
}

/// Create a payment link.
#[utoipa::path(post, path = "/v1/payment-links", tag = "plexy",
    request_body = PlexyCreateRequest,
    responses(
        (status = 201, description = "Created", body = PlexyPaymentLink),
        (status = 400, description = "A field is invalid", body = PlexyErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("raw_authorization" = [])))]
async fn create_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    JsonBody(request): JsonBody<PlexyCreateRequest>,
) -> Result<(StatusCode, Json<PlexyPaymentLink>), PlexyError> {
    let link = state
        .service
        .create_link(
            &caller,
            NewLink {
                amount: Some(request.amount),
                currency: Some(request.currency),
                description: request.description,
                order_reference: request.order_reference,
                metadata: request.metadata,
                success_url: request.success_url,
                cancel_url: request.cancel_url,
                expires_at: request.expires_at,
                ..NewLink::default()
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(PlexyPaymentLink::new(&state, link)),
    ))
}

/// List payment links, newest first.
#[utoipa::path(get, path = "/v1/payment-links", tag = "plexy",
    params(
        ("status" = Option<String>, Query, description = "`Active`, `Processing`, `Paid`, `Expired` or `Cancelled`"),
        ("limit" = Option<i64>, Query, description = "1..100, default 20", minimum = 1, maximum = 100),
        ("starting_after" = Option<String>, Query, description = "The last id of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of links", body = PlexyPaymentLinkList),
        (status = 400, description = "A query parameter is invalid", body = PlexyErrorBody),
        AuthErrors,
    ),
    security(("raw_authorization" = [])))]
async fn list_links(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    RawQuery(raw): RawQuery,
) -> Result<Json<PlexyPaymentLinkList>, PlexyError> {
    let page = super::list_page::<Plexy>(&state, &caller, raw.as_deref(), &LIST).await?;
    Ok(Json(PlexyPaymentLinkList {
        data: page
            .links
            .into_iter()
            .map(|link| PlexyPaymentLink::new(&state, link))
            .collect(),
        has_more: page.has_more,
    }))
}

/// Retrieve payment link statistics: counts and sums by status and currency.
#[utoipa::path(get, path = "/v1/payment-links/statistics", tag = "plexy",
    responses(
        (status = 200, description = "Statistics", body = PlexyStatistics),
        AuthErrors,
    ),
    security(("raw_authorization" = [])))]
async fn statistics(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<PlexyStatistics>, PlexyError> {
    let rows = state.service.stats(&caller, &LinkFilter::default()).await?;
    Ok(Json(PlexyStatistics {
        data: rows
            .into_iter()
            .map(|row| PlexyStatisticsItem {
                status: Plexy::status_word(row.status),
                currency: row.currency,
                count: row.count,
                amount: row.amount,
            })
            .collect(),
    }))
}

/// Retrieve the newest payment link with an order reference.
#[utoipa::path(get, path = "/v1/payment-links/order-reference/{order_reference}", tag = "plexy",
    params(("order_reference" = String, Path, description = "Your order reference")),
    responses(
        (status = 200, description = "The link", body = PlexyPaymentLink),
        (status = 404, description = "No link with this order reference", body = PlexyErrorBody),
        AuthErrors,
    ),
    security(("raw_authorization" = [])))]
async fn by_order_reference(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(order_reference): Path<String>,
) -> Result<Json<PlexyPaymentLink>, PlexyError> {
    let filter = LinkFilter {
        order_reference: Some(order_reference),
        ..LinkFilter::default()
    };
    let page = state.service.list_links(&caller, &filter, 1, None).await?;
    let link = page
        .links
        .into_iter()
        .next()
        .ok_or(ServiceError::NotFound)?;
    Ok(Json(PlexyPaymentLink::new(&state, link)))
}

/// Retrieve a payment link.
#[utoipa::path(get, path = "/v1/payment-links/{external_id}", tag = "plexy",
    params(("external_id" = String, Path, description = "The link id, `plink_...`")),
    responses(
        (status = 200, description = "The link", body = PlexyPaymentLink),
        (status = 404, description = "Not found", body = PlexyErrorBody),
        AuthErrors,
    ),
    security(("raw_authorization" = [])))]
async fn get_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<PlexyPaymentLink>, PlexyError> {
    let id = link_id(&id)?;
    let link = state.service.get_link(&caller, id).await?;
    Ok(Json(PlexyPaymentLink::new(&state, link)))
}

/// Update a payment link's expiration (active links only).
#[utoipa::path(patch, path = "/v1/payment-links/{external_id}", tag = "plexy",
    params(("external_id" = String, Path, description = "The link id")),
    request_body = PlexyUpdateExpiration,
    responses(
        (status = 200, description = "The updated link", body = PlexyPaymentLink),
        (status = 400, description = "Malformed id or expiration", body = PlexyErrorBody),
        (status = 404, description = "Not found", body = PlexyErrorBody),
        (status = 409, description = "The same Idempotency-Key is still running", body = PlexyErrorBody),
        (status = 422, description = "The link is not active (or an Idempotency-Key reused)", body = PlexyErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("raw_authorization" = [])))]
async fn update_expiration(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<PlexyUpdateExpiration>,
) -> Result<Json<PlexyPaymentLink>, PlexyError> {
    let id = link_id(&id)?;
    let update = LinkUpdate {
        expires_at: Some(request.expires_at),
        ..LinkUpdate::default()
    };
    let link = state.service.update_link(&caller, id, update).await?;
    Ok(Json(PlexyPaymentLink::new(&state, link)))
}

/// Cancel a payment link: 204 with an empty body.
#[utoipa::path(delete, path = "/v1/payment-links/{external_id}", tag = "plexy",
    params(("external_id" = String, Path, description = "The link id")),
    responses(
        (status = 204, description = "Payment link successfully canceled"),
        (status = 404, description = "Not found", body = PlexyErrorBody),
        (status = 409, description = "The same Idempotency-Key is still running", body = PlexyErrorBody),
        (status = 422, description = "Cannot be cancelled: paid, expired, already cancelled, or paying", body = PlexyErrorBody),
        (status = 500, description = "Server fault", body = PlexyErrorBody),
        AuthErrors,
    ),
    security(("raw_authorization" = [])))]
async fn cancel_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, PlexyError> {
    let id = link_id(&id)?;
    state
        .service
        .cancel_link(&caller, id, None, None, &Plexy::POLICY)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

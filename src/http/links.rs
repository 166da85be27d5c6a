//! Native v1 payment-link endpoints.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::wire::*;
use crate::domain::LinkFilter;
use crate::domain::{CancelPolicy, LinkStatus, ids};
use crate::service::{BulkOutcome, MAX_BULK_CANCEL, ServiceError};
use crate::web::ApiState;
use crate::web::error::{
    ApiError, ApiResult, AuthErrors, BodyErrors, ErrorBody, IdempotencyErrors,
};
use crate::web::extract::{Authenticated, JsonBody};
use crate::web::list_query::{self, ListSyntax};
use crate::web::schemas::IdempotencyKey;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_link, list_links))
        .routes(routes!(get_link, update_link))
        .routes(routes!(cancel_link))
        .routes(routes!(bulk_cancel))
        .routes(routes!(link_stats))
        .routes(routes!(link_events))
        .routes(routes!(create_refund, list_refunds))
}

/// Answers 404 for an id this service could never have issued, without a
/// database round trip, and maps "not found" to a message naming the id.
fn check_link_id(id: &str) -> ApiResult<()> {
    if ids::is_well_formed(id, "plink_") {
        Ok(())
    } else {
        Err(ApiError::no_such_link(id))
    }
}

fn name_missing_link(id: &str) -> impl Fn(ServiceError) -> ApiError + '_ {
    move |error| match error {
        ServiceError::NotFound => ApiError::no_such_link(id),
        other => other.into(),
    }
}

/// Create a payment link.
///
/// Creates a link in the key's account and mode and answers 201 with it,
/// `status: active`, its hosted `url` ready to share. Give `amount` in
/// minor units (4995 is 49.95) and a `currency`, or `line_items` whose
/// total is the amount. `expires_at` defaults to the service's link
/// lifetime and may be at most a year ahead. Send an `Idempotency-Key` so a
/// retry after a timeout cannot create a second link.
#[utoipa::path(post, path = "/v1/payment-links", tag = "payment links",
    request_body = CreatePaymentLinkRequest,
    params(IdempotencyKey),
    responses(
        IdempotencyErrors,
        (status = 201, description = "Created", body = PaymentLinkResource),
        (status = 400, description = "A field is invalid (`param` names it)", body = ErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn create_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    JsonBody(request): JsonBody<CreatePaymentLinkRequest>,
) -> ApiResult<(StatusCode, Json<PaymentLinkResource>)> {
    let link = state.service.create_link(&caller, request.into()).await?;
    Ok((
        StatusCode::CREATED,
        Json(PaymentLinkResource::new(link, &state.public_url)),
    ))
}

/// Retrieve a payment link.
///
/// Answers the link as it is now: an active link past its `expires_at`
/// reads as `expired` even before the expiry is stored. A link of another
/// account or mode is a 404, as a missing one is.
#[utoipa::path(get, path = "/v1/payment-links/{id}", tag = "payment links",
    params(("id" = String, Path, description = "The link's id, `plink_...`")),
    responses(
        (status = 200, description = "The link (an active link past `expires_at` reads as expired)", body = PaymentLinkResource),
        (status = 404, description = "No such link in this account and mode", body = ErrorBody),
        AuthErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn get_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<PaymentLinkResource>> {
    check_link_id(&id)?;
    let link = state
        .service
        .get_link(&caller, &id)
        .await
        .map_err(name_missing_link(&id))?;
    Ok(Json(PaymentLinkResource::new(link, &state.public_url)))
}

/// Query parameters of the list (documentation of what `list_query::parse` reads).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "documents the query string; `list_query` parses it"
)]
struct ListLinksQuery {
    /// Effective status (an active link past `expires_at` counts as expired).
    status: Option<PaymentLinkStatus>,
    /// Only links created strictly after this time (RFC 3339).
    created_after: Option<Timestamp>,
    /// Only links created strictly before this time (RFC 3339).
    created_before: Option<Timestamp>,
    order_reference: Option<String>,
    /// Links with a line item of this product.
    product_id: Option<String>,
    /// 1..100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The id of the last link of the previous page.
    #[param(pattern = "^plink_[0-9A-Za-z]+$")]
    starting_after: Option<String>,
    /// `metadata[KEY]=VALUE`: links whose metadata has KEY = VALUE (one
    /// pair per parameter, all must match).
    #[param(style = DeepObject, explode, value_type = Option<Object>, example = json!({"order": "A-1"}))]
    metadata: Option<BTreeMap<String, String>>,
}

/// List payment links, newest first.
///
/// Filters combine (all must match): `status`, a creation-time range,
/// `order_reference`, `product_id` and any number of `metadata[KEY]=VALUE`.
/// Pages hold up to `limit` links; pass the last id as `starting_after` for
/// the next page while `has_more` is true. An unknown parameter is a 400
/// naming it, never ignored.
#[utoipa::path(get, path = "/v1/payment-links", tag = "payment links",
    params(ListLinksQuery),
    responses(
        (status = 200, description = "A page of links", body = PaymentLinkList),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
        AuthErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn list_links(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<PaymentLinkList>> {
    let query = list_query::parse(raw.as_deref(), &ListSyntax::NATIVE)?;
    let page = state
        .service
        .list_links(
            &caller,
            &query.filter,
            query.limit,
            query.starting_after.as_deref(),
        )
        .await?;
    Ok(Json(PaymentLinkList {
        object: "list",
        data: page
            .links
            .into_iter()
            .map(|link| PaymentLinkResource::new(link, &state.public_url))
            .collect(),
        has_more: page.has_more,
    }))
}

/// Update a payment link.
///
/// Changes an active link's `expires_at`, `metadata` or `description`;
/// fields left out are kept, and `metadata` given replaces the whole map.
/// Each change records a `payment_link.updated` event with the previous
/// values in `data.previous_attributes`. A link that is not active answers
/// 409.
#[utoipa::path(patch, path = "/v1/payment-links/{id}", tag = "payment links",
    params(("id" = String, Path, description = "The link's id"), IdempotencyKey),
    request_body(content = Option<UpdatePaymentLinkRequest>, description = "An empty body changes nothing"),
    responses(
        IdempotencyErrors,
        (status = 200, description = "The updated link", body = PaymentLinkResource),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 404, description = "No such link", body = ErrorBody),
        (status = 409, description = "The link is not active (`invalid_state`); or the same Idempotency-Key is still running", body = ErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn update_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<UpdatePaymentLinkRequest>,
) -> ApiResult<Json<PaymentLinkResource>> {
    check_link_id(&id)?;
    let link = state
        .service
        .update_link(&caller, &id, request.into())
        .await
        .map_err(name_missing_link(&id))?;
    Ok(Json(PaymentLinkResource::new(link, &state.public_url)))
}

/// Cancel a payment link.
///
/// An active link is cancelled at once (with an optional internal `reason`)
/// and records `payment_link.cancelled`. Cancelling a cancelled link
/// answers 200 with it unchanged. A paid or expired link answers 409. If a
/// payment is in progress, the cancel waits up to two seconds for it to
/// resolve and then decides from where it landed; still unresolved, 409, to
/// be retried.
#[utoipa::path(post, path = "/v1/payment-links/{id}/cancel", tag = "payment links",
    params(("id" = String, Path, description = "The link's id"), IdempotencyKey),
    request_body(content = Option<CancelRequest>, description = "Optional; an empty body is allowed"),
    responses(
        IdempotencyErrors,
        (status = 200, description = "The cancelled link", body = PaymentLinkResource),
        (status = 400, description = "`reason` too long, or a bad body", body = ErrorBody),
        (status = 404, description = "No such link", body = ErrorBody),
        (status = 409, description = "Processing, paid or expired (`invalid_state`); or the same Idempotency-Key is still running", body = ErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn cancel_link(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<CancelRequest>,
) -> ApiResult<Json<PaymentLinkResource>> {
    check_link_id(&id)?;
    let link = state
        .service
        .cancel_link(
            &caller,
            &id,
            request.reason,
            request.customer_message,
            &CancelPolicy::NATIVE,
        )
        .await
        .map_err(name_missing_link(&id))?;
    Ok(Json(PaymentLinkResource::new(link, &state.public_url)))
}

/// Cancel many payment links.
///
/// Cancels every link matching the filters (at most 1000 a call, newest
/// first), or with `dry_run` reports what would be cancelled without
/// changing anything. Each link's outcome is listed: cancelled, already
/// cancelled, refused (with the reason) or failed. Run it again with
/// `starting_after` while `has_more` is true.
#[utoipa::path(post, path = "/v1/payment-links/cancel", tag = "payment links",
    request_body(content = BulkCancelRequest, description = "At least one filter, or `\"all\": true` to act on every link of the account and mode (newest first, up to 1000 a call)"),
    params(IdempotencyKey),
    responses(
        IdempotencyErrors,
        (status = 200, description = "Per-link outcomes", body = BulkCancelResponse),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn bulk_cancel(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    JsonBody(request): JsonBody<BulkCancelRequest>,
) -> ApiResult<Json<BulkCancelResponse>> {
    let limit = match request.limit {
        None => MAX_BULK_CANCEL,
        Some(limit) => usize::try_from(limit)
            .ok()
            .filter(|limit| (1..=MAX_BULK_CANCEL).contains(limit))
            .ok_or_else(|| {
                ApiError::invalid(
                    "limit",
                    format!("`limit` must be from 1 to {MAX_BULK_CANCEL}."),
                )
            })?,
    };
    let filter = LinkFilter {
        status: request.status.map(Into::into),
        created_after: request.created_after,
        created_before: request.created_before,
        order_reference: request.order_reference,
        product_id: request.product_id,
        metadata: request.metadata.unwrap_or_default().into_iter().collect(),
        payment_id: None,
    };
    let filtered = filter.status.is_some()
        || filter.created_after.is_some()
        || filter.created_before.is_some()
        || filter.order_reference.is_some()
        || filter.product_id.is_some()
        || !filter.metadata.is_empty();
    if !filtered && !request.all {
        return Err(ApiError::invalid(
            "all",
            "A bulk cancel needs at least one filter; to cancel every link of the account, send `\"all\": true`.",
        ));
    }
    let (items, has_more) = state
        .service
        .bulk_cancel(
            &caller,
            &filter,
            limit,
            request.starting_after.as_deref(),
            request.reason,
            request.dry_run,
        )
        .await?;
    let mut summary = BTreeMap::new();
    let data: Vec<BulkCancelItem> = items
        .into_iter()
        .map(|item| {
            let (outcome, error) = match item.outcome {
                BulkOutcome::Cancelled => (BulkOutcomeKind::Cancelled, None),
                BulkOutcome::WouldCancel => (BulkOutcomeKind::WouldCancel, None),
                BulkOutcome::AlreadyCancelled => (BulkOutcomeKind::AlreadyCancelled, None),
                BulkOutcome::Refused(refusal) => (
                    BulkOutcomeKind::Refused,
                    Some(BulkOutcomeError {
                        code: "invalid_state".into(),
                        message: refusal.message().into(),
                    }),
                ),
                BulkOutcome::Failed(message) => (
                    BulkOutcomeKind::Failed,
                    Some(BulkOutcomeError {
                        code: "unavailable".into(),
                        message,
                    }),
                ),
            };
            let key = serde_json::to_value(&outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            *summary.entry(key).or_insert(0) += 1;
            BulkCancelItem {
                id: item.link.id,
                outcome,
                status: item.link.status.into(),
                error,
            }
        })
        .collect();
    Ok(Json(BulkCancelResponse {
        object: "bulk_cancel",
        dry_run: request.dry_run,
        data,
        summary,
        has_more,
    }))
}

/// Query parameters of the stats (documentation of what is parsed by hand).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "documents the query string; `list_query` parses it"
)]
struct StatsQuery {
    /// Only links created strictly after this time (RFC 3339).
    created_after: Option<Timestamp>,
    /// Only links created strictly before this time (RFC 3339).
    created_before: Option<Timestamp>,
    status: Option<PaymentLinkStatus>,
    order_reference: Option<String>,
    product_id: Option<String>,
    /// `metadata[KEY]=VALUE`: links whose metadata has KEY = VALUE (one
    /// pair per parameter, all must match).
    #[param(style = DeepObject, explode, value_type = Option<Object>, example = json!({"order": "A-1"}))]
    metadata: Option<BTreeMap<String, String>>,
}

/// Payment link statistics.
///
/// Counts and amount sums (minor units) grouped by effective status and
/// currency, over the same filters as the list. Amounts of different
/// currencies are never added together.
#[utoipa::path(get, path = "/v1/payment-links/stats", tag = "payment links",
    params(StatsQuery),
    responses(
        (status = 200, description = "Counts and sums", body = StatsResponse),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
        AuthErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn link_stats(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<StatsResponse>> {
    let query = list_query::parse(raw.as_deref(), &ListSyntax::NATIVE_FILTERS)?;
    let rows = state.service.stats(&caller, &query.filter).await?;
    let mut count_by_status: BTreeMap<String, i64> = LinkStatus::ALL
        .iter()
        .map(|status| (status.as_str().to_owned(), 0))
        .collect();
    for row in &rows {
        *count_by_status
            .entry(row.status.as_str().to_owned())
            .or_insert(0) += row.count;
    }
    Ok(Json(StatsResponse {
        object: "payment_link_stats",
        livemode: caller.scope.livemode,
        created_after: query.filter.created_after,
        created_before: query.filter.created_before,
        count_by_status,
        data: rows
            .into_iter()
            .map(|row| StatsRowBody {
                status: row.status.into(),
                currency: row.currency,
                count: row.count,
                amount: row.amount,
            })
            .collect(),
    }))
}

/// A payment link's events.
///
/// The link's audit trail, oldest first: every change with the actor that
/// made it (an API key by its id, the customer, or paylink itself) and the
/// link as the change left it.
#[utoipa::path(get, path = "/v1/payment-links/{id}/events", tag = "payment links",
    params(("id" = String, Path, description = "The link's id")),
    responses(
        (status = 200, description = "Events, oldest first", body = EventList),
        (status = 404, description = "No such link", body = ErrorBody),
        AuthErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn link_events(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<EventList>> {
    check_link_id(&id)?;
    let events = state
        .service
        .link_events(&caller, &id)
        .await
        .map_err(name_missing_link(&id))?;
    Ok(Json(EventList {
        object: "list",
        data: events
            .into_iter()
            .map(|event| EventResource::new(event, &state.public_url))
            .collect(),
    }))
}

/// Refund a paid payment link.
///
/// Refunds in full (the default: what is left) or in part. Refunds never
/// add up to more than the link's amount, however many run at once. The
/// refund is `succeeded` when the processor has accepted it, `pending` if
/// it has not answered yet (paylink finishes it), or `failed` (its amount
/// can be refunded again). An unpaid link, or one refunded in full, answers
/// 409.
#[utoipa::path(post, path = "/v1/payment-links/{id}/refunds", tag = "payment links",
    params(("id" = String, Path, description = "The link's id, `plink_...`"), IdempotencyKey),
    request_body = CreateRefundRequest,
    responses(
        IdempotencyErrors,
        (status = 201, description = "The refund", body = RefundResource),
        (status = 400, description = "`amount` is not positive or is more than what is left to refund", body = ErrorBody),
        (status = 404, description = "No such link in this account and mode", body = ErrorBody),
        (status = 409, description = "The link is not paid, or is refunded in full; or the same Idempotency-Key is still running", body = ErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn create_refund(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<CreateRefundRequest>,
) -> ApiResult<(StatusCode, Json<RefundResource>)> {
    check_link_id(&id)?;
    let result = state
        .service
        .refund_link(&caller, &id, request.amount, request.reason)
        .await
        .map_err(name_missing_link(&id))?;
    Ok((
        StatusCode::CREATED,
        Json(RefundResource::from(result.refund)),
    ))
}

/// A payment link's refunds.
///
/// Every refund of the link, oldest first, with its status; the link's
/// `amount_refunded` is the sum of those not failed.
#[utoipa::path(get, path = "/v1/payment-links/{id}/refunds", tag = "payment links",
    params(("id" = String, Path, description = "The link's id, `plink_...`")),
    responses(
        (status = 200, description = "The refunds", body = RefundList),
        (status = 404, description = "No such link in this account and mode", body = ErrorBody),
        AuthErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn list_refunds(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<RefundList>> {
    check_link_id(&id)?;
    let refunds = state
        .service
        .link_refunds(&caller, &id)
        .await
        .map_err(name_missing_link(&id))?;
    Ok(Json(RefundList {
        object: "list",
        data: refunds.into_iter().map(RefundResource::from).collect(),
        has_more: false,
    }))
}

//! Native v1 event log: list and retrieve events (with their webhook
//! deliveries and every attempt), and redeliver one by hand.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::wire::*;
use crate::domain::EventFilter;
use crate::domain::{EventType, ids};
use crate::service::ServiceError;
use crate::web::ApiState;
use crate::web::error::{
    ApiError, ApiResult, AuthErrors, BodyErrors, ErrorBody, IdempotencyErrors,
};
use crate::web::extract::{Authenticated, JsonBody};
use crate::web::list_query::page_limit;
use crate::web::schemas::IdempotencyKey;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(get_event))
        .routes(routes!(redeliver_event))
}

fn no_such_event(id: &str) -> ApiError {
    ApiError::not_found(format!("No such event `{id}`.")).with_param("id")
}

fn check_event_id(id: &str) -> ApiResult<()> {
    if ids::is_well_formed(id, "evt_") {
        Ok(())
    } else {
        Err(no_such_event(id))
    }
}

fn name_missing_event(id: &str) -> impl Fn(ServiceError) -> ApiError + '_ {
    move |error| match error {
        ServiceError::NotFound => no_such_event(id),
        other => other.into(),
    }
}

/// Query parameters of the event list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "documents the query string parsed by hand")]
struct ListEventsQuery {
    /// Only events of this type, e.g. `payment_link.cancelled`.
    #[param(rename = "type")]
    event_type: Option<String>,
    /// Only events of this payment link (`plink_...`).
    payment_link: Option<String>,
    /// 1..100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The id of the last event of the previous page.
    #[param(pattern = "^evt_[0-9A-Za-z]+$")]
    starting_after: Option<String>,
}

/// List events, newest first.
///
/// Every change to the account's links in this mode, filtered by `type` and
/// `payment_link`, paged with `starting_after` while `has_more` is
/// true. Events are kept for good: they are the audit trail.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(ListEventsQuery),
    responses(
        (status = 200, description = "A page of events", body = EventPageBody),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
        AuthErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn list_events(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<EventPageBody>> {
    let mut filter = EventFilter::default();
    let mut limit = 20;
    let mut starting_after = None;
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "type" => {
                filter.event_type = Some(EventType::parse(&value).ok_or_else(|| {
                    ApiError::invalid("type", format!("`{value}` is not an event type."))
                })?);
            }
            "payment_link" => filter.link_id = Some(value),
            "limit" => {
                limit = page_limit(&value).ok_or_else(|| {
                    ApiError::invalid("limit", "`limit` must be an integer from 1 to 100.")
                })?;
            }
            "starting_after" => starting_after = Some(value),
            other => {
                return Err(ApiError::invalid(
                    other,
                    format!("Unknown query parameter `{other}`."),
                ));
            }
        }
    }
    let page = state
        .service
        .list_events(&caller, &filter, limit, starting_after.as_deref())
        .await?;
    Ok(Json(EventPageBody {
        object: "list",
        data: page
            .events
            .into_iter()
            .map(|event| EventResource::new(event, &state.public_url))
            .collect(),
        has_more: page.has_more,
    }))
}

/// Retrieve an event.
///
/// The event with its webhook deliveries, one per endpoint that wanted it,
/// each with every attempt: when, the HTTP status or error, and when the
/// next try is due.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "events",
    params(("id" = String, Path, description = "The event's id, `evt_...`")),
    responses(
        (status = 200, description = "The event and its deliveries", body = EventDetail),
        (status = 404, description = "No such event in this account and mode", body = ErrorBody),
        AuthErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn get_event(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<EventDetail>> {
    check_event_id(&id)?;
    let (event, deliveries) = state
        .service
        .get_event(&caller, &id)
        .await
        .map_err(name_missing_event(&id))?;
    Ok(Json(detail(&state, event, deliveries)))
}

/// Send an event again.
///
/// Sends the event again now, with a fresh retry schedule: to `endpoint`,
/// or to every enabled endpoint that wants its type. Useful after fixing a
/// receiver that failed every attempt.
#[utoipa::path(post, path = "/v1/events/{id}/redeliver", tag = "events",
    params(("id" = String, Path, description = "The event's id"), IdempotencyKey),
    request_body(content = Option<RedeliverRequest>, description = "Optional; an empty body redelivers to every interested endpoint"),
    responses(
        IdempotencyErrors,
        (status = 200, description = "The event with its deliveries, now pending", body = EventDetail),
        (status = 400, description = "No such or no enabled endpoint to send to", body = ErrorBody),
        (status = 404, description = "No such event", body = ErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn redeliver_event(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<RedeliverRequest>,
) -> ApiResult<Json<EventDetail>> {
    check_event_id(&id)?;
    let (event, deliveries) = state
        .service
        .redeliver_event(&caller, &id, request.endpoint.as_deref())
        .await
        .map_err(name_missing_event(&id))?;
    Ok(Json(detail(&state, event, deliveries)))
}

fn detail(
    state: &ApiState,
    event: crate::domain::LinkEvent,
    deliveries: Vec<crate::domain::webhook::delivery::Delivery>,
) -> EventDetail {
    EventDetail {
        event: EventResource::new(event, &state.public_url),
        deliveries: deliveries.into_iter().map(DeliveryBody::from).collect(),
    }
}

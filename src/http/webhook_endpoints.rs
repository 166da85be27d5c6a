//! Native v1 webhook endpoint management. The signing secret appears only
//! in the responses that create an endpoint or rotate its secret.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::wire::*;
use crate::domain::ids;
use crate::service::ServiceError;
use crate::web::ApiState;
use crate::web::error::{
    ApiError, ApiResult, AuthErrors, BodyErrors, ErrorBody, IdempotencyErrors,
};
use crate::web::extract::{Authenticated, JsonBody};
use crate::web::schemas::IdempotencyKey;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
}

fn no_such_endpoint(id: &str) -> ApiError {
    ApiError::not_found(format!("No such webhook endpoint `{id}`.")).with_param("id")
}

fn check_endpoint_id(id: &str) -> ApiResult<()> {
    if ids::is_well_formed(id, "we_") {
        Ok(())
    } else {
        Err(no_such_endpoint(id))
    }
}

fn name_missing_endpoint(id: &str) -> impl Fn(ServiceError) -> ApiError + '_ {
    move |error| match error {
        ServiceError::NotFound => no_such_endpoint(id),
        other => other.into(),
    }
}

/// Register a webhook endpoint.
///
/// paylink POSTs each event of the chosen `events` types (all when absent)
/// to `url`, signed with the endpoint's secret as Standard Webhooks sign
/// (`webhook-id`, `webhook-timestamp`, `webhook-signature`). The
/// response carries the signing secret, shown only this once. Private and
/// loopback addresses are refused unless the operator allows them.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhooks",
    request_body = CreateWebhookEndpointRequest,
    params(IdempotencyKey),
    responses(
        IdempotencyErrors,
        (status = 201, description = "Created; `secret` is shown only here", body = WebhookEndpointResource),
        (status = 400, description = "A field is invalid, or the URL is internal (`param` names it)", body = ErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn create_endpoint(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    JsonBody(request): JsonBody<CreateWebhookEndpointRequest>,
) -> ApiResult<(StatusCode, Json<WebhookEndpointResource>)> {
    let endpoint = state
        .service
        .create_webhook_endpoint(&caller, request.into())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookEndpointResource::with_secret(
            endpoint,
            state.service.now(),
        )),
    ))
}

/// List webhook endpoints.
///
/// The endpoints of this account and mode, oldest first, without their
/// secrets.
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhooks",
    responses(
        (status = 200, description = "Every endpoint (secrets are never shown)", body = WebhookEndpointList),
        AuthErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn list_endpoints(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<WebhookEndpointList>> {
    let now = state.service.now();
    let endpoints = state.service.list_webhook_endpoints(&caller).await?;
    Ok(Json(WebhookEndpointList {
        object: "list",
        data: endpoints
            .into_iter()
            .map(|endpoint| WebhookEndpointResource::new(endpoint, now))
            .collect(),
        has_more: false,
    }))
}

/// Retrieve a webhook endpoint.
///
/// The endpoint without its secret: its url, event types, payload format
/// and whether it is enabled.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id, `we_...`")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookEndpointResource),
        (status = 404, description = "No such endpoint in this account and mode", body = ErrorBody),
        AuthErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn get_endpoint(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookEndpointResource>> {
    check_endpoint_id(&id)?;
    let endpoint = state
        .service
        .get_webhook_endpoint(&caller, &id)
        .await
        .map_err(name_missing_endpoint(&id))?;
    Ok(Json(WebhookEndpointResource::new(
        endpoint,
        state.service.now(),
    )))
}

/// Update a webhook endpoint.
///
/// Changes an endpoint's `url`, `events`, `description` or `enabled`;
/// fields left out are kept. A disabled endpoint receives nothing until
/// enabled again.
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id"), IdempotencyKey),
    request_body(content = Option<UpdateWebhookEndpointRequest>, description = "An empty body changes nothing"),
    responses(
        IdempotencyErrors,
        (status = 200, description = "The updated endpoint", body = WebhookEndpointResource),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn update_endpoint(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<UpdateWebhookEndpointRequest>,
) -> ApiResult<Json<WebhookEndpointResource>> {
    check_endpoint_id(&id)?;
    let endpoint = state
        .service
        .update_webhook_endpoint(&caller, &id, request.into())
        .await
        .map_err(name_missing_endpoint(&id))?;
    Ok(Json(WebhookEndpointResource::new(
        endpoint,
        state.service.now(),
    )))
}

/// Delete a webhook endpoint.
///
/// Removes the endpoint; its pending deliveries are marked failed and
/// nothing more is sent to it.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id"), IdempotencyKey),
    responses(
        IdempotencyErrors,
        (status = 200, description = "Deleted", body = DeletedResource),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        AuthErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn delete_endpoint(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<DeletedResource>> {
    check_endpoint_id(&id)?;
    state
        .service
        .delete_webhook_endpoint(&caller, &id)
        .await
        .map_err(name_missing_endpoint(&id))?;
    Ok(Json(DeletedResource {
        id,
        object: "webhook_endpoint",
        deleted: true,
    }))
}

/// Rotate a webhook endpoint's secret.
///
/// Replaces the signing secret and shows the new one once. Every secret
/// replaced in the last 24 hours keeps signing (one signature each) until
/// 24 hours after its replacement, so a receiver can switch without losing
/// an event.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id"), IdempotencyKey),
    request_body(content = Option<RotateSecretRequest>, description = "No fields; an empty body or `{}`"),
    responses(
        IdempotencyErrors,
        (status = 200, description = "The endpoint with its new `secret`", body = WebhookEndpointResource),
        (status = 400, description = "A malformed body, or too many rotations within 24 hours", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        AuthErrors,
        BodyErrors,
    ),
    security(("bearer" = []), ("api_key" = [])))]
async fn rotate_secret(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    JsonBody(RotateSecretRequest {}): JsonBody<RotateSecretRequest>,
) -> ApiResult<Json<WebhookEndpointResource>> {
    check_endpoint_id(&id)?;
    let endpoint = state
        .service
        .rotate_webhook_secret(&caller, &id)
        .await
        .map_err(name_missing_endpoint(&id))?;
    Ok(Json(WebhookEndpointResource::with_secret(
        endpoint,
        state.service.now(),
    )))
}

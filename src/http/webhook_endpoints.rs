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

/// Register a webhook endpoint. The response carries the signing secret,
/// shown only this once.
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

/// List the webhook endpoints of this account and mode, oldest first.
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

/// Retrieve a webhook endpoint (without its secret).
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

/// Change an endpoint's `url`, `events`, `description` or `enabled`.
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

/// Delete an endpoint. Its pending deliveries are marked failed.
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

/// Replace the signing secret. The response shows the new secret once;
/// every secret replaced in the last 24 hours keeps signing (one signature
/// each) until 24 hours after its replacement.
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

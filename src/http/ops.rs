//! Operational endpoints: liveness, readiness, and the OpenAPI document.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::web::ApiState;
use crate::web::error::{ApiError, ApiResult, ErrorBody};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document `/openapi.json` serves (the composition root
/// assembles it from every surface).
#[derive(Clone)]
pub struct Document(pub Arc<serde_json::Value>);

#[derive(Serialize, ToSchema)]
struct Health {
    status: &'static str,
}

/// Liveness.
///
/// Answers 200 while the process serves HTTP; it does not touch the
/// database (see `/readyz`).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness.
///
/// Answers 200 when the database answers, 503 otherwise: a load balancer
/// sends traffic only to ready nodes.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
async fn readyz(State(state): State<ApiState>) -> ApiResult<(StatusCode, Json<Health>)> {
    state
        .service
        .ready()
        .await
        .map_err(|_| ApiError::unavailable("The database does not answer."))?;
    Ok((StatusCode::OK, Json(Health { status: "ready" })))
}

/// This document.
///
/// The native API's OpenAPI 3.1 document, generated from the handlers. Each
/// provider's format has its own at `/compat/{provider}/openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
async fn openapi_json(
    Extension(Document(document)): Extension<Document>,
) -> Json<serde_json::Value> {
    Json(document.as_ref().clone())
}

//! The native v1 API: payment links, webhook endpoints and events, the
//! operational endpoints, and the webhooks processors send paylink.
//!
//! This layer translates between HTTP and the service; it knows nothing of
//! SQL. Every error leaves through `web::error::ApiError`, so every
//! failure, down to an unknown route or a malformed body, has the same
//! envelope.

mod events;
pub mod examples;
mod links;
pub mod ops;
pub mod processor_webhooks;
mod webhook_endpoints;
pub mod wire;

use axum::Router;
use axum::routing::any;
use utoipa_axum::router::OpenApiRouter;

use crate::web::ApiState;
use crate::web::error::unknown_route;

/// The merchant API's routes (under `/v1`) and their OpenAPI paths. A path
/// under `/v1` with no route is a 404 after authentication, as a route's
/// would be.
pub fn merchant_routes() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    let (routes, document) = OpenApiRouter::new()
        .merge(links::router())
        .merge(webhook_endpoints::router())
        .merge(events::router())
        .split_for_parts();
    (routes.route("/v1/{*rest}", any(unknown_route)), document)
}

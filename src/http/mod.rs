//! HTTP: the axum router, its middleware, and the native v1 API.
//!
//! This layer translates between HTTP and the service; it knows nothing of
//! SQL. Every error leaves through [`error::ApiError`], so every failure,
//! down to an unknown route or a malformed body, has the same envelope.

pub mod auth;
mod detach;
pub mod error;
mod events;
pub mod extract;
pub mod idempotency;
mod links;
mod ops;
mod processor_webhooks;
pub mod rate_limit;
pub mod request_id;
mod strict_json;
mod webhook_endpoints;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::domain::Link;
use crate::service::Service;
use error::{ApiError, ErrorCode};

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    /// Base of hosted page URLs, without a trailing slash.
    pub public_url: Arc<str>,
    pub openapi: Arc<serde_json::Value>,
    pub limits: Arc<rate_limit::RateLimits>,
    /// Requests' detached work (see [`detach`]); shutdown waits for it.
    pub tasks: tokio_util::task::TaskTracker,
    pub csrf: crate::checkout::csrf::CsrfKey,
    pub checkout_limits: Arc<crate::checkout::limits::CheckoutLimits>,
}

impl AppState {
    pub fn resource(&self, link: Link) -> wire::PaymentLinkResource {
        wire::PaymentLinkResource::new(link, &self.public_url)
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "paylink",
        description = "Self-hostable payment links. Amounts are integer minor units. Errors always use the `ErrorBody` envelope.",
    ),
    modifiers(&SecuritySchemes),
    components(schemas(error::ErrorBody, error::ErrorCode))
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("pl_test_...")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        // Plexy's form: the raw key in `Authorization`, no scheme.
        components.add_security_scheme(
            "raw_authorization",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("Authorization"))),
        );
    }
}

/// The routes and their OpenAPI document, built from the same handlers.
pub fn api_router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(links::router())
        .merge(webhook_endpoints::router())
        .merge(events::router())
        .merge(crate::dialects::router())
        .merge(ops::router())
        .split_for_parts()
}

pub struct HttpSettings {
    pub request_timeout: Duration,
    pub limits: Arc<rate_limit::RateLimits>,
    pub tasks: tokio_util::task::TaskTracker,
    pub csrf: crate::checkout::csrf::CsrfKey,
    pub checkout_limits: Arc<crate::checkout::limits::CheckoutLimits>,
}

/// The whole application: routes, fallbacks, limits, request ids, tracing.
pub fn app(service: Arc<Service>, public_url: &str, settings: HttpSettings) -> Router {
    let (router, openapi) = api_router();
    let state = AppState {
        service,
        public_url: public_url.trim_end_matches('/').into(),
        openapi: Arc::new(serde_json::to_value(&openapi).expect("the OpenAPI document serializes")),
        limits: settings.limits,
        tasks: settings.tasks,
        csrf: settings.csrf,
        checkout_limits: settings.checkout_limits,
    };
    let timeout = settings.request_timeout;
    // Layers run outside-in from the last added: request id and timeout,
    // tracing, dialect error envelopes, authentication and rate limits,
    // the detached task of a write, idempotency, the handler.
    router
        .merge(crate::checkout::router())
        .merge(processor_webhooks::router())
        // Only on a matched route and method: a 404 or 405 is answered as
        // such, never from (or into) an idempotency key.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotency,
        ))
        // Outside idempotency: a change, its key's answer and a payment's
        // processor call all run in a task no disconnect can cut.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            detach::run_to_completion,
        ))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(crate::dialects::translate_errors))
        .layer(axum::middleware::from_fn(move |request, next| {
            request_id::layer(timeout, request, next)
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("There is no such route; see /openapi.json for the API.")
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidRequest,
        "This route does not accept that HTTP method; see /openapi.json.",
    )
}

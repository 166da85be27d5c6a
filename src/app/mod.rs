//! The composition root: the one place that knows every layer. It merges
//! the native API, the dialects, the checkout and the processors' webhooks
//! into one application, gives each merchant surface its middleware (see
//! `web::merchant_api`), assembles the OpenAPI document, and hands the
//! webhook dispatcher the payload formats those layers own.

pub mod documents;
pub mod payloads;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tower_http::trace::TraceLayer;

use crate::checkout::{self, CheckoutState};
use crate::service::Service;
use crate::web::error;
use crate::web::extract::{KeyHeader, MAX_BODY_BYTES};
use crate::web::{ApiShared, ApiState, merchant_api, rate_limit, request_id};
use crate::{dialects, http};

pub struct AppSettings {
    pub request_timeout: Duration,
    pub limits: Arc<rate_limit::RateLimits>,
    pub tasks: tokio_util::task::TaskTracker,
    pub csrf: checkout::csrf::CsrfKey,
    pub checkout_limits: Arc<checkout::limits::CheckoutLimits>,
}

/// The whole application: routes, fallbacks, limits, request ids, tracing.
pub fn build(service: Arc<Service>, public_url: &str, settings: AppSettings) -> Router {
    let public_url: Arc<str> = public_url.trim_end_matches('/').into();
    let api = ApiState::new(ApiShared {
        service: Arc::clone(&service),
        public_url: Arc::clone(&public_url),
        limits: settings.limits,
        tasks: settings.tasks.clone(),
    });
    let (native, native_document) = http::merchant_routes();
    let mut merchant = merchant_api(native, &api, KeyHeader::BearerOrApiKey, None);
    // Each dialect's document is served, without a key, beside its routes.
    let mut documents = Router::new();
    for surface in dialects::surfaces(&api) {
        let document = Arc::new(documents::dialect(
            &public_url,
            surface.prefix,
            surface.keys,
            surface.ids,
            surface.document,
        ));
        documents = documents.route(
            &format!("{}/openapi.json", surface.prefix),
            get(move || async move { Json(document.as_ref().clone()) }),
        );
        merchant = merchant.merge(surface.routes);
    }
    let (ops, ops_document) = http::ops::router().split_for_parts();
    let document = Arc::new(documents::native(
        &public_url,
        vec![native_document, ops_document],
    ));
    let checkout = checkout::router(CheckoutState {
        service,
        public_url,
        csrf: settings.csrf,
        limits: settings.checkout_limits,
        tasks: settings.tasks,
    });
    let timeout = settings.request_timeout;
    // Outside-in: request id and timeout, tracing, the body limit, routing
    // (each surface then has its own middleware).
    merchant
        .merge(ops.layer(axum::Extension(http::ops::Document(document))))
        // A processor's event applies writes: it runs detached too, so a
        // processor that hangs up never leaves one half applied.
        .merge(http::processor_webhooks::router().route_layer(
            axum::middleware::from_fn_with_state(
                api.tasks.clone(),
                crate::web::detach::run_to_completion,
            ),
        ))
        .with_state(api)
        .merge(documents)
        .merge(checkout)
        // Prometheus scrapes without a key: keep it off the public
        // internet at the proxy (README, "Running in production").
        .route("/metrics", axum::routing::get(metrics_text))
        .fallback(error::unknown_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(move |request, next| {
            request_id::layer(timeout, request, next)
        }))
        .layer(TraceLayer::new_for_http())
}

/// `/metrics`: every metric in Prometheus's text format.
async fn metrics_text() -> axum::response::Response {
    use axum::response::IntoResponse;
    match crate::telemetry::render() {
        Some(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => {
            error::ApiError::unavailable("Another metrics recorder is installed in this process.")
                .into_response()
        }
    }
}

//! The composition root: the one place that knows every layer. It merges
//! the native API, the dialects, the checkout and the processors' webhooks
//! into one application, gives each merchant surface its middleware (see
//! `web::merchant_api`), assembles the OpenAPI document, and hands the
//! webhook dispatcher the payload formats those layers own.

pub mod payloads;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::checkout::{self, CheckoutState};
use crate::service::Service;
use crate::web::error::{self, ErrorBody, ErrorCode};
use crate::web::extract::{KeyHeader, MAX_BODY_BYTES};
use crate::web::{ApiState, merchant_api, rate_limit, request_id};
use crate::{dialects, http};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "paylink",
        description = "Self-hostable payment links. Amounts are integer minor units. Errors always use the `ErrorBody` envelope.",
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ErrorBody, ErrorCode))
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
    let api = ApiState {
        service: Arc::clone(&service),
        public_url: Arc::clone(&public_url),
        limits: settings.limits,
        tasks: settings.tasks.clone(),
    };
    let mut document = ApiDoc::openapi();
    let (native, native_document) = http::merchant_routes();
    document.merge(native_document);
    let mut merchant = merchant_api(native, &api, KeyHeader::BearerOrApiKey, None);
    for (prefix, routes, dialect_document) in dialects::surfaces(&api) {
        document = document.nest(prefix, dialect_document);
        merchant = merchant.merge(routes);
    }
    let (ops, ops_document) = http::ops::router().split_for_parts();
    document.merge(ops_document);
    let document =
        Arc::new(serde_json::to_value(&document).expect("the OpenAPI document serializes"));
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
        .merge(http::processor_webhooks::router())
        .with_state(api)
        .merge(checkout)
        .fallback(error::unknown_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(move |request, next| {
            request_id::layer(timeout, request, next)
        }))
        .layer(TraceLayer::new_for_http())
}

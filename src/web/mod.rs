//! HTTP plumbing every merchant-facing surface shares: the native API
//! (`crate::http`) and each dialect (`crate::dialects`) mount their routes
//! through [`merchant_api`], which gives them authentication and rate
//! limits (in the key header they name), detached writes and idempotency.
//! The error envelope, the strict JSON extractor, request ids and the one
//! list-query parser live here too. This layer sits on the service and
//! knows no route of its own; the composition root (`crate::app`) merges
//! the surfaces.

pub mod auth;
pub mod detach;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod list_query;
pub mod rate_limit;
pub mod request_id;
pub mod schemas;
mod strict_json;

use std::sync::Arc;

use axum::Router;
use axum::response::Response;

use crate::domain::Link;
use crate::service::Service;
use error::ApiError;
use extract::KeyHeader;

/// What the merchant API's handlers and middleware share: one `Arc`, so
/// the copy each handler and middleware takes per request is one atomic
/// count, not one per field (dropping those copies was 2 % of a read's
/// CPU).
#[derive(Clone)]
pub struct ApiState(Arc<ApiShared>);

impl ApiState {
    pub fn new(shared: ApiShared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for ApiState {
    type Target = ApiShared;

    fn deref(&self) -> &ApiShared {
        &self.0
    }
}

/// The parts of [`ApiState`].
pub struct ApiShared {
    pub service: Arc<Service>,
    /// Base of hosted page URLs, without a trailing slash.
    pub public_url: Arc<str>,
    pub limits: Arc<rate_limit::RateLimits>,
    /// Requests' detached work (see [`detach`]); shutdown waits for it.
    pub tasks: tokio_util::task::TaskTracker,
}

impl ApiShared {
    /// The hosted page of `link`.
    pub fn hosted_url(&self, link: &Link) -> String {
        hosted_url(&self.public_url, &link.slug)
    }
}

/// The hosted page of the link with `slug`.
pub fn hosted_url(public_url: &str, slug: &str) -> String {
    format!("{}/pay/{}", public_url.trim_end_matches('/'), slug)
}

/// Mounts one surface of the merchant API: `routes` answer only callers
/// whose key comes in `keys`, and every error raised on the way (a bad
/// key, a rate limit, a bad body, an unknown route) leaves through
/// `render`, the surface's own envelope (none: the native one). Writes run detached and under
/// their idempotency key.
pub fn merchant_api(
    routes: Router<ApiState>,
    state: &ApiState,
    keys: KeyHeader,
    render: Option<fn(&ApiError) -> Response>,
) -> Router<ApiState> {
    let routes = routes
        // Only on a matched route and method: a 404 or 405 is answered as
        // such, never from (or into) an idempotency key.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotency,
        ))
        // Outside idempotency: a change, its key's answer and a payment's
        // processor call all run in a task no disconnect can cut.
        .route_layer(axum::middleware::from_fn_with_state(
            state.tasks.clone(),
            detach::run_to_completion,
        ))
        // Set after the route layers, so a method a route does not take is
        // a 405 and never reaches idempotency (axum's route layers wrap a
        // method-not-allowed fallback that exists when they are added).
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            auth::Authenticator {
                state: state.clone(),
                keys,
            },
            auth::authenticate,
        ));
    match render {
        Some(render) => routes.layer(axum::middleware::from_fn_with_state(
            render,
            error::render_errors,
        )),
        None => routes,
    }
}

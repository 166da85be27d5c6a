//! Request ids: one per request, in the `X-Request-Id` header and in every
//! error body, so a merchant's support ticket points at one log line.
//!
//! The id lives in a task-local for the request's duration, so errors built
//! anywhere below (extractor rejections included) can carry it.

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error::ApiError;
use crate::domain::ids;

tokio::task_local! {
    static REQUEST_ID: String;
}

pub const HEADER: &str = "x-request-id";

/// The current request's id (empty outside a request).
pub fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// Runs `work` (a request's detached task) under the current request's
/// id and tracing span, so what it logs and answers carries them.
pub fn carry<F: std::future::Future>(work: F) -> impl std::future::Future<Output = F::Output> {
    let id = current();
    REQUEST_ID.scope(id, work.instrument(tracing::Span::current()))
}

/// Assigns the id, bounds the request's time, stamps the response, and
/// writes the access line: one per request at `info`, with the id, the
/// method, the matched route (not the path: no ids in it), the status, the
/// latency and the account (recorded by authentication; never a key).
pub async fn layer(request_timeout: Duration, request: Request, next: Next) -> Response {
    let id = format!("req_{}", ids::random_base62(20));
    // A copy of the matched route's shared text, not of the text.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        %method,
        %route,
        account = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let access = span.clone();
    let handled = async move {
        match tokio::time::timeout(request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => {
                ApiError::unavailable("The request took too long and was abandoned; retry shortly.")
                    .into_response()
            }
        }
    };
    let mut response = REQUEST_ID.scope(id.clone(), handled.instrument(span)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    crate::telemetry::http_request(method.as_str(), route, status, seconds);
    access.in_scope(|| {
        tracing::info!(status, latency_ms = seconds * 1000.0, "request");
    });
    response
}

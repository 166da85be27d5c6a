//! The five providers' wire formats, each under its own base URL, over the
//! same service: a client written for one of them works against paylink by
//! changing its base URL (and using a paylink key in that provider's header).
//!
//! A dialect is translation only: paths, field names and casing, status
//! words, envelopes, error codes. Its cancel rules are a [`CancelPolicy`]
//! handed to the core. Authentication, rate limits and idempotency are the
//! native middleware's; errors those raise are re-rendered in the dialect's
//! envelope by [`translate_errors`].
//!
//! [`CancelPolicy`]: crate::domain::CancelPolicy

pub mod connect;
pub mod gale;
pub mod payments;
pub mod plexy;
pub mod zelta;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use utoipa_axum::router::OpenApiRouter;

use crate::domain::{Link, ids};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::KeyHeader;
use crate::service::{Caller, ServiceError, ServiceResult};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .nest(gale::PREFIX, gale::router())
        .nest(zelta::PREFIX, zelta::router())
        .nest(payments::PREFIX, payments::router())
        .nest(connect::PREFIX, connect::router())
        .nest(plexy::PREFIX, plexy::router())
}

/// Re-renders a native error raised under a dialect's prefix (by the
/// authentication, rate-limit or idempotency layers, body parsing or
/// routing) in that dialect's envelope, keeping the response's headers
/// (`Retry-After`, `RateLimit-*`, `WWW-Authenticate`).
pub async fn translate_errors(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let render: fn(&ApiError) -> Response = if !path.starts_with("/compat/") {
        return next.run(request).await;
    } else if path.starts_with(gale::PREFIX) {
        gale::render_native
    } else if path.starts_with(zelta::PREFIX) {
        zelta::render_native
    } else if path.starts_with(payments::PREFIX) {
        payments::render_native
    } else if path.starts_with(connect::PREFIX) {
        connect::render_native
    } else if path.starts_with(plexy::PREFIX) {
        plexy::render_native
    } else {
        return next.run(request).await;
    };
    let response = next.run(request).await;
    let Some(error) = response.extensions().get::<ApiError>().cloned() else {
        return response;
    };
    let (head, _) = response.into_parts();
    let mut translated = render(&error);
    for (name, value) in &head.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            translated.headers_mut().insert(name, value.clone());
        }
    }
    translated
}

/// The header form a path's API key must come in: each provider's own
/// (a key in another header is not looked at, as that provider would not).
pub fn key_header(path: &str) -> KeyHeader {
    if path.starts_with(gale::PREFIX) {
        KeyHeader::Bearer
    } else if path.starts_with(zelta::PREFIX)
        || path.starts_with(payments::PREFIX)
        || path.starts_with(connect::PREFIX)
    {
        KeyHeader::ApiKey
    } else if path.starts_with(plexy::PREFIX) {
        KeyHeader::RawAuthorization
    } else {
        KeyHeader::BearerOrApiKey
    }
}

/// A link of the caller's, named by its id (`plink_...`) or by the last
/// segment of its hosted URL (its slug), as Zelta's `hashUrl` is.
pub async fn find_link(state: &AppState, caller: &Caller, reference: &str) -> ServiceResult<Link> {
    if reference.starts_with("plink_") {
        if !ids::is_well_formed(reference, "plink_") {
            return Err(ServiceError::NotFound);
        }
        return state.service.get_link(caller, reference).await;
    }
    if reference.is_empty()
        || reference.len() > 64
        || !reference.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(ServiceError::NotFound);
    }
    let link = state.service.get_link_by_slug(reference).await?;
    // Another account's (or mode's) link is as absent as a missing one.
    if link.account_id != caller.scope.account_id || link.livemode != caller.scope.livemode {
        return Err(ServiceError::NotFound);
    }
    Ok(link)
}

pub fn hosted_url(state: &AppState, link: &Link) -> String {
    crate::http::wire::hosted_url(&state.public_url, &link.slug)
}

/// `2024-01-15T12:00:00.000Z`: JavaScript's `toISOString()` spelling.
pub fn iso_millis(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `2025-10-18T16:00:00Z`: whole seconds, UTC.
pub fn iso_seconds(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A response with a JSON body and a status.
fn json_response(status: axum::http::StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CancelDecision, LinkStatus};

    /// Each provider's cancel rules, as its seed states them.
    #[test]
    fn each_dialect_hands_the_core_its_providers_rules() {
        use LinkStatus::*;
        let unchanged = |policy: crate::domain::CancelPolicy| -> Vec<LinkStatus> {
            [Active, Processing, Paid, Expired, Cancelled]
                .into_iter()
                .filter(|s| policy.decide(*s) == CancelDecision::Unchanged)
                .collect()
        };
        let cancellable = |policy: crate::domain::CancelPolicy| -> Vec<LinkStatus> {
            [Active, Processing, Paid, Expired, Cancelled]
                .into_iter()
                .filter(|s| policy.decide(*s) == CancelDecision::Cancel)
                .collect()
        };
        assert_eq!(cancellable(gale::POLICY), [Active]);
        assert_eq!(unchanged(gale::POLICY), [], "Gale refuses a second cancel");
        assert_eq!(cancellable(zelta::POLICY), [Active, Expired]);
        assert_eq!(unchanged(zelta::POLICY), []);
        assert_eq!(cancellable(payments::POLICY), [Active, Expired]);
        assert_eq!(
            unchanged(payments::POLICY),
            [Cancelled],
            "a no-op for Payments"
        );
        assert_eq!(cancellable(connect::POLICY), [Active]);
        assert_eq!(unchanged(connect::POLICY), [Cancelled]);
        assert_eq!(cancellable(plexy::POLICY), [Active]);
        assert_eq!(unchanged(plexy::POLICY), []);
    }

    #[test]
    fn time_spellings() {
        let at: Timestamp = "2024-01-15T12:00:00.123456Z".parse().unwrap();
        assert_eq!(iso_millis(at), "2024-01-15T12:00:00.123Z");
        assert_eq!(iso_seconds(at), "2024-01-15T12:00:00Z");
        let gale: Timestamp = "2025-10-18T16:00:00.123456Z".parse().unwrap();
        assert_eq!(iso_seconds(gale), "2025-10-18T16:00:00Z");
        let whole: Timestamp = "2024-01-15T12:00:00Z".parse().unwrap();
        assert_eq!(iso_millis(whole), "2024-01-15T12:00:00.000Z");
    }
}

//! Authentication and rate limiting for the merchant API, as one middleware:
//! the caller is resolved once, limited on its key's budget, and handed to
//! handlers (and the idempotency layer) through request extensions.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::error::{ApiError, ErrorCode};
use super::extract::{KeyHeader, api_key_in};
use super::rate_limit::Verdict;
use crate::service::ServiceError;

/// The message of the "no key at all" 401, which dialects tell apart from
/// an invalid key (Zelta's `ERR_MISSING_API_KEY`).
pub const MISSING_KEY_MESSAGE: &str =
    "No API key provided. Send `Authorization: Bearer pl_test_...` or `X-API-Key: pl_test_...`.";

/// The client's address as the socket sees it (the accept loop puts it in
/// every request); unspecified if absent.
pub fn client_address(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip())
}

/// The authentication of one surface: the state, and where its callers
/// put their key (each provider's own header; a key in another header is
/// not looked at, as that provider would not).
#[derive(Clone)]
pub struct Authenticator {
    pub state: ApiState,
    pub keys: KeyHeader,
}

pub async fn authenticate(
    State(Authenticator { state, keys }): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Response {
    let address = client_address(request.extensions());
    let Some(secret) = api_key_in(request.headers(), keys) else {
        return failed_authentication(
            &state,
            address,
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                MISSING_KEY_MESSAGE,
            ),
        );
    };
    let caller = match state.service.authenticate(&secret).await {
        Ok(caller) => caller,
        Err(error @ ServiceError::Unauthorized(_)) => {
            return failed_authentication(&state, address, error.into());
        }
        Err(error) => return ApiError::from(error).into_response(),
    };
    let verdict = state.limits.check_key(&caller.key_id);
    if let Verdict::Limited { .. } = verdict {
        return rate_limited(verdict);
    }
    // The access line names the account (never the key).
    tracing::Span::current().record("account", caller.scope.account_id.as_str());
    request.extensions_mut().insert(caller);
    let mut response = next.run(request).await;
    verdict.write_headers(response.headers_mut());
    response
}

/// A bad or missing key spends the client address's own budget; past it,
/// 429 instead of 401.
fn failed_authentication(state: &ApiState, address: IpAddr, error: ApiError) -> Response {
    match state.limits.check_failed_auth(address) {
        Verdict::Allowed { .. } => error.into_response(),
        limited @ Verdict::Limited { .. } => rate_limited(limited),
    }
}

fn rate_limited(verdict: Verdict) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RateLimited,
        "Too many requests; retry after the number of seconds in `Retry-After`.",
    )
    .into_response();
    verdict.write_headers(response.headers_mut());
    response
}

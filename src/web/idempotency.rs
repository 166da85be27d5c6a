//! Idempotency keys: a retried POST/PATCH/DELETE with the same
//! `Idempotency-Key` (or `X-Idempotency-Key`) replays the first response
//! byte for byte instead of running again.
//!
//! The key is claimed in the database before the handler runs (so it works
//! across restarts and nodes), scoped to the caller's account and mode, and
//! bound to a fingerprint of method, path and body. Only requests that ran
//! are remembered: success and business outcomes (404, 409). Requests
//! refused before running (validation 400, 413, 415) and transient failures
//! (429, 5xx) release the key so a corrected retry runs anew.
//!
//! This runs inside the detached task of [`super::detach`], so a client
//! that hangs up never leaves a claim without its answer. What a crash can
//! still cut is covered by the store: the change a request makes marks its
//! key in the change's own transaction, and a retry that takes over the
//! abandoned claim recalls that change instead of making it again.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiState;
use super::error::{ApiError, ErrorCode};
use super::extract::MAX_BODY_BYTES;
use crate::domain::idempotency::{IdempotencyClaim, IdempotencyMark, StoredResponse};
use crate::service::{Caller, IdempotencyContext, under_idempotency_key};

pub const MAX_KEY_CHARS: usize = 256;
/// Set on a replayed response.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

fn key_from(request: &Request) -> Option<Result<String, ApiError>> {
    let value = request
        .headers()
        .get("idempotency-key")
        .or_else(|| request.headers().get("x-idempotency-key"))?;
    let valid =
        value.to_str().ok().map(str::to_owned).filter(|key| {
            (1..=MAX_KEY_CHARS).contains(&key.chars().count()) && !key.trim().is_empty()
        });
    Some(valid.ok_or_else(|| {
        ApiError::invalid(
            "Idempotency-Key",
            format!("`Idempotency-Key` must be 1 to {MAX_KEY_CHARS} printable characters."),
        )
    }))
}

fn remembered(status: StatusCode) -> bool {
    status.is_success() || status == StatusCode::NOT_FOUND || status == StatusCode::CONFLICT
}

pub async fn idempotency(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if !matches!(
        *request.method(),
        Method::POST | Method::PATCH | Method::DELETE
    ) {
        return next.run(request).await;
    }
    let key = match key_from(&request) {
        None => return next.run(request).await,
        Some(Err(error)) => return error.into_response(),
        Some(Ok(key)) => key,
    };
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidRequest,
            format!(
                "The request body is larger than {} KiB.",
                MAX_BODY_BYTES / 1024
            ),
        )
        .into_response();
    };
    let fingerprint = fingerprint(
        &parts.method,
        parts.uri.path_and_query().map_or("", |p| p.as_str()),
        &body,
    );

    match state.service.claim_idempotency_key(&caller, &key, &fingerprint).await {
        Err(error) => ApiError::from(error).into_response(),
        Ok(IdempotencyClaim::Existing { fingerprint: first, .. }) if first != fingerprint => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::IdempotencyKeyReused,
            "This Idempotency-Key was used with a different request; use a new key for a new request.",
        )
        .with_param("Idempotency-Key")
        .into_response(),
        Ok(IdempotencyClaim::Existing { response: None, .. }) => ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::IdempotencyKeyInUse,
            "A request with this Idempotency-Key is still running; retry shortly.",
        )
        .into_response(),
        Ok(IdempotencyClaim::Existing { response: Some(stored), .. }) => replay(stored),
        Ok(IdempotencyClaim::Claimed { committed_event }) => {
            let context = IdempotencyContext {
                mark: IdempotencyMark {
                    scope: caller.scope.clone(),
                    key: key.clone(),
                },
                recall: committed_event,
            };
            let request = Request::from_parts(parts, Body::from(body));
            let response = under_idempotency_key(context, next.run(request)).await;
            let (mut head, body) = response.into_parts();
            let body = match axum::body::to_bytes(body, usize::MAX).await {
                Ok(body) => body,
                Err(_) => Bytes::new(),
            };
            let outcome = if remembered(head.status) {
                let stored = StoredResponse {
                    status: head.status.as_u16(),
                    headers: head
                        .headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| vec![(header::CONTENT_TYPE.as_str().to_owned(), v.to_owned())])
                        .unwrap_or_default(),
                    body: body.to_vec(),
                };
                state.service.complete_idempotency_key(&caller, &key, stored).await
            } else {
                state.service.release_idempotency_key(&caller, &key).await
            };
            if let Err(error) = outcome {
                // The request itself happened; a retry meets the lease, then runs.
                tracing::error!(%error, "could not record an idempotency key's outcome");
            }
            head.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(head, Body::from(body))
        }
    }
}

fn fingerprint(method: &Method, path_and_query: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(method.as_str().as_bytes());
    hash.update(b"\n");
    hash.update(path_and_query.as_bytes());
    hash.update(b"\n");
    hash.update(body);
    hex::encode(hash.finalize())
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, stored.body).into_response();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            name.parse::<header::HeaderName>(),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
        .headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

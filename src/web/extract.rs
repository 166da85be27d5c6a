//! Request extractors whose every rejection is the API's own error envelope:
//! JSON bodies (content type, size, syntax, unknown and server-owned fields,
//! field types with the offending `param`) and the API key.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorCode};
use crate::service::Caller;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Fields paylink sets itself: sending one is refused (as every unknown
/// field is) with a message saying why.
const SERVER_OWNED_FIELDS: &[&str] = &[
    "id",
    "object",
    "livemode",
    "url",
    "slug",
    "status",
    "created_at",
    "updated_at",
    "cancelled_at",
    "cancellation_reason",
    "paid_at",
    "payment_id",
];

/// A JSON body deserialized into `T` (whose serde attributes deny unknown
/// fields). An empty body reads as `{}`, so `POST .../cancel` needs none.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        ErrorCode::InvalidRequest,
                        format!(
                            "The request body is larger than {} KiB.",
                            MAX_BODY_BYTES / 1024
                        ),
                    )
                } else {
                    ApiError::bad_request(format!(
                        "The request body could not be read: {rejection}."
                    ))
                }
            })?;
        // Only a body with no bytes at all is an empty object: whitespace
        // alone is not a JSON document, and is refused as one.
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            let is_json = content_type.as_deref().is_some_and(|value| {
                let essence = value.split(';').next().unwrap_or("").trim();
                essence.eq_ignore_ascii_case("application/json")
            });
            if !is_json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ErrorCode::InvalidRequest,
                    "Send the request body as JSON with `Content-Type: application/json`.",
                ));
            }
            bytes
        };
        parse_json(&bytes).map(JsonBody)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = super::strict_json::parse(bytes).map_err(|error| match error {
        Ok(refusal) => ApiError::invalid(refusal.param, refusal.message),
        Err(error) => {
            ApiError::bad_request(format!("The request body is not valid JSON ({error})."))
        }
    })?;
    let serde_json::Value::Object(_) = &value else {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object.",
        ));
    };
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = error.into_inner().to_string();
        // serde's path already ends at an unknown field; a missing field is
        // reported at its parent, so its name is appended.
        if inner.starts_with("unknown field `") {
            let field = path.rsplit('.').next().unwrap_or(&path);
            let message = if SERVER_OWNED_FIELDS.contains(&field) {
                format!("`{path}` is set by paylink and cannot be sent in this request.")
            } else {
                format!("Unknown field `{path}`.")
            };
            return ApiError::invalid(path.clone(), message);
        }
        if let Some(field) = quoted_after(&inner, "missing field `") {
            let param = if path.is_empty() { field } else { format!("{path}.{field}") };
            return ApiError::invalid(param.clone(), format!("`{param}` is required."));
        }
        if inner.contains("invalid type: floating point") && inner.contains("expected i64") {
            return ApiError::invalid(
                path.clone(),
                format!("`{path}` must be an integer amount in minor units (4995 for 49.95), never a decimal."),
            );
        }
        ApiError::invalid(path.clone(), format!("Invalid value for `{path}`: {inner}."))
    })
}

fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest.split('`').next()?.to_owned())
}

/// The authenticated merchant, put in the request by [`super::auth::authenticate`]
/// (every merchant route is mounted through [`super::merchant_api`]).
pub struct Authenticated(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Caller>() {
            Some(caller) => Ok(Authenticated(caller.clone())),
            None => {
                tracing::error!("a merchant route is mounted without authentication");
                Err(ApiError::internal())
            }
        }
    }
}

/// Where a request's API key is read from: each API surface has its form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHeader {
    /// Native: `Authorization: Bearer <key>` or `X-API-Key: <key>`.
    BearerOrApiKey,
    /// `Authorization: Bearer <key>` only.
    Bearer,
    /// `X-API-Key: <key>` only.
    ApiKey,
    /// `Authorization: <key>`, the raw key (a `Bearer ` prefix is tolerated).
    RawAuthorization,
}

/// The API key in the header form `form` accepts.
pub fn api_key_in(headers: &axum::http::HeaderMap, form: KeyHeader) -> Option<String> {
    let authorization = || {
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())?
            .trim();
        let bearer = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let token = match form {
            KeyHeader::Bearer => bearer?,
            _ => bearer.unwrap_or(value),
        };
        Some(token.to_owned()).filter(|t| !t.is_empty())
    };
    let api_key = || {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    match form {
        KeyHeader::BearerOrApiKey => authorization().or_else(api_key),
        KeyHeader::Bearer | KeyHeader::RawAuthorization => authorization(),
        KeyHeader::ApiKey => api_key(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    type Object = serde_json::Map<String, serde_json::Value>;

    async fn read(body: &'static str) -> Result<Object, ApiError> {
        let request = Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        JsonBody::<Object>::from_request(request, &())
            .await
            .map(|JsonBody(object)| object)
    }

    #[tokio::test]
    async fn only_an_empty_body_reads_as_an_empty_object() {
        assert_eq!(read("").await.unwrap(), Object::new());
        assert_eq!(read("{\"a\": 1}").await.unwrap().len(), 1);
        // Whitespace is not a JSON document (schemathesis sent a lone tab
        // with `Content-Type: application/json`, and it was accepted).
        for body in ["\t", " ", "\r\n"] {
            let error = read(body).await.unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{body:?}");
            assert!(
                error.message.contains("not valid JSON"),
                "{}",
                error.message
            );
        }
    }
}

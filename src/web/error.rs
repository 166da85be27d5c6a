//! The one error envelope every failing response uses:
//! `{"error": {"type", "code", "message", "param", "request_id"}}`.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::request_id;
use crate::service::ServiceError;

/// The documented set of error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    AccountSuspended,
    NotFound,
    InvalidState,
    IdempotencyKeyReused,
    IdempotencyKeyInUse,
    RateLimited,
    /// The database is unreachable or the request ran out of time; retry later.
    Unavailable,
    Internal,
}

impl ErrorCode {
    fn error_type(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::NotFound | ErrorCode::InvalidState => {
                "invalid_request_error"
            }
            ErrorCode::Unauthorized => "authentication_error",
            ErrorCode::AccountSuspended => "permission_error",
            ErrorCode::IdempotencyKeyReused | ErrorCode::IdempotencyKeyInUse => "idempotency_error",
            ErrorCode::RateLimited => "rate_limit_error",
            ErrorCode::Unavailable | ErrorCode::Internal => "api_error",
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Broad class: `invalid_request_error`, `authentication_error`,
    /// `permission_error`, `idempotency_error`, `rate_limit_error`, `api_error`.
    #[serde(rename = "type")]
    pub error_type: String,
    pub code: ErrorCode,
    /// A sentence for a person.
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// Same as the `X-Request-Id` response header.
    pub request_id: String,
}

/// A native error. Its response carries a copy of it as an extension, so
/// a dialect can re-render errors raised below it (authentication, rate
/// limits, idempotency, body parsing, routing) in its own envelope.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            param: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message).with_param(param)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    pub fn no_such_link(id: &str) -> Self {
        Self::not_found(format!("No payment link with id `{id}`.")).with_param("id")
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "Something went wrong on our side; the request may be retried.",
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            message,
        )
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound => ApiError::not_found("No such payment link.").with_param("id"),
            ServiceError::Invalid(field) => ApiError::invalid(field.param, field.message),
            ServiceError::InvalidState { message, .. } => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::InvalidState, message)
            }
            ServiceError::Unauthorized(message) => {
                ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
            }
            ServiceError::AccountSuspended => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::AccountSuspended,
                "This account is suspended; its API keys cannot be used.",
            ),
            ServiceError::Contention => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::InvalidState,
                "The payment link is being changed by other requests; retry shortly.",
            ),
            ServiceError::PaymentsUnavailable => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::InvalidState,
                "No processor takes this link's payments; an operator connects one with `paylink accounts set-processor`.",
            ),
            ServiceError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                ApiError::unavailable("The database is unavailable; retry shortly.")
            }
            ServiceError::Internal(detail) => {
                tracing::error!(%detail, "database error");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let original = self.clone();
        let body = ErrorBody {
            error: ErrorDetail {
                error_type: self.code.error_type().to_owned(),
                code: self.code,
                message: self.message,
                param: self.param,
                request_id: request_id::current(),
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(original);
        response
    }
}

/// Re-renders a native error raised inside a surface (by authentication,
/// rate limits, idempotency, body parsing or routing) in that surface's
/// envelope, keeping the response's headers (`Retry-After`, `RateLimit-Policy`, `RateLimit`,
/// `WWW-Authenticate`).
pub async fn render_errors(
    State(render): State<fn(&ApiError) -> Response>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let Some(error) = response.extensions().get::<ApiError>().cloned() else {
        return response;
    };
    let (head, _) = response.into_parts();
    let mut translated = render(&error);
    for (name, value) in &head.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            translated.headers_mut().insert(name, value.clone());
        }
    }
    translated
}

/// Every surface's answer for a path it has no route for.
pub async fn unknown_route() -> ApiError {
    ApiError::not_found("There is no such route; see /openapi.json for the API.")
}

/// Every surface's answer for a method its route does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidRequest,
        "This route does not accept that HTTP method; see /openapi.json.",
    )
}

/// The answers every authenticated operation may give, documented once
/// (each operation's `responses` lists this beside its own).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "documents responses; never constructed")]
pub enum AuthErrors {
    /// Missing or invalid API key
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Account suspended
    #[response(status = 403)]
    Suspended(ErrorBody),
    /// Too many requests; retry after `Retry-After` seconds
    #[response(status = 429)]
    RateLimited(ErrorBody),
    /// Database unavailable; retry shortly
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The answers of an operation that reads a JSON body.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "documents responses; never constructed")]
pub enum BodyErrors {
    /// Body over 64 KiB
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Body is not JSON
    #[response(status = 415)]
    NotJson(ErrorBody),
}

/// What a write may answer under an `Idempotency-Key` (an operation's own
/// 409, listed after this, names both of its reasons).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "documents responses; never constructed")]
pub enum IdempotencyErrors {
    /// A malformed Idempotency-Key
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// The same Idempotency-Key is still running
    #[response(status = 409)]
    InUse(ErrorBody),
    /// Idempotency-Key reused with another request
    #[response(status = 422)]
    Reused(ErrorBody),
}

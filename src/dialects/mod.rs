//! The five providers' wire formats, each under its own base URL, over the
//! same service: a client written for one of them works against paylink by
//! changing its base URL (and using a paylink key in that provider's header).
//!
//! A dialect is translation only: paths, field names and casing, status
//! words, envelopes, error codes. Each is one file that implements
//! [`Dialect`] (its tables) and holds its handlers; [`mount`] gives its
//! routes the merchant API's middleware in its own key header and renders
//! every error, down to an unknown route, in its envelope. Adding a sixth
//! is one file here, its `mod` line, and its entry in [`surfaces`].

/// `AuthErrors` and `BodyErrors` for a dialect's error body: the answers
/// every authenticated operation (and every operation with a JSON body)
/// may give, documented once per dialect.
macro_rules! dialect_responses {
    ($body:ty) => {
        /// What every authenticated operation may answer.
        #[derive(utoipa::IntoResponses)]
        #[allow(dead_code, reason = "documents responses; never constructed")]
        pub enum AuthErrors {
            /// Invalid or missing API key
            #[response(status = 401)]
            Unauthorized($body),
            /// Account suspended
            #[response(status = 403)]
            Suspended($body),
            /// Too many requests; retry after `Retry-After` seconds
            #[response(status = 429)]
            RateLimited($body),
            /// Database unavailable; retry shortly
            #[response(status = 503)]
            Unavailable($body),
        }

        /// What an operation with a JSON body may also answer.
        #[derive(utoipa::IntoResponses)]
        #[allow(dead_code, reason = "documents responses; never constructed")]
        pub enum BodyErrors {
            /// Body over 64 KiB
            #[response(status = 413)]
            TooLarge($body),
            /// Body is not JSON
            #[response(status = 415)]
            NotJson($body),
        }
    };
}

pub mod connect;
pub mod gale;
pub mod payments;
pub mod plexy;
pub mod zelta;

use std::marker::PhantomData;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use utoipa_axum::router::OpenApiRouter;

use crate::domain::{CancelPolicy, Link, LinkStatus, ids};
use crate::service::{Caller, ListPage, ServiceError, ServiceResult};
use crate::web::error::{ApiError, ErrorCode};
use crate::web::extract::KeyHeader;
use crate::web::list_query::{self, ListSyntax};
use crate::web::{ApiState, merchant_api};

/// What a provider's format asks of paylink: its tables, then its routes.
///
/// - `PREFIX`: where its routes live (`/compat/{name}`);
/// - `KEY_HEADER`: the header its clients send their key in (a key in
///   another header is not looked at, as that provider would not);
/// - `POLICY`: its cancel rules, handed to the core;
/// - [`Dialect::status_word`], [`Dialect::code`]: its words for each
///   status and each native error code;
/// - [`Dialect::envelope`]: its error body;
/// - [`Dialect::not_found`], [`Dialect::refusal`]: its answers for a link
///   that is not there and for a status that refuses a change;
/// - [`Dialect::translate`]: a native error in its terms (by default its
///   code with the native status, message and param);
/// - [`Dialect::in_progress`]: its answer to a cancel that found a payment
///   in flight and waited for it in vain.
///
/// A payment in progress is handled one way on every surface: the cancel
/// waits (up to two seconds) for the attempt to resolve, then decides from
/// where it landed; paid is refused in the provider's words for paid, a
/// failed attempt leaves the link payable and the cancel goes through.
/// Only an attempt still unresolved after the wait gets
/// [`Dialect::in_progress`], a retryable refusal that names no status. Why
/// wait rather than show a status: Gale, Zelta and Connect have no word for
/// a payment in flight, so their clients see it as payable; a refusal
/// naming "active" contradicts what they just read, and one naming
/// "processing" a word they do not know. The attempt lasts as long as one
/// processor round trip, so the wait nearly always ends in an answer the
/// client can act on.
/// - [`Dialect::routes`]: its handlers, paths relative to `PREFIX`.
pub trait Dialect: Sized + Send + Sync + 'static {
    const PREFIX: &'static str;
    const KEY_HEADER: KeyHeader;
    const POLICY: CancelPolicy;
    /// Where a link's id is in its answers, as JSON pointers: a created
    /// link's, and the first listed link's. The document's links use them
    /// to lead a client (or a fuzzer) from a create or a list to the
    /// operations on that link.
    const ID_IN_ANSWERS: IdPointers;

    fn status_word(status: LinkStatus) -> &'static str;
    fn code(code: ErrorCode) -> &'static str;
    fn envelope(error: &DialectError<Self>) -> serde_json::Value;
    fn not_found() -> DialectError<Self>;
    fn refusal(status: LinkStatus, message: String) -> DialectError<Self>;
    fn routes() -> OpenApiRouter<ApiState>;

    fn translate(error: ApiError) -> DialectError<Self> {
        DialectError::new(error.status, Self::code(error.code), error.message)
            .with_param(error.param)
    }

    /// A cancel that waited for a payment in flight and still found it in
    /// flight: the provider's own status and code for a link that cannot
    /// be cancelled (so its clients' error handling holds), with the
    /// native message, which names no status (three of the five providers
    /// have no word for "processing" and show the link as payable), only
    /// that a payment is in progress and the cancel can be retried in a
    /// few seconds.
    fn in_progress(message: String) -> DialectError<Self> {
        let refusal = Self::refusal(LinkStatus::Processing, String::new());
        DialectError::new(refusal.status, refusal.code, message)
    }
}

/// An error in dialect `D`'s envelope.
pub struct DialectError<D> {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// A second sentence, for envelopes that carry one.
    pub details: Option<String>,
    dialect: PhantomData<D>,
}

impl<D: Dialect> DialectError<D> {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            param: None,
            details: None,
            dialect: PhantomData,
        }
    }

    pub fn with_param(mut self, param: Option<String>) -> Self {
        self.param = param;
        self
    }

    pub fn with_details(mut self, details: Option<String>) -> Self {
        self.details = details;
        self
    }

    /// A bad query parameter or field, as the native API would name it.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        D::translate(ApiError::invalid(param, message))
    }
}

impl<D: Dialect> IntoResponse for DialectError<D> {
    fn into_response(self) -> Response {
        (self.status, axum::Json(D::envelope(&self))).into_response()
    }
}

impl<D: Dialect> From<ApiError> for DialectError<D> {
    fn from(error: ApiError) -> Self {
        D::translate(error)
    }
}

impl<D: Dialect> From<ServiceError> for DialectError<D> {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound => D::not_found(),
            // Only after the cancel waited for the attempt to resolve.
            ServiceError::InvalidState {
                status: LinkStatus::Processing,
                message,
            } => D::in_progress(message),
            ServiceError::InvalidState { status, message } => D::refusal(status, message),
            other => D::translate(ApiError::from(other)),
        }
    }
}

/// Where an object's id is in a create's and in a list's answer (JSON
/// pointers into the body).
#[derive(Debug, Clone, Copy)]
pub struct IdPointers {
    pub created: &'static str,
    pub listed: &'static str,
}

/// A mounted dialect: its routes (under its prefix) and its OpenAPI
/// paths (relative to the prefix, as its provider's clients see them).
pub struct Surface {
    pub prefix: &'static str,
    pub keys: KeyHeader,
    pub ids: IdPointers,
    pub routes: Router<ApiState>,
    pub document: utoipa::openapi::OpenApi,
}

/// Dialect `D`'s routes under its prefix, with the merchant API's
/// middleware in its key header and every error in its envelope.
pub fn mount<D: Dialect>(state: &ApiState) -> Surface {
    let (routes, document) = D::routes().split_for_parts();
    let routes = routes.fallback(crate::web::error::unknown_route);
    let render: fn(&ApiError) -> Response = |error| D::translate(error.clone()).into_response();
    let routes = merchant_api(routes, state, D::KEY_HEADER, Some(render));
    Surface {
        prefix: D::PREFIX,
        keys: D::KEY_HEADER,
        ids: D::ID_IN_ANSWERS,
        routes: Router::new().nest(D::PREFIX, routes),
        document,
    }
}

/// Every dialect, mounted.
pub fn surfaces(state: &ApiState) -> Vec<Surface> {
    vec![
        mount::<gale::Gale>(state),
        mount::<zelta::Zelta>(state),
        mount::<payments::Payments>(state),
        mount::<connect::Connect>(state),
        mount::<plexy::Plexy>(state),
    ]
}

/// A page of the caller's links, the query read as `syntax` spells it:
/// every dialect's list, over the one parser and the one service call.
pub async fn list_page<D: Dialect>(
    state: &ApiState,
    caller: &Caller,
    raw_query: Option<&str>,
    syntax: &ListSyntax,
) -> Result<ListPage, DialectError<D>> {
    let query = list_query::parse(raw_query, syntax)?;
    Ok(state
        .service
        .list_links(
            caller,
            &query.filter,
            query.limit,
            query.starting_after.as_deref(),
        )
        .await?)
}

/// A link of the caller's, named by its id (`plink_...`) or by the last
/// segment of its hosted URL (its slug), as Zelta's `hashUrl` is.
pub async fn find_link(state: &ApiState, caller: &Caller, reference: &str) -> ServiceResult<Link> {
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

/// A core error named in a dialect's own field names: a field error's
/// `param` and the field names its message quotes (`` `expires_at` ``
/// becomes `` `expiresAt` ``), so a client reads the name it sent.
pub fn with_field_names<D: Dialect>(
    error: ServiceError,
    names: &[(&str, &str)],
) -> DialectError<D> {
    let ServiceError::Invalid(field) = error else {
        return error.into();
    };
    let ours = |native: &str| {
        names
            .iter()
            .find(|(from, _)| *from == native)
            .map_or(native, |(_, to)| *to)
            .to_owned()
    };
    let mut message = field.message;
    for (native, theirs) in names {
        message = message.replace(&format!("`{native}`"), &format!("`{theirs}`"));
    }
    D::translate(ApiError::invalid(ours(&field.param), message))
}

/// `2024-01-15T12:00:00.000Z`: JavaScript's `toISOString()` spelling.
pub fn iso_millis(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `2025-10-18T16:00:00Z`: whole seconds, UTC.
pub fn iso_seconds(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
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
        assert_eq!(cancellable(gale::Gale::POLICY), [Active]);
        assert_eq!(
            unchanged(gale::Gale::POLICY),
            [],
            "Gale refuses a second cancel"
        );
        assert_eq!(cancellable(zelta::Zelta::POLICY), [Active, Expired]);
        assert_eq!(unchanged(zelta::Zelta::POLICY), []);
        assert_eq!(cancellable(payments::Payments::POLICY), [Active, Expired]);
        assert_eq!(
            unchanged(payments::Payments::POLICY),
            [Cancelled],
            "a no-op for Payments"
        );
        assert_eq!(cancellable(connect::Connect::POLICY), [Active]);
        assert_eq!(unchanged(connect::Connect::POLICY), [Cancelled]);
        assert_eq!(cancellable(plexy::Plexy::POLICY), [Active]);
        assert_eq!(unchanged(plexy::Plexy::POLICY), []);
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

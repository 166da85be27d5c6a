//! The Stripe page's parts: its script, its Content-Security-Policy, the
//! PaymentMethod id it posts, and the return from 3-D Secure.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::domain::Link;

use super::*;

pub(super) const STRIPE_GLUE: &str = include_str!("stripe-checkout.js");

pub(super) async fn stripe_glue() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STRIPE_GLUE,
    )
}

/// A Stripe PaymentMethod id as Stripe.js makes them: `pm_` + a short
/// alphanumeric tail.
pub(super) fn is_payment_method_id(text: &str) -> bool {
    text.strip_prefix("pm_").is_some_and(|tail| {
        (1..=100).contains(&tail.len())
            && tail.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// The origin (scheme, host, port) of a URL, for a CSP source.
pub(super) fn origin_of(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
}

/// A Stripe page's CSP: the page's own script plus exactly Stripe's
/// origins: Stripe.js (script and its frames), 3-D Secure's frames
/// (`hooks.stripe.com`), and Stripe's API (Elements calls it).
pub(super) fn with_stripe_csp(
    mut response: Response,
    state: &CheckoutState,
    link: &Link,
) -> Response {
    let settings = state.service.processor_settings();
    let js = origin_of(&settings.stripe_js_url).unwrap_or_default();
    let api = origin_of(&settings.stripe_api_base).unwrap_or_default();
    let form_action = link
        .success_url
        .as_deref()
        .and_then(origin_of)
        .map_or_else(|| "'self'".to_owned(), |o| format!("'self' {o}"));
    let csp = format!(
        "default-src 'none'; script-src 'self' {js}; frame-src {js} https://hooks.stripe.com; \
         connect-src {api}; style-src 'self'; img-src 'self' {js}; \
         form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct CompleteRequest {
    csrf_token: String,
}

/// The customer is back from 3-D Secure: paylink asks the processor what
/// became of the payment (the webhook or the reconciler may also settle
/// it; whichever comes first wins).
pub(super) async fn complete(
    State(state): State<CheckoutState>,
    Path(slug): Path<String>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<CompleteRequest>, FormRejection>,
) -> Response {
    let address = client_address(connect.as_ref().map(|c| &c.0));
    let (link, account, checkout) = match load(&state, &slug, address).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let request = form.map(|Form(request)| request).unwrap_or_default();
    let answer = match Answer::for_post(
        &state,
        (&link, &account, &checkout),
        &headers,
        &request.csrf_token,
    ) {
        Ok(answer) => answer,
        Err(refused) => return *refused,
    };
    let result = state.service.complete_pending_payment(&slug).await;
    answer.result(&slug, result).await
}

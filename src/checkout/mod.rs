//! The hosted checkout page, `GET/POST /pay/{slug}`: server-rendered, with
//! a strict Content-Security-Policy, no framing, no referrer, a CSRF token
//! the server issued for the link (see [`csrf`]), its own rate limits (see
//! [`limits`]), and no payment for a suspended account. A submitted payment
//! runs in the request's detached task (see `web::detach`), so closing the
//! tab cannot leave it half done.
//!
//! Which form a link gets depends on its account's processor: the test
//! processor's page is paylink's own card form with no JavaScript at all; a
//! Stripe page loads Stripe.js and collects the card in Stripe's Elements,
//! so only a PaymentMethod id is posted (card data never reaches paylink),
//! and `POST /pay/{slug}/complete` is where it returns from 3-D Secure.

mod answer;
pub mod csrf;
pub mod limits;
mod pages;
mod stripe;

use answer::Answer;
use stripe::{complete, is_payment_method_id, stripe_glue, with_stripe_csp};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::Markup;
use serde::Deserialize;
use tokio_util::task::TaskTracker;

use crate::domain::Account;
use crate::domain::card::Card;
use crate::domain::{Link, LinkStatus};
use crate::payments::PaymentSource;
use crate::service::{CheckoutProcessor, Service, ServiceError};

const CSRF_COOKIE: &str = "pl_csrf";
const STYLESHEET: &str = include_str!("checkout.css");

/// What the checkout's handlers share.
#[derive(Clone)]
pub struct CheckoutState {
    pub service: Arc<Service>,
    /// Base of hosted page URLs, without a trailing slash.
    pub public_url: Arc<str>,
    pub csrf: csrf::CsrfKey,
    pub limits: Arc<limits::CheckoutLimits>,
    /// Payments run detached (see `web::detach`); shutdown waits for them.
    pub tasks: TaskTracker,
}

pub fn router(state: CheckoutState) -> Router {
    Router::new()
        .route("/pay/assets/checkout.css", get(stylesheet))
        .route("/pay/assets/stripe-checkout.js", get(stripe_glue))
        .route("/pay/{slug}", get(show).post(pay))
        .route("/pay/{slug}/complete", post(complete))
        // A payment runs in a task no disconnect can cut.
        .route_layer(axum::middleware::from_fn_with_state(
            state.tasks.clone(),
            crate::web::detach::run_to_completion,
        ))
        .with_state(state)
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PayRequest {
    card_number: String,
    expiry: String,
    cvc: String,
    csrf_token: String,
    /// A Stripe PaymentMethod id (Stripe links): the only card data posted.
    payment_method: String,
}

/// A rendered page with the headers every checkout page carries.
fn page(
    status: StatusCode,
    markup: Markup,
    link: Option<&Link>,
    csrf: Option<&str>,
    secure_cookie: bool,
) -> Response {
    let mut response = (status, markup).into_response();
    let headers = response.headers_mut();
    // Chrome applies form-action to the redirect after the form posts, so the
    // merchant's success URL must be allowed there.
    let form_action = link
        .and_then(|l| l.success_url.as_deref())
        .and_then(|u| url::Url::parse(u).ok())
        .map_or_else(
            || "'self'".to_owned(),
            |u| format!("'self' {}", u.origin().ascii_serialization()),
        );
    // Images over https: a merchant's logo (its branding) may be hosted
    // anywhere; an image runs nothing, and `no-referrer` keeps the link's
    // address from its host.
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self' https:; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let (Some(token), Some(link)) = (csrf, link) {
        let secure = if secure_cookie { "; Secure" } else { "" };
        let cookie = format!(
            "{CSRF_COOKIE}={token}; Path=/pay/{}; HttpOnly; SameSite=Strict{secure}",
            link.slug
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.insert(header::SET_COOKIE, value);
        }
    }
    response
}

/// The CSRF token in the request's cookie, only if this server issued it
/// for this link.
fn csrf_cookie(state: &CheckoutState, slug: &str, headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == CSRF_COOKIE)
        .map(|(_, value)| value)
        .find(|token| state.csrf.verify(slug, token))
        .map(str::to_owned)
}

fn client_address(connect: Option<&ConnectInfo<SocketAddr>>) -> IpAddr {
    connect.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip())
}

struct Context {
    secure_cookie: bool,
}

impl Context {
    fn new(state: &CheckoutState) -> Self {
        Self {
            secure_cookie: state.public_url.starts_with("https://"),
        }
    }
}

async fn load(
    state: &CheckoutState,
    slug: &str,
    address: IpAddr,
) -> Result<(Link, Account, CheckoutProcessor), Response> {
    let ctx = Context::new(state);
    let found = async {
        let link = state.service.get_link_by_slug(slug).await?;
        let account = state.service.account(&link.account_id).await?;
        let checkout = state.service.checkout_processor(&link).await?;
        Ok::<_, ServiceError>((link, account, checkout))
    }
    .await;
    match found {
        Ok(found) => Ok(found),
        Err(ServiceError::NotFound) if !state.limits.unknown_slug_budget_left(address) => {
            Err(page(
                StatusCode::TOO_MANY_REQUESTS,
                pages::too_many_requests(),
                None,
                None,
                ctx.secure_cookie,
            ))
        }
        Err(ServiceError::NotFound) => Err(page(
            StatusCode::NOT_FOUND,
            pages::not_found(),
            None,
            None,
            ctx.secure_cookie,
        )),
        Err(error) => {
            tracing::warn!(%error, "checkout could not load a link");
            Err(page(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::not_found(),
                None,
                None,
                ctx.secure_cookie,
            ))
        }
    }
}

/// The page for a link that cannot take a payment now, or `None` if it can.
fn closed_page(
    link: &Link,
    account: &Account,
    checkout: &CheckoutProcessor,
) -> Option<(StatusCode, Markup)> {
    let merchant = &pages::Merchant { account };
    let markup = match link.status {
        LinkStatus::Active if account.suspended => pages::closed(
            link,
            merchant,
            "Payments are not available for this link.",
            Some("The merchant cannot take payments at the moment. You have not been charged."),
        ),
        LinkStatus::Active if matches!(checkout, CheckoutProcessor::Unavailable) => pages::closed(
            link,
            merchant,
            "Payments are not available for this link yet.",
            Some("The merchant has not connected a payment processor for these payments."),
        ),
        LinkStatus::Active => return None,
        LinkStatus::Processing => pages::closed(
            link,
            merchant,
            "A payment for this link is being processed.",
            Some("Refresh this page in a moment to see the result."),
        ),
        LinkStatus::Paid => pages::receipt(link, merchant),
        LinkStatus::Cancelled => pages::closed(
            link,
            merchant,
            "This payment link was cancelled",
            // The merchant's message for the customer; the cancel's reason
            // is internal and never shown here.
            link.customer_message.as_deref(),
        ),
        LinkStatus::Expired => pages::closed(
            link,
            merchant,
            "This payment link has expired",
            Some("Ask the merchant for a new link."),
        ),
    };
    Some((StatusCode::OK, markup))
}

async fn show(
    State(state): State<CheckoutState>,
    Path(slug): Path<String>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let ctx = Context::new(&state);
    let address = client_address(connect.as_ref().map(|c| &c.0));
    let (link, account, checkout) = match load(&state, &slug, address).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let merchant = &pages::Merchant { account: &account };
    if let CheckoutProcessor::Stripe {
        publishable_key,
        js_url,
    } = &checkout
        && let Ok(Some(client_secret)) = state.service.pending_action(&link).await
    {
        // Reloaded during 3-D Secure: the challenge again.
        let token = csrf_cookie(&state, &slug, &headers).unwrap_or_else(|| state.csrf.issue(&slug));
        let stripe = pages::StripePage {
            publishable_key,
            js_url,
        };
        let response = page(
            StatusCode::OK,
            pages::stripe_action(&link, merchant, &token, &client_secret, &stripe),
            Some(&link),
            Some(&token),
            ctx.secure_cookie,
        );
        return with_stripe_csp(response, &state, &link);
    }
    if let Some((status, markup)) = closed_page(&link, &account, &checkout) {
        return page(status, markup, Some(&link), None, ctx.secure_cookie);
    }
    let token = csrf_cookie(&state, &slug, &headers).unwrap_or_else(|| state.csrf.issue(&slug));
    let form = pages::PayForm {
        csrf_token: &token,
        errors: &[],
        notice: None,
        expiry_value: "",
        card_number_value: "",
    };
    if let CheckoutProcessor::Stripe {
        publishable_key,
        js_url,
    } = &checkout
    {
        let stripe = pages::StripePage {
            publishable_key,
            js_url,
        };
        let response = page(
            StatusCode::OK,
            pages::stripe_payable(&link, merchant, &form, &stripe),
            Some(&link),
            Some(&token),
            ctx.secure_cookie,
        );
        return with_stripe_csp(response, &state, &link);
    }
    page(
        StatusCode::OK,
        pages::payable(&link, merchant, &form),
        Some(&link),
        Some(&token),
        ctx.secure_cookie,
    )
}

async fn pay(
    State(state): State<CheckoutState>,
    Path(slug): Path<String>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<PayRequest>, FormRejection>,
) -> Response {
    let ctx = Context::new(&state);
    let address = client_address(connect.as_ref().map(|c| &c.0));
    let (link, account, checkout) = match load(&state, &slug, address).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    // A link that cannot be paid answers 409 (403 for live mode or a
    // suspended account) and changes nothing.
    if let Some((_, markup)) = closed_page(&link, &account, &checkout) {
        let status = if link.status == LinkStatus::Active {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::CONFLICT
        };
        return page(status, markup, Some(&link), None, ctx.secure_cookie);
    }
    if !state.limits.allow_payment(&slug, address) {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            pages::too_many_requests(),
            Some(&link),
            None,
            ctx.secure_cookie,
        );
    }
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
    let result = match &checkout {
        CheckoutProcessor::Stripe { .. } => {
            if !is_payment_method_id(&request.payment_method) {
                return answer.form(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &[],
                    Some("Your card could not be read. Please enter it again."),
                    ("", ""),
                );
            }
            state
                .service
                .pay_link_with(
                    &slug,
                    PaymentSource::PaymentMethod(&request.payment_method),
                    None,
                    None,
                )
                .await
        }
        CheckoutProcessor::TestCard | CheckoutProcessor::Unavailable => {
            let card = match Card::parse(
                &request.card_number,
                &request.expiry,
                &request.cvc,
                state.service.now(),
            ) {
                Ok(card) => card,
                Err(errors) => {
                    // A number that was right is kept (test cards only:
                    // this processor takes test-mode payments alone).
                    let number_ok = errors.iter().all(|e| e.param != "card_number");
                    let number = if number_ok && !link.livemode {
                        request.card_number.as_str()
                    } else {
                        ""
                    };
                    return answer.form(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &errors,
                        None,
                        (number, &request.expiry),
                    );
                }
            };
            tracing::info!(link_id = %link.id, brand = card.brand(), last4 = card.last4(), "card payment submitted");
            state.service.pay_link(&slug, &card).await
        }
    };
    answer.result(&slug, result).await
}

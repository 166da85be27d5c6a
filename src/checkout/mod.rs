//! The hosted checkout page, `GET/POST /pay/{slug}`: server-rendered, no
//! JavaScript, with a strict Content-Security-Policy, no framing, no
//! referrer, a CSRF token the server issued for the link (see [`csrf`]),
//! its own rate limits (see [`limits`]), and no payment for a suspended
//! account. A submitted payment runs in the request's detached task (see
//! `http::detach`), so closing the tab cannot leave it half done.

pub mod csrf;
pub mod limits;
mod pages;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::Markup;
use serde::Deserialize;

use crate::domain::card::Card;
use crate::domain::{FieldError, Link, LinkStatus};
use crate::http::AppState;
use crate::service::{CheckoutProcessor, PaymentResult, ServiceError};
use crate::store::Account;

const CSRF_COOKIE: &str = "pl_csrf";
const STYLESHEET: &str = include_str!("checkout.css");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/pay/assets/checkout.css", get(stylesheet))
        .route("/pay/{slug}", get(show).post(pay))
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
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; \
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
fn csrf_cookie(state: &AppState, slug: &str, headers: &HeaderMap) -> Option<String> {
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
    fn new(state: &AppState) -> Self {
        Self {
            secure_cookie: state.public_url.starts_with("https://"),
        }
    }
}

async fn load(
    state: &AppState,
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
        Err(ServiceError::NotFound) if !state.checkout_limits.unknown_slug_budget_left(address) => {
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
    let merchant = account.name.as_str();
    let markup = match link.status {
        LinkStatus::Active if account.suspended => pages::closed(
            link,
            merchant,
            "Payments are not available for this link.",
            Some("The merchant cannot take payments at the moment. You have not been charged."),
        ),
        LinkStatus::Active if !matches!(checkout, CheckoutProcessor::TestCard) => pages::closed(
            link,
            merchant,
            "Payments are not available for this link yet.",
            Some(
                "This page does not take card payments through the merchant's processor yet. You have not been charged.",
            ),
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
            link.cancellation_reason.as_deref(),
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
    State(state): State<AppState>,
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
    let merchant = account.name.as_str();
    if let Some((status, markup)) = closed_page(&link, &account, &checkout) {
        return page(status, markup, Some(&link), None, ctx.secure_cookie);
    }
    let token = csrf_cookie(&state, &slug, &headers).unwrap_or_else(|| state.csrf.issue(&slug));
    let form = pages::PayForm {
        csrf_token: &token,
        errors: &[],
        notice: None,
        expiry_value: "",
    };
    page(
        StatusCode::OK,
        pages::payable(&link, merchant, &form),
        Some(&link),
        Some(&token),
        ctx.secure_cookie,
    )
}

async fn pay(
    State(state): State<AppState>,
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
    let merchant = account.name.as_str();
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
    if !state.checkout_limits.allow_payment(&slug, address) {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            pages::too_many_requests(),
            Some(&link),
            None,
            ctx.secure_cookie,
        );
    }
    let request = form.map(|Form(request)| request).unwrap_or_default();
    let cookie = csrf_cookie(&state, &slug, &headers);
    let token = cookie.clone().unwrap_or_else(|| state.csrf.issue(&slug));
    let render = |status: StatusCode, errors: &[FieldError], notice: Option<&str>, expiry: &str| {
        let form = pages::PayForm {
            csrf_token: &token,
            errors,
            notice,
            expiry_value: expiry,
        };
        page(
            status,
            pages::payable(&link, merchant, &form),
            Some(&link),
            Some(&token),
            ctx.secure_cookie,
        )
    };
    if !cookie
        .is_some_and(|cookie| csrf::same_bytes(cookie.as_bytes(), request.csrf_token.as_bytes()))
    {
        return render(
            StatusCode::FORBIDDEN,
            &[],
            Some("Your session on this page expired. Please enter your card details again."),
            "",
        );
    }
    let card = match Card::parse(
        &request.card_number,
        &request.expiry,
        &request.cvc,
        state.service.now(),
    ) {
        Ok(card) => card,
        Err(errors) => {
            return render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &errors,
                None,
                &request.expiry,
            );
        }
    };
    match state.service.pay_link(&slug, &card).await {
        Ok(PaymentResult::Paid(paid)) => {
            tracing::info!(link_id = %paid.id, brand = card.brand(), last4 = card.last4(), "payment succeeded");
            let location = paid
                .success_url
                .clone()
                .unwrap_or_else(|| format!("/pay/{slug}"));
            let mut response = page(
                StatusCode::SEE_OTHER,
                pages::receipt(&paid, merchant),
                Some(&paid),
                None,
                ctx.secure_cookie,
            );
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Ok(PaymentResult::Declined {
            link: after,
            message,
        }) => {
            tracing::info!(link_id = %after.id, brand = card.brand(), last4 = card.last4(), "payment declined");
            if let Some((_, markup)) = closed_page(&after, &account, &checkout) {
                return page(
                    StatusCode::CONFLICT,
                    markup,
                    Some(&after),
                    None,
                    ctx.secure_cookie,
                );
            }
            render(StatusCode::PAYMENT_REQUIRED, &[], Some(&message), "")
        }
        Ok(
            PaymentResult::Processing(processing)
            | PaymentResult::ActionRequired {
                link: processing, ..
            },
        ) => {
            let (_, markup) = closed_page(&processing, &account, &checkout)
                .unwrap_or((StatusCode::ACCEPTED, pages::not_found()));
            page(
                StatusCode::ACCEPTED,
                markup,
                Some(&processing),
                None,
                ctx.secure_cookie,
            )
        }
        Err(
            ServiceError::InvalidState { .. }
            | ServiceError::PaymentsUnavailable
            | ServiceError::AccountSuspended,
        ) => {
            // Lost a race (another submit, a cancel, expiry): show what won.
            match state.service.get_link_by_slug(&slug).await {
                Ok(now) => {
                    let (_, markup) = closed_page(&now, &account, &checkout)
                        .unwrap_or((StatusCode::CONFLICT, pages::not_found()));
                    page(
                        StatusCode::CONFLICT,
                        markup,
                        Some(&now),
                        None,
                        ctx.secure_cookie,
                    )
                }
                Err(_) => page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    pages::not_found(),
                    None,
                    None,
                    ctx.secure_cookie,
                ),
            }
        }
        Err(error) => {
            tracing::warn!(%error, "checkout payment failed");
            render(
                StatusCode::SERVICE_UNAVAILABLE,
                &[],
                Some(
                    "We could not process your payment right now. You have not been charged; please try again.",
                ),
                "",
            )
        }
    }
}

//! How a payment's page answers a POST, for either processor: the CSRF
//! check, the form again with its errors, or the payment's result.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::domain::Account;
use crate::domain::{FieldError, Link};
use crate::service::{CheckoutProcessor, PaymentResult, ServiceError};

use super::*;

/// How a payment's page answers, for either processor.
pub(super) struct Answer<'a> {
    state: &'a CheckoutState,
    link: &'a Link,
    account: &'a Account,
    checkout: &'a CheckoutProcessor,
    token: String,
    secure_cookie: bool,
}

impl<'a> Answer<'a> {
    /// The answer to a POST of the link's page, once its CSRF token (the
    /// form's, the same as the cookie's, issued by this server for this
    /// link) is checked; a 403 page with the form again otherwise.
    pub(super) fn for_post(
        state: &'a CheckoutState,
        (link, account, checkout): (&'a Link, &'a Account, &'a CheckoutProcessor),
        headers: &HeaderMap,
        posted_token: &str,
    ) -> Result<Self, Box<Response>> {
        let cookie = csrf_cookie(state, &link.slug, headers);
        let answer = Answer {
            state,
            link,
            account,
            checkout,
            token: cookie
                .clone()
                .unwrap_or_else(|| state.csrf.issue(&link.slug)),
            secure_cookie: Context::new(state).secure_cookie,
        };
        if cookie.is_some_and(|cookie| csrf::same_bytes(cookie.as_bytes(), posted_token.as_bytes()))
        {
            return Ok(answer);
        }
        Err(Box::new(answer.form(
            StatusCode::FORBIDDEN,
            &[],
            Some("Your session on this page expired. Please enter your card details again."),
            ("", ""),
        )))
    }

    pub(super) fn stripe(&self) -> Option<pages::StripePage<'_>> {
        match self.checkout {
            CheckoutProcessor::Stripe {
                publishable_key,
                js_url,
            } => Some(pages::StripePage {
                publishable_key,
                js_url,
            }),
            _ => None,
        }
    }

    /// The payable page again, with `errors` and a `notice`.
    pub(super) fn form(
        &self,
        status: StatusCode,
        errors: &[FieldError],
        notice: Option<&str>,
        (card_number, expiry): (&str, &str),
    ) -> Response {
        let form = pages::PayForm {
            csrf_token: &self.token,
            errors,
            notice,
            expiry_value: expiry,
            card_number_value: card_number,
        };
        let merchant = &pages::Merchant {
            account: self.account,
        };
        match self.stripe() {
            Some(stripe) => with_stripe_csp(
                page(
                    status,
                    pages::stripe_payable(self.link, merchant, &form, &stripe),
                    Some(self.link),
                    Some(&self.token),
                    self.secure_cookie,
                ),
                self.state,
                self.link,
            ),
            None => page(
                status,
                pages::payable(self.link, merchant, &form),
                Some(self.link),
                Some(&self.token),
                self.secure_cookie,
            ),
        }
    }

    pub(super) async fn result(
        &self,
        slug: &str,
        result: Result<PaymentResult, ServiceError>,
    ) -> Response {
        let merchant = &pages::Merchant {
            account: self.account,
        };
        match result {
            Ok(PaymentResult::Paid(paid)) => {
                tracing::info!(link_id = %paid.id, "payment succeeded");
                let location = paid
                    .success_url
                    .clone()
                    .unwrap_or_else(|| format!("/pay/{slug}"));
                let mut response = page(
                    StatusCode::SEE_OTHER,
                    pages::receipt(&paid, merchant),
                    Some(&paid),
                    None,
                    self.secure_cookie,
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
                tracing::info!(link_id = %after.id, "payment declined");
                if closed_page(&after, self.account, self.checkout).is_some() {
                    // Not payable any more (a cancel or expiry won, and a
                    // late payment is being refunded): say so.
                    return page(
                        StatusCode::CONFLICT,
                        pages::closed(
                            &after,
                            merchant,
                            "This payment link can no longer be paid",
                            Some(&message),
                        ),
                        Some(&after),
                        None,
                        self.secure_cookie,
                    );
                }
                self.form(StatusCode::PAYMENT_REQUIRED, &[], Some(&message), ("", ""))
            }
            Ok(PaymentResult::ActionRequired {
                link: processing,
                client_secret,
                ..
            }) => match self.stripe() {
                Some(stripe) => with_stripe_csp(
                    page(
                        StatusCode::OK,
                        pages::stripe_action(
                            &processing,
                            merchant,
                            &self.token,
                            &client_secret,
                            &stripe,
                        ),
                        Some(&processing),
                        Some(&self.token),
                        self.secure_cookie,
                    ),
                    self.state,
                    &processing,
                ),
                None => self.processing(&processing),
            },
            Ok(PaymentResult::Processing(processing)) => self.processing(&processing),
            Err(
                ServiceError::InvalidState { .. }
                | ServiceError::PaymentsUnavailable
                | ServiceError::AccountSuspended,
            ) => {
                // Lost a race (another submit, a cancel, expiry): show what won.
                match self.state.service.get_link_by_slug(slug).await {
                    Ok(now) => {
                        let (_, markup) = closed_page(&now, self.account, self.checkout)
                            .unwrap_or((StatusCode::CONFLICT, pages::not_found()));
                        page(
                            StatusCode::CONFLICT,
                            markup,
                            Some(&now),
                            None,
                            self.secure_cookie,
                        )
                    }
                    Err(_) => page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        pages::not_found(),
                        None,
                        None,
                        self.secure_cookie,
                    ),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "checkout payment failed");
                self.form(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &[],
                    Some(
                        "We could not process your payment right now. You have not been charged; please try again.",
                    ),
                    ("", ""),
                )
            }
        }
    }

    /// 202: the processor has not answered; the reconciler finishes it.
    pub(super) fn processing(&self, processing: &Link) -> Response {
        let (_, markup) = closed_page(processing, self.account, self.checkout)
            .unwrap_or((StatusCode::ACCEPTED, pages::not_found()));
        page(
            StatusCode::ACCEPTED,
            markup,
            Some(processing),
            None,
            self.secure_cookie,
        )
    }
}

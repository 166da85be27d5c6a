//! The hosted page's HTML (maud: compile-checked and escaped). The test
//! processor's page has no JavaScript: every state works with plain forms
//! and links. A Stripe page loads Stripe.js and paylink's own small script
//! (`stripe-checkout.js`, same origin) and nothing else.

use jiff::tz::TimeZone;
use maud::{DOCTYPE, Markup, html};

use crate::domain::money::format_money;
use crate::domain::{Account, FieldError, Link};

/// What the payable page shows besides the link.
pub struct PayForm<'a> {
    pub csrf_token: &'a str,
    pub errors: &'a [FieldError],
    pub notice: Option<&'a str>,
    pub expiry_value: &'a str,
    /// The card number as typed, given back when only another field was
    /// wrong (the built-in test processor's form, test mode only: its
    /// cards are test cards); the CVC is never given back.
    pub card_number_value: &'a str,
}

/// The merchant as its customers see it: the branding's display name
/// (else the account's name), logo and contact links.
pub struct Merchant<'a> {
    pub account: &'a Account,
}

impl std::fmt::Display for Merchant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let branding = &self.account.branding;
        f.write_str(
            branding
                .display_name
                .as_deref()
                .unwrap_or(&self.account.name),
        )
    }
}

fn layout(title: &str, merchant: &Merchant<'_>, livemode: bool, body: Markup) -> Markup {
    layout_with_scripts(title, merchant, livemode, &[], body)
}

fn layout_with_scripts(
    title: &str,
    merchant: &Merchant<'_>,
    livemode: bool,
    scripts: &[&str],
    body: Markup,
) -> Markup {
    let branding = &merchant.account.branding;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) }
                link rel="stylesheet" href="/pay/assets/checkout.css";
            }
            body {
                @if !livemode {
                    div class="test-banner" role="note" { "TEST MODE: no real money moves" }
                }
                main {
                    div class="card" { (body) }
                    @if branding.support_email.is_some() || branding.terms_url.is_some() || branding.privacy_url.is_some() {
                        footer class="merchant-footer" {
                            @if let Some(email) = &branding.support_email {
                                a href={ "mailto:" (email) } { "Contact " (merchant) }
                            }
                            @if let Some(url) = &branding.terms_url {
                                a href=(url) rel="noopener" { "Terms" }
                            }
                            @if let Some(url) = &branding.privacy_url {
                                a href=(url) rel="noopener" { "Privacy" }
                            }
                        }
                    }
                }
                @for script in scripts {
                    script src=(script) {}
                }
            }
        }
    }
}

fn summary(link: &Link, merchant: &Merchant<'_>) -> Markup {
    html! {
        @if let Some(logo) = &merchant.account.branding.logo_url {
            img class="logo" src=(logo) alt=(merchant);
        }
        p class="merchant" { (merchant) }
        h1 { (link.description.as_deref().unwrap_or("Payment")) }
        p class="amount" data-testid="amount" { (format_money(link.amount, link.currency)) }
        @if let Some(items) = &link.line_items {
            table {
                caption class="muted" { "Items" }
                @for item in items {
                    tr {
                        td { (item.name) " × " (item.quantity) }
                        td class="num" { (format_money(item.unit_amount.saturating_mul(item.quantity), link.currency)) }
                    }
                }
            }
        }
    }
}

fn back_link(link: &Link) -> Markup {
    html! {
        @if let Some(url) = &link.cancel_url {
            a class="back" href=(url) { "← Back to " (host_of(url)) }
        }
    }
}

fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "the merchant".into())
}

fn field_error<'a>(errors: &'a [FieldError], name: &str) -> Option<&'a str> {
    errors
        .iter()
        .find(|e| e.param == name)
        .map(|e| e.message.as_str())
}

fn input(name: &str, label: &str, errors: &[FieldError], attrs: InputAttrs<'_>) -> Markup {
    let error = field_error(errors, name);
    let error_id = format!("{name}-error");
    html! {
        div {
            label for=(name) { (label) }
            input id=(name) name=(name) type="text" inputmode=(attrs.inputmode) autocomplete=(attrs.autocomplete)
                placeholder=(attrs.placeholder) value=(attrs.value) required
                aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| error_id.as_str())];
            @if let Some(message) = error {
                p class="error" id=(error_id) { (message) }
            }
        }
    }
}

struct InputAttrs<'a> {
    inputmode: &'a str,
    autocomplete: &'a str,
    placeholder: &'a str,
    value: &'a str,
}

pub fn payable(link: &Link, merchant: &Merchant<'_>, form: &PayForm<'_>) -> Markup {
    let expires = link
        .expires_at
        .to_zoned(TimeZone::UTC)
        .strftime("%Y-%m-%d %H:%M UTC")
        .to_string();
    layout(
        &format!("Pay {merchant}"),
        merchant,
        link.livemode,
        html! {
            (summary(link, merchant))
            p class="expiry" { "This link expires " time datetime=(link.expires_at) { (expires) } "." }
            @if let Some(notice) = form.notice {
                p class="notice" role="alert" { (notice) }
            }
            form method="post" action={ "/pay/" (link.slug) } novalidate {
                input type="hidden" name="csrf_token" value=(form.csrf_token);
                (input("card_number", "Card number", form.errors, InputAttrs { inputmode: "numeric", autocomplete: "cc-number", placeholder: "4242 4242 4242 4242", value: form.card_number_value }))
                div class="row" {
                    (input("expiry", "Expiry (MM/YY)", form.errors, InputAttrs { inputmode: "numeric", autocomplete: "cc-exp", placeholder: "MM/YY", value: form.expiry_value }))
                    (input("cvc", "CVC", form.errors, InputAttrs { inputmode: "numeric", autocomplete: "cc-csc", placeholder: "123", value: "" }))
                }
                button type="submit" { "Pay " (format_money(link.amount, link.currency)) }
            }
            (back_link(link))
        },
    )
}

/// Where a Stripe page gets Stripe.js and the account's publishable key.
pub struct StripePage<'a> {
    pub publishable_key: &'a str,
    pub js_url: &'a str,
}

pub const STRIPE_GLUE: &str = "/pay/assets/stripe-checkout.js";

/// The payable page of a Stripe link: Stripe Elements mounts its card
/// field in `#card-element`; the form posts only `payment_method`.
pub fn stripe_payable(
    link: &Link,
    merchant: &Merchant<'_>,
    form: &PayForm<'_>,
    stripe: &StripePage<'_>,
) -> Markup {
    layout_with_scripts(
        &format!("Pay {merchant}"),
        merchant,
        link.livemode,
        &[stripe.js_url, STRIPE_GLUE],
        html! {
            (summary(link, merchant))
            @if let Some(notice) = form.notice {
                p class="notice" role="alert" { (notice) }
            }
            form id="stripe-pay" method="post" action={ "/pay/" (link.slug) } data-publishable-key=(stripe.publishable_key) {
                input type="hidden" name="csrf_token" value=(form.csrf_token);
                input type="hidden" name="payment_method" value="";
                label for="card-element" { "Card" }
                div id="card-element" {}
                p id="card-errors" class="error" role="alert" {}
                button type="submit" { "Pay " (format_money(link.amount, link.currency)) }
            }
            p class="muted" { "Card details go straight to Stripe; this site never sees them." }
            (back_link(link))
        },
    )
}

/// The page that completes 3-D Secure with Stripe.js, then posts back to
/// `/pay/{slug}/complete` so paylink asks Stripe for the outcome.
pub fn stripe_action(
    link: &Link,
    merchant: &Merchant<'_>,
    csrf_token: &str,
    client_secret: &str,
    stripe: &StripePage<'_>,
) -> Markup {
    layout_with_scripts(
        "Confirm your payment",
        merchant,
        link.livemode,
        &[stripe.js_url, STRIPE_GLUE],
        html! {
            (summary(link, merchant))
            p class="state" role="status" { "Your bank asks you to confirm this payment." }
            form id="stripe-action" method="post" action={ "/pay/" (link.slug) "/complete" }
                data-publishable-key=(stripe.publishable_key) data-client-secret=(client_secret) {
                input type="hidden" name="csrf_token" value=(csrf_token);
                noscript { button type="submit" { "I have confirmed the payment" } }
            }
        },
    )
}

/// A page with no form: paid, cancelled, expired, in progress, or not payable.
pub fn closed(link: &Link, merchant: &Merchant<'_>, heading: &str, detail: Option<&str>) -> Markup {
    layout(
        heading,
        merchant,
        link.livemode,
        html! {
            (summary(link, merchant))
            p class="state" role="status" { (heading) }
            @if let Some(detail) = detail {
                p class="muted" { (detail) }
            }
            (back_link(link))
        },
    )
}

pub fn receipt(link: &Link, merchant: &Merchant<'_>) -> Markup {
    let paid = link
        .paid_at
        .map(|at| {
            at.to_zoned(TimeZone::UTC)
                .strftime("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_default();
    layout(
        "Payment received",
        merchant,
        link.livemode,
        html! {
            (summary(link, merchant))
            p class="state" role="status" { "Payment received. Thank you!" }
            p class="muted" { "Paid " (paid) ". Receipt reference " code { (link.payment_id.as_deref().unwrap_or("")) } "." }
        },
    )
}

pub fn too_many_requests() -> Markup {
    message_page(
        "Too many attempts",
        "Please wait a few minutes before trying again. You have not been charged.",
    )
}

pub fn not_found() -> Markup {
    message_page(
        "Payment link not found",
        "Check the address you were given, or ask the merchant for a new link.",
    )
}

/// A page with a heading and one sentence, for when there is no link to show.
fn message_page(title: &str, detail: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/pay/assets/checkout.css";
            }
            body { main { div class="card" {
                h1 { (title) }
                p class="muted" { (detail) }
            } } }
        }
    }
}

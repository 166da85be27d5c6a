//! The hosted checkout page over real HTTP: rendering, payment outcomes,
//! refusals, CSRF, security headers and races.

use std::collections::HashSet;

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use paylink::server::ServerOptions;

use crate::helpers::{TestApp, generous_checkout_limits};

struct Page {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    html: String,
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn open(url: &str) -> Page {
    let response = no_redirects().get(url).send().await.unwrap();
    Page {
        status: response.status(),
        headers: response.headers().clone(),
        html: response.text().await.unwrap(),
    }
}

/// The CSRF token the page set as a cookie (and in its form).
fn csrf_token(page: &Page) -> String {
    let cookie = page.headers["set-cookie"].to_str().unwrap();
    let token = cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("pl_csrf=")
        .unwrap()
        .to_owned();
    assert!(
        page.html
            .contains(&format!("name=\"csrf_token\" value=\"{token}\""))
    );
    token
}

async fn submit(url: &str, token: &str, card: &str, expiry: &str, cvc: &str) -> Page {
    let response = no_redirects()
        .post(url)
        .header("cookie", format!("pl_csrf={token}"))
        .form(&[
            ("card_number", card),
            ("expiry", expiry),
            ("cvc", cvc),
            ("csrf_token", token),
        ])
        .send()
        .await
        .unwrap();
    Page {
        status: response.status(),
        headers: response.headers().clone(),
        html: response.text().await.unwrap(),
    }
}

async fn new_link(app: &TestApp, extra: Value) -> (String, String) {
    let response = app.create_link_with(extra).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    (
        response.id(),
        response.body["url"].as_str().unwrap().to_owned(),
    )
}

async fn pay_with(url: &str, card: &str) -> Page {
    let page = open(url).await;
    let token = csrf_token(&page);
    submit(url, &token, card, "12/34", "123").await
}

backend_tests! {
    async fn the_page_shows_the_link_for_its_currency_with_security_headers() {
        let app = TestApp::spawn().await;
        for (currency, amount, shown) in [("USD", 4995, "$49.95"), ("EUR", 4995, "€49.95"), ("JPY", 4995, "¥4,995")] {
            let (_, url) = new_link(&app, json!({"currency": currency, "amount": amount})).await;
            let page = open(&url).await;
            assert_eq!(page.status, StatusCode::OK);
            assert!(page.html.contains(shown), "{currency} shows {shown}");
        }
        let (_, url) = new_link(
            &app,
            json!({"amount": 2500, "line_items": [{"product_id": "p", "name": "Blood Pressure Cuff", "quantity": 2, "unit_amount": 1250}],
                   "cancel_url": "https://shop.example/cart"}),
        )
        .await;
        let page = open(&url).await;
        for expected in [
            "TEST MODE",
            "default",
            "Premium Blood Pressure Monitor",
            "Blood Pressure Cuff × 2",
            "$25.00",
            "<label for=\"card_number\">",
            "<label for=\"expiry\">Expiry (MM/YY)",
            "<label for=\"cvc\">",
            "name=\"viewport\"",
            "href=\"https://shop.example/cart\"",
            "This link expires",
        ] {
            assert!(page.html.contains(expected), "page shows {expected}");
        }
        assert!(!page.html.contains("<script"), "works without JavaScript");
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(page.headers["x-frame-options"], "DENY");
        assert_eq!(page.headers["referrer-policy"], "no-referrer");
        let cookie = page.headers["set-cookie"].to_str().unwrap();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let css = open(&format!("{}/pay/assets/checkout.css", app.base)).await;
        assert_eq!(css.status, StatusCode::OK);
    }

    async fn the_success_card_pays_and_redirects_to_success_url() {
        let app = TestApp::spawn().await;
        let (id, url) = new_link(&app, json!({"success_url": "https://shop.example/thanks?order=1"})).await;

        let page = pay_with(&url, "4242 4242 4242 4242").await;

        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(page.headers["location"], "https://shop.example/thanks?order=1");
        let link = app.link(&id).await;
        assert_eq!(link["status"], "paid");
        assert!(link["paid_at"].is_string());
        assert!(link["payment_id"].as_str().unwrap().starts_with("pay_"));
        assert_eq!(app.event_types(&id).await, ["payment_link.created", "payment_link.processing", "payment_link.paid"]);
        let again = open(&url).await;
        assert!(again.html.contains("Payment received"));
        assert!(!again.html.contains("<form"), "a paid link has no form");
    }

    async fn without_success_url_the_customer_gets_a_receipt() {
        let app = TestApp::spawn().await;
        let (id, url) = new_link(&app, json!({})).await;
        let page = pay_with(&url, "4242424242424242").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        let location = page.headers["location"].to_str().unwrap();
        assert!(url.ends_with(location));
        let receipt = open(&url).await;
        let payment_id = app.link(&id).await["payment_id"].as_str().unwrap().to_owned();
        assert!(receipt.html.contains(&payment_id));
    }

    async fn a_declined_card_leaves_the_link_payable_with_a_message() {
        let app = TestApp::spawn().await;
        let (id, url) = new_link(&app, json!({})).await;
        let page = pay_with(&url, "4000 0000 0000 0002").await;
        assert_eq!(page.status, StatusCode::PAYMENT_REQUIRED);
        assert!(page.html.contains("Your card was declined."));
        assert!(page.html.contains("<form"), "the customer may try another card");
        assert_eq!(app.link(&id).await["status"], "active");
        let trail = app.get(&format!("/v1/payment-links/{id}/events")).await;
        let failed = &trail.body["data"][2];
        assert_eq!(failed["type"], "payment_link.payment_failed");
        let reason = failed["reason"].as_str().unwrap();
        assert!(reason.contains("ending 0002"), "{reason}");
        assert!(!trail.body.to_string().contains("4000000000000002"), "only the last four digits are stored");
        let retry = pay_with(&url, "4242424242424242").await;
        assert_eq!(retry.status, StatusCode::SEE_OTHER);
    }

    async fn invalid_card_details_are_refused_next_to_their_field() {
        let app = TestApp::spawn().await;
        let (id, url) = new_link(&app, json!({})).await;
        let page = open(&url).await;
        let token = csrf_token(&page);
        let bad_number = submit(&url, &token, "4242 4242 4242 4241", "12/34", "123").await;
        assert_eq!(bad_number.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(bad_number.html.contains("id=\"card_number-error\""));
        assert!(bad_number.html.contains("Your card number is invalid."));
        let past = submit(&url, &token, "4242424242424242", "01/20", "123").await;
        assert_eq!(past.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(past.html.contains("id=\"expiry-error\""));
        assert!(past.html.contains("expiration date is in the past"));
        // Only the expiry was wrong: the (test) card number is kept, so
        // the customer fixes one field; the CVC is never given back.
        assert!(past.html.contains(r#"value="4242424242424242""#), "the number is kept");
        assert!(!past.html.contains(r#"value="123""#), "never the CVC");
        assert!(!bad_number.html.contains("4242 4242 4242 4241"), "a wrong number is not kept");
        assert_eq!(app.event_types(&id).await, ["payment_link.created"]);
    }

    async fn a_post_without_the_csrf_token_changes_nothing() {
        let app = TestApp::spawn().await;
        let (id, url) = new_link(&app, json!({})).await;
        let forged = no_redirects()
            .post(&url)
            .form(&[("card_number", "4242424242424242"), ("expiry", "12/34"), ("cvc", "123"), ("csrf_token", "guess")])
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);
        let page = open(&url).await;
        let token = csrf_token(&page);
        let mismatched = no_redirects()
            .post(&url)
            .header("cookie", format!("pl_csrf={token}"))
            .form(&[("card_number", "4242424242424242"), ("expiry", "12/34"), ("cvc", "123"), ("csrf_token", "other")])
            .send()
            .await
            .unwrap();
        assert_eq!(mismatched.status(), StatusCode::FORBIDDEN);
        assert_eq!(app.link(&id).await["status"], "active");
        assert_eq!(app.event_types(&id).await, ["payment_link.created"]);
    }

    async fn cancelled_and_expired_links_have_no_form_and_refuse_payment() {
        let app = TestApp::spawn().await;
        let (cancelled, cancelled_url) = new_link(&app, json!({})).await;
        let answer = app
            .cancel(&cancelled, json!({"reason": "Supplier 4471 failed QA", "customer_message": "Item out of stock"}))
            .await;
        assert_eq!(answer.body["customer_message"], "Item out of stock");
        assert_eq!(answer.body["cancellation_reason"], "Supplier 4471 failed QA");
        let cancelled_page = open(&cancelled_url).await;
        assert!(cancelled_page.html.contains("This payment link was cancelled"));
        assert!(cancelled_page.html.contains("Item out of stock"), "the message for the customer");
        assert!(!cancelled_page.html.contains("Supplier 4471"), "the internal reason is never public");

        let (expired, expired_url) = new_link(&app, json!({})).await;
        app.advance(SignedDuration::from_hours(15 * 24));
        let expired_page = open(&expired_url).await;
        assert!(expired_page.html.contains("This payment link has expired"));

        for (page, url) in [(&cancelled_page, &cancelled_url), (&expired_page, &expired_url)] {
            assert_eq!(page.status, StatusCode::OK);
            assert!(!page.html.contains("<form"));
            let post = submit(url, "tok", "4242424242424242", "12/34", "123").await;
            assert!(post.status.is_client_error(), "{}", post.status);
        }
        assert_eq!(app.link(&cancelled).await["status"], "cancelled");
        assert_eq!(app.link(&expired).await["status"], "expired");
        let unknown = open(&format!("{}/pay/nosuchslug", app.base)).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    }

    async fn ten_concurrent_submits_make_exactly_one_payment() {
        let app = TestApp::spawn_with(ServerOptions {
            checkout_limits: generous_checkout_limits(),
            ..ServerOptions::default()
        })
        .await;
        let (id, url) = new_link(&app, json!({})).await;
        let token = csrf_token(&open(&url).await);
        let submits = (0..10).map(|_| submit(&url, &token, "4242424242424242", "12/34", "123"));
        let pages = futures::future::join_all(submits).await;
        let statuses: Vec<StatusCode> = pages.iter().map(|p| p.status).collect();
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::SEE_OTHER).count(), 1, "{statuses:?}");
        assert!(statuses.iter().all(|s| *s == StatusCode::SEE_OTHER || *s == StatusCode::CONFLICT));
        let types = app.event_types(&id).await;
        assert_eq!(types.iter().filter(|t| *t == "payment_link.paid").count(), 1);
        assert_eq!(types.iter().filter(|t| *t == "payment_link.processing").count(), 1);
    }

    async fn pay_and_cancel_never_both_succeed() {
        let app = TestApp::spawn().await;
        for _ in 0..8 {
            let (id, url) = new_link(&app, json!({})).await;
            let token = csrf_token(&open(&url).await);
            let (paid, cancelled) = tokio::join!(
                submit(&url, &token, "4242424242424242", "12/34", "123"),
                app.cancel(&id, json!({"reason": "race"}))
            );
            let pay_won = paid.status == StatusCode::SEE_OTHER;
            let cancel_won = cancelled.status == StatusCode::OK;
            assert!(pay_won != cancel_won, "exactly one wins: pay {} cancel {}", paid.status, cancelled.status);
            if !cancel_won {
                assert_eq!(cancelled.code(), "invalid_state");
            }
            let types: HashSet<String> = app.event_types(&id).await.into_iter().collect();
            assert!(!(types.contains("payment_link.paid") && types.contains("payment_link.cancelled")));
            let link = app.link(&id).await;
            assert_eq!(link["status"], if pay_won { "paid" } else { "cancelled" });
        }
    }
}

//! The durability rule over real HTTP: clients that hang up mid-request
//! cannot wedge the store, leave a payment half made, or turn one
//! idempotency key into two objects.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;

use paylink::server::ServerOptions;

use crate::common::{post_request, send_and_hang_up};
use crate::helpers::{TestApp, generous_checkout_limits};

fn addr_of(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

fn get_request(path: &str, key: Option<&str>) -> Vec<u8> {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    format!("GET {path} HTTP/1.1\r\nHost: paylink\r\n{auth}\r\n").into_bytes()
}

fn slug_of(link: &serde_json::Value) -> String {
    link["slug"].as_str().expect("slug").to_owned()
}

/// The CSRF cookie a fresh visit to the page is given.
async fn csrf_token(url: &str) -> String {
    let response = reqwest::get(url).await.expect("page");
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    cookie
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("pl_csrf="))
        .expect("csrf cookie")
        .to_owned()
}

/// Submits the pay form of `url` with `card` and `token` (cookie and field).
async fn submit_card(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    card: &str,
) -> reqwest::Response {
    client
        .post(url)
        .header("cookie", format!("pl_csrf={token}"))
        .form(&[
            ("card_number", card),
            ("expiry", "12/34"),
            ("cvc", "123"),
            ("csrf_token", token),
        ])
        .send()
        .await
        .unwrap()
}

async fn processing_count(app: &TestApp) -> usize {
    let page = app
        .get("/v1/payment-links?status=processing&limit=100")
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body["data"].as_array().unwrap().len()
}

backend_tests! {
    async fn three_thousand_early_closed_requests_leave_every_endpoint_answering() {
        // Limits raised: the point is requests cut at every stage, and the
        // ones that got far enough would otherwise spend the key's budget.
        let app = TestApp::spawn_with(ServerOptions {
            rate_limits: paylink::web::rate_limit::RateLimitSettings {
                per_second: 100_000,
                burst: 100_000,
                ..Default::default()
            },
            ..ServerOptions::default()
        })
        .await;
        let id = app.create_link().await;
        let slug = slug_of(&app.link(&id).await);
        let addr = addr_of(&app);
        let key = app.key.clone();
        let requests: Vec<Vec<u8>> = (0..3000)
            .map(|i| match i % 3 {
                0 => get_request(&format!("/pay/{slug}"), None),
                1 => get_request(&format!("/v1/payment-links/{id}"), Some(&key)),
                _ => get_request("/v1/payment-links?limit=100", Some(&key)),
            })
            .collect();
        futures::stream::iter(requests)
            .for_each_concurrent(64, |request| {
                let addr = &addr;
                async move { send_and_hang_up(addr, &request, Duration::ZERO).await }
            })
            .await;

        let ready = reqwest::get(format!("{}/readyz", app.base)).await.unwrap();
        assert_eq!(ready.status(), StatusCode::OK);
        let created = app.create_link().await;
        assert_eq!(app.link(&created).await["status"], "active");
        assert_eq!(app.get("/v1/payment-links").await.status, StatusCode::OK);
        assert_eq!(app.get(&format!("/v1/payment-links/{id}/events")).await.status, StatusCode::OK);
        assert_eq!(app.get("/v1/payment-links/stats").await.status, StatusCode::OK);
        assert_eq!(app.get("/v1/events").await.status, StatusCode::OK);
        assert_eq!(app.cancel(&created, json!({})).await.status, StatusCode::OK);
        let page = reqwest::get(format!("{}/pay/{slug}", app.base)).await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
    }

    async fn three_hundred_early_closed_payments_each_settle_once() {
        let app = TestApp::spawn_with(ServerOptions {
            checkout_limits: generous_checkout_limits(),
            rate_limits: paylink::web::rate_limit::RateLimitSettings {
                per_second: 100_000,
                burst: 100_000,
                ..Default::default()
            },
            reconcile_after: Duration::from_secs(2),
            reconcile_interval: Duration::from_millis(200),
            ..ServerOptions::default()
        })
        .await;
        let addr = addr_of(&app);
        let mut links = Vec::new();
        for _ in 0..300 {
            let id = app.create_link().await;
            let link = app.link(&id).await;
            let token = csrf_token(link["url"].as_str().unwrap()).await;
            links.push((id, slug_of(&link), token));
        }
        futures::stream::iter(links.iter().enumerate())
            .for_each_concurrent(32, |(i, (_, slug, token))| {
                // Every tenth card is declined, so both outcomes are cut.
                let card = if i % 10 == 0 { "4000000000000002" } else { "4242424242424242" };
                let body = format!("card_number={card}&expiry=12%2F34&cvc=123&csrf_token={token}");
                let cookie = format!("pl_csrf={token}");
                let request = post_request(
                    &format!("/pay/{slug}"),
                    &[("Cookie", cookie.as_str())],
                    "application/x-www-form-urlencoded",
                    &body,
                );
                let addr = &addr;
                async move { send_and_hang_up(addr, &request, Duration::ZERO).await }
            })
            .await;

        // Soon after (the reconcile age is 2 s; the slack is for a loaded CI
        // machine), nothing is left processing; checked twice, a second
        // apart, so a submission the server was still reading when the
        // first check ran is counted.
        for _ in 0..2 {
            let deadline = Instant::now() + Duration::from_secs(2) + Duration::from_secs(8);
            while processing_count(&app).await > 0 {
                assert!(Instant::now() < deadline, "links still processing past the reconcile age");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut started = 0;
        for (id, _, _) in &links {
            let types = app.event_types(id).await;
            let count = |t: &str| types.iter().filter(|x| *x == t).count();
            let outcomes = count("payment_link.paid") + count("payment_link.payment_failed");
            assert_eq!(
                count("payment_link.processing"),
                outcomes,
                "{id}: {types:?} {:?} {:?}",
                app.link(id).await["status"],
                app.service.link_attempts(id).await
            );
            assert!(count("payment_link.paid") <= 1, "{id}: {types:?}");
            started += count("payment_link.processing");
            let attempts = app.service.link_attempts(id).await.unwrap();
            assert_eq!(attempts.len(), count("payment_link.processing"));
            assert!(attempts.iter().all(|a| a.state != paylink::domain::AttemptState::Pending));
        }
        eprintln!("{started} of 300 early-closed submissions started a payment");
        assert!(started > 0, "no submission reached the server");
    }

    async fn an_early_closed_idempotent_create_is_answered_to_its_retry() {
        let app = TestApp::spawn().await;
        let addr = addr_of(&app);
        let auth = format!("Bearer {}", app.key);
        for i in 0..30 {
            let key = format!("early-close-{i}");
            let body = json!({"amount": 1000 + i, "currency": "EUR", "metadata": {"key": key}}).to_string();
            let request = post_request(
                "/v1/payment-links",
                &[("Authorization", auth.as_str()), ("Idempotency-Key", key.as_str())],
                "application/json",
                &body,
            );
            send_and_hang_up(&addr, &request, Duration::ZERO).await;
            // The retry: the first request's answer, once it is stored.
            let deadline = Instant::now() + Duration::from_secs(5);
            let retried = loop {
                let response = app
                    .client
                    .post(format!("{}/v1/payment-links", app.base))
                    .bearer_auth(&app.key)
                    .header("Idempotency-Key", &key)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let response = TestApp::read(response).await;
                if response.status != StatusCode::CONFLICT {
                    break response;
                }
                assert!(Instant::now() < deadline, "{key} stayed in use: {}", response.body);
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.body);
        }
        let all = app.get("/v1/payment-links?limit=100").await;
        let data = all.body["data"].as_array().unwrap();
        assert_eq!(data.len(), 30, "one link per idempotency key");
    }

    async fn early_closed_refunds_run_to_their_end_and_never_exceed_the_amount() {
        let app = TestApp::spawn().await;
        let addr = addr_of(&app);
        let auth = format!("Bearer {}", app.key);
        let id = app
            .create_link_with(json!({"amount": 1000, "currency": "EUR"}))
            .await
            .id();
        app.pay(&id).await;
        // Twenty refunds of 100 on a link of 1000, each client hanging up
        // as soon as its request is sent.
        let path = format!("/v1/payment-links/{id}/refunds");
        futures::future::join_all((0..20).map(|_| {
            let request = post_request(
                &path,
                &[("Authorization", auth.as_str())],
                "application/json",
                r#"{"amount": 100}"#,
            );
            let addr = addr.clone();
            async move { send_and_hang_up(&addr, &request, Duration::ZERO).await }
        }))
        .await;
        // Whatever reached the server finishes: no refund is left pending,
        // and the link's refunded amount is exactly the succeeded refunds.
        // (Two reads, so a refund committing between them is seen on the
        // next round; the state must hold still across two rounds.)
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut previous = None;
        loop {
            let refunded = app.link(&id).await["amount_refunded"].as_i64().unwrap();
            let refunds = app.get(&path).await.body["data"].as_array().unwrap().clone();
            let pending = refunds.iter().filter(|r| r["status"] == "pending").count();
            let succeeded: i64 = refunds
                .iter()
                .filter(|r| r["status"] == "succeeded")
                .map(|r| r["amount"].as_i64().unwrap())
                .sum();
            let settled = (pending == 0 && refunded == succeeded).then_some((refunds.len(), succeeded));
            if settled.is_some() && settled == previous {
                assert!(succeeded <= 1000);
                eprintln!("{} of 20 early-closed refunds reached the server", refunds.len());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "refunds never settled: {pending} pending, {refunded} refunded on the link, {succeeded} succeeded"
            );
            previous = settled;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn a_suspended_accounts_page_takes_no_payment() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        let url = app.link(&id).await["url"].as_str().unwrap().to_owned();
        let token = csrf_token(&url).await;
        app.service.set_account_suspended("default", true).await.unwrap();
        let page = reqwest::get(&url).await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(!html.contains("<form"), "{html}");
        assert!(html.contains("Payments are not available"), "{html}");
        let paid = submit_card(&reqwest::Client::new(), &url, &token, "4242424242424242").await;
        assert_eq!(paid.status(), StatusCode::FORBIDDEN);
        app.service.set_account_suspended("default", false).await.unwrap();
        assert_eq!(app.link(&id).await["status"], "active");
        assert_eq!(app.event_types(&id).await, vec!["payment_link.created"]);
    }

    async fn csrf_tokens_are_issued_by_the_server_and_bound_to_their_link() {
        let app = TestApp::spawn().await;
        let first = app.create_link().await;
        let second = app.create_link().await;
        let first_url = app.link(&first).await["url"].as_str().unwrap().to_owned();
        let second_url = app.link(&second).await["url"].as_str().unwrap().to_owned();
        let first_token = csrf_token(&first_url).await;
        let (nonce, tag) = first_token.split_once('.').unwrap();
        assert!(nonce.len() >= 22 && tag.len() == 64, "{first_token}");

        // A cookie the server did not set is not reflected into the form.
        let forged = "A".repeat(32);
        let page = reqwest::Client::new()
            .get(&first_url)
            .header("cookie", format!("pl_csrf={forged}"))
            .send()
            .await
            .unwrap();
        let html = page.text().await.unwrap();
        assert!(!html.contains(&forged));

        // Another link's token does not pay this one; its own does.
        let no_redirects = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let submit = |url: String, token: String| {
            let client = no_redirects.clone();
            async move { submit_card(&client, &url, &token, "4242424242424242").await.status() }
        };
        assert_eq!(submit(second_url.clone(), first_token.clone()).await, StatusCode::FORBIDDEN);
        assert_eq!(submit(second_url, forged).await, StatusCode::FORBIDDEN);
        assert_eq!(app.link(&second).await["status"], "active");
        assert_eq!(submit(first_url, first_token).await, StatusCode::SEE_OTHER);
        assert_eq!(app.link(&first).await["status"], "paid");
    }

    async fn the_pay_form_and_unknown_slugs_are_rate_limited() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        let url = app.link(&id).await["url"].as_str().unwrap().to_owned();
        let token = csrf_token(&url).await;
        let client = reqwest::Client::new();
        let mut statuses = Vec::new();
        for _ in 0..8 {
            // Card testing: a bad test card again and again on one link.
            statuses.push(submit_card(&client, &url, &token, "4000000000000002").await.status());
        }
        assert_eq!(statuses[..5], [StatusCode::PAYMENT_REQUIRED; 5], "{statuses:?}");
        assert_eq!(statuses[5..], [StatusCode::TOO_MANY_REQUESTS; 3], "{statuses:?}");
        let limited = submit_card(&client, &url, &token, "4242424242424242").await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(limited.text().await.unwrap().contains("Too many attempts"));
        assert_eq!(app.link(&id).await["status"], "active");

        let mut unknown = Vec::new();
        for i in 0..25 {
            let status = reqwest::get(format!("{}/pay/NoSuchSlug{i}", app.base)).await.unwrap().status();
            unknown.push(status);
        }
        assert_eq!(unknown[..20], [StatusCode::NOT_FOUND; 20], "{unknown:?}");
        assert_eq!(unknown[20..], [StatusCode::TOO_MANY_REQUESTS; 5], "{unknown:?}");
    }
}

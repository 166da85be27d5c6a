//! Idempotency keys: replays byte for byte, refuses reuse with another
//! request, survives restarts, scoped per account, forgotten after 24 hours.

use jiff::SignedDuration;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Sends a request with an idempotency header; returns status, replay flag and raw body.
async fn send(
    app: &TestApp,
    api_key: &str,
    header: &str,
    idempotency_key: &str,
    path: &str,
    body: &Value,
) -> (StatusCode, bool, Vec<u8>) {
    let response = app
        .client
        .post(format!("{}{path}", app.base))
        .bearer_auth(api_key)
        .header(header, idempotency_key)
        .json(body)
        .send()
        .await
        .unwrap();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    (
        response.status(),
        replayed,
        response.bytes().await.unwrap().to_vec(),
    )
}

fn link_body() -> Value {
    json!({"amount": 4995, "currency": "USD", "order_reference": "IDEM-1"})
}

async fn count_links(app: &TestApp, key: &str) -> usize {
    let list = app
        .request(Method::GET, "/v1/payment-links?limit=100", Some(key), None)
        .await;
    list.body["data"].as_array().unwrap().len()
}

backend_tests! {
    async fn the_same_key_and_body_twice_create_one_link_with_identical_bytes() {
        let app = TestApp::spawn().await;
        let first = send(&app, &app.key, "Idempotency-Key", "create-1", "/v1/payment-links", &link_body()).await;
        let second = send(&app, &app.key, "Idempotency-Key", "create-1", "/v1/payment-links", &link_body()).await;
        assert_eq!(first.0, StatusCode::CREATED);
        assert!(!first.1);
        assert_eq!(second.0, StatusCode::CREATED);
        assert!(second.1, "marked as a replay");
        assert_eq!(first.2, second.2, "byte for byte");
        assert_eq!(count_links(&app, &app.key).await, 1);
        let alias = send(&app, &app.key, "X-Idempotency-Key", "create-1", "/v1/payment-links", &link_body()).await;
        assert_eq!(alias.2, first.2, "X-Idempotency-Key is the same key");
    }

    async fn the_same_key_with_another_body_is_422() {
        let app = TestApp::spawn().await;
        send(&app, &app.key, "Idempotency-Key", "k", "/v1/payment-links", &link_body()).await;
        let other = json!({"amount": 100, "currency": "USD"});
        let (status, _, body) = send(&app, &app.key, "Idempotency-Key", "k", "/v1/payment-links", &other).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "idempotency_key_reused");
        assert_eq!(count_links(&app, &app.key).await, 1);
    }

    async fn ten_concurrent_identical_creates_make_exactly_one_link() {
        let app = TestApp::spawn().await;
        let body = link_body();
        let attempts = (0..10).map(|_| send(&app, &app.key, "Idempotency-Key", "burst", "/v1/payment-links", &body));
        let results = futures::future::join_all(attempts).await;
        let created: Vec<_> = results.iter().filter(|r| r.0 == StatusCode::CREATED).collect();
        assert!(!created.is_empty());
        for result in &results {
            match result.0 {
                StatusCode::CREATED => assert_eq!(result.2, created[0].2, "replays are identical"),
                StatusCode::CONFLICT => {
                    let body: Value = serde_json::from_slice(&result.2).unwrap();
                    assert_eq!(body["error"]["code"], "idempotency_key_in_use");
                }
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(count_links(&app, &app.key).await, 1);
    }

    async fn the_same_key_in_another_account_is_independent() {
        let app = TestApp::spawn().await;
        let other = app.create_key("acme", false).await;
        let mine = send(&app, &app.key, "Idempotency-Key", "shared", "/v1/payment-links", &link_body()).await;
        let theirs = send(&app, &other, "Idempotency-Key", "shared", "/v1/payment-links", &link_body()).await;
        assert_eq!(mine.0, StatusCode::CREATED);
        assert_eq!(theirs.0, StatusCode::CREATED);
        assert!(!theirs.1);
        assert_ne!(mine.2, theirs.2);
        assert_eq!(count_links(&app, &app.key).await, 1);
        assert_eq!(count_links(&app, &other).await, 1);
    }

    async fn a_replay_works_after_a_restart() {
        let app = TestApp::spawn().await;
        let first = send(&app, &app.key, "Idempotency-Key", "durable", "/v1/payment-links", &link_body()).await;
        let app = app.restart().await;
        let again = send(&app, &app.key, "Idempotency-Key", "durable", "/v1/payment-links", &link_body()).await;
        assert!(again.1);
        assert_eq!(again.2, first.2);
        assert_eq!(count_links(&app, &app.key).await, 1);
    }

    async fn a_replayed_cancel_returns_the_first_answer() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        let path = format!("/v1/payment-links/{id}/cancel");
        let first = send(&app, &app.key, "Idempotency-Key", "cancel-1", &path, &json!({"reason": "first"})).await;
        let again = send(&app, &app.key, "Idempotency-Key", "cancel-1", &path, &json!({"reason": "first"})).await;
        assert_eq!(first.0, StatusCode::OK);
        assert!(again.1);
        assert_eq!(again.2, first.2);

        let paid = app.create_link().await;
        app.pay(&paid).await;
        let path = format!("/v1/payment-links/{paid}/cancel");
        let refused = send(&app, &app.key, "Idempotency-Key", "cancel-2", &path, &json!({})).await;
        let refused_again = send(&app, &app.key, "Idempotency-Key", "cancel-2", &path, &json!({})).await;
        assert_eq!(refused.0, StatusCode::CONFLICT);
        assert_eq!(refused_again.0, StatusCode::CONFLICT);
        assert!(refused_again.1, "business errors are replayed too");
        assert_eq!(refused_again.2, refused.2);
    }

    async fn a_request_refused_before_it_ran_stores_nothing() {
        let app = TestApp::spawn().await;
        let bad = json!({"amount": -1, "currency": "USD"});
        let (status, _, _) = send(&app, &app.key, "Idempotency-Key", "fix-me", "/v1/payment-links", &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, replayed, _) = send(&app, &app.key, "Idempotency-Key", "fix-me", "/v1/payment-links", &link_body()).await;
        assert_eq!(status, StatusCode::CREATED, "the corrected request runs");
        assert!(!replayed);
        let unauthenticated = send(&app, "pl_test_nope", "Idempotency-Key", "anon", "/v1/payment-links", &link_body()).await;
        assert_eq!(unauthenticated.0, StatusCode::UNAUTHORIZED);
        let (status, _, _) = send(&app, &app.key, "Idempotency-Key", "anon", "/v1/payment-links", &link_body()).await;
        assert_eq!(status, StatusCode::CREATED);
    }

    async fn keys_expire_after_24_hours_and_then_run_anew() {
        let app = TestApp::spawn().await;
        let first = send(&app, &app.key, "Idempotency-Key", "daily", "/v1/payment-links", &link_body()).await;
        app.advance(SignedDuration::from_hours(25));
        let other = json!({"amount": 100, "currency": "USD"});
        let later = send(&app, &app.key, "Idempotency-Key", "daily", "/v1/payment-links", &other).await;
        assert_eq!(later.0, StatusCode::CREATED);
        assert!(!later.1);
        assert_ne!(later.2, first.2);
        assert_eq!(app.service.purge_expired_idempotency_keys().await.unwrap(), 0, "the expired key was replaced");
        app.advance(SignedDuration::from_hours(25));
        assert_eq!(app.service.purge_expired_idempotency_keys().await.unwrap(), 1);
    }

    async fn a_key_must_be_1_to_256_characters() {
        let app = TestApp::spawn().await;
        let long = "k".repeat(257);
        let (status, _, body) = send(&app, &app.key, "Idempotency-Key", &long, "/v1/payment-links", &link_body()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["param"], "Idempotency-Key");
        let exactly = "k".repeat(256);
        let (status, _, _) = send(&app, &app.key, "Idempotency-Key", &exactly, "/v1/payment-links", &link_body()).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(count_links(&app, &app.key).await, 1);
    }
}

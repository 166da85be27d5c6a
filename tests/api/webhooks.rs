//! Webhooks end to end: a real receiver on loopback, real deliveries.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::SignedDuration;
use paylink::server::ServerOptions;
use paylink::service::ServiceSettings;
use paylink::web::rate_limit::RateLimitSettings;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::receiver::{Received, Receiver};

const WAIT: Duration = Duration::from_secs(15);

async fn register(app: &TestApp, body: Value) -> Value {
    let response = app.post("/v1/webhook-endpoints", body).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body
}

/// The id of the link's last event of `event_type`.
async fn event_id(app: &TestApp, link: &str, event_type: &str) -> String {
    let events = app.get(&format!("/v1/payment-links/{link}/events")).await;
    events.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|event| event["type"] == event_type)
        .unwrap_or_else(|| panic!("{link} has a {event_type} event"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn verifies(secret: &str, received: &Received) -> bool {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&received.body, &received.headers)
        .is_ok()
}

/// Polls `GET /v1/events/{id}` until `done` holds for it.
async fn event_when(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = app.get(&format!("/v1/events/{id}")).await;
        assert_eq!(event.status, StatusCode::OK, "{}", event.body);
        if done(&event.body) {
            return event.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "event {id} never reached the expected state: {}",
            event.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn attempts(event: &Value) -> usize {
    event["deliveries"][0]["attempts"]
        .as_array()
        .map_or(0, Vec::len)
}

backend_tests! {
    async fn cancel_delivers_a_signed_event_with_its_reason() {
        let app = TestApp::spawn().await;
        let receiver = Receiver::start().await;
        let endpoint = register(
            &app,
            json!({"url": receiver.url(), "events": ["payment_link.cancelled"], "description": "orders"}),
        )
        .await;
        let secret = endpoint["secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("whsec_"), "{secret}");
        assert_eq!(endpoint["events"], json!(["payment_link.cancelled"]));
        assert_eq!(endpoint["format"], "native");

        let link = app.create_link().await;
        let cancelled = app.cancel(&link, json!({"reason": "Customer changed their mind"})).await;
        assert_eq!(cancelled.status, StatusCode::OK);

        let received = receiver.wait_for(1, WAIT).await;
        let delivery = &received[0];
        assert!(verifies(&secret, delivery), "the reference library verifies the signature");
        assert!(!verifies(&paylink::domain::webhook::signing::new_secret(), delivery));
        let body = delivery.json();
        assert_eq!(body["type"], "payment_link.cancelled");
        assert_eq!(body["reason"], "Customer changed their mind");
        assert_eq!(body["data"]["object"]["id"], link.as_str());
        assert_eq!(body["data"]["object"]["status"], "cancelled");
        assert_eq!(body["data"]["object"]["cancellation_reason"], "Customer changed their mind");
        let id = event_id(&app, &link, "payment_link.cancelled").await;
        assert_eq!(delivery.webhook_id(), id, "webhook-id is the event id");
        assert_eq!(body["id"], id.as_str());

        // The attempt is on record, and the secret is never shown again.
        let event = event_when(&app, &id, |e| e["deliveries"][0]["status"] == "succeeded").await;
        assert_eq!(event["deliveries"][0]["endpoint"], endpoint["id"]);
        assert_eq!(event["deliveries"][0]["attempts"][0]["status_code"], 200);
        assert!(event["deliveries"][0]["attempts"][0]["latency_ms"].is_i64());
        let shown = app.get(&format!("/v1/webhook-endpoints/{}", endpoint["id"].as_str().unwrap())).await;
        assert_eq!(shown.status, StatusCode::OK);
        assert!(shown.body.get("secret").is_none(), "{}", shown.body);
        let listed = app.get("/v1/webhook-endpoints").await;
        assert!(listed.body["data"][0].get("secret").is_none());
        assert_eq!(receiver.received().len(), 1, "the created event was not wanted");

        // Redelivery by hand: the same id again, a second attempt recorded.
        let again = app.post(&format!("/v1/events/{id}/redeliver"), json!({})).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        let received = receiver.wait_for(2, WAIT).await;
        assert_eq!(received[1].webhook_id(), id);
        assert_eq!(received[1].body, received[0].body, "the same payload");
        let event = event_when(&app, &id, |e| attempts(e) == 2 && e["deliveries"][0]["status"] == "succeeded").await;
        assert_eq!(event["deliveries"][0]["attempts"][1]["status_code"], 200);
    }

    /// Finished deliveries and their attempts go after the retention
    /// period (30 days by default); the events stay, and so does a
    /// delivery still being retried.
    async fn finished_deliveries_are_purged_after_retention_and_events_stay() {
        let app = TestApp::spawn_with(ServerOptions {
            sweep_interval: Duration::from_millis(100),
            ..ServerOptions::default()
        })
        .await;
        let receiver = Receiver::start().await;
        register(&app, json!({"url": receiver.url(), "events": ["payment_link.cancelled"]})).await;
        let old = app.create_link().await;
        app.cancel(&old, json!({})).await;
        let old_event = event_id(&app, &old, "payment_link.cancelled").await;
        event_when(&app, &old_event, |e| e["deliveries"][0]["status"] == "succeeded").await;

        // 29 days on: still kept.
        app.advance(SignedDuration::from_hours(29 * 24));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(attempts(&app.get(&format!("/v1/events/{old_event}")).await.body), 1);

        // A delivery still being retried (the receiver fails it) is not finished.
        receiver.answer_next(&[500; 20]);
        let retried = app.create_link().await;
        app.cancel(&retried, json!({})).await;
        let retried_event = event_id(&app, &retried, "payment_link.cancelled").await;
        event_when(&app, &retried_event, |e| attempts(e) >= 1).await;

        // 31 days after the first finished: its delivery and attempts go.
        app.advance(SignedDuration::from_hours(2 * 24));
        event_when(&app, &old_event, |e| e["deliveries"] == json!([])).await;
        let kept = app.get(&format!("/v1/events/{old_event}")).await;
        assert_eq!(kept.body["type"], "payment_link.cancelled", "the event stays");
        let listed = app.get(&format!("/v1/payment-links/{old}/events")).await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);
        let pending = app.get(&format!("/v1/events/{retried_event}")).await;
        assert_eq!(pending.body["deliveries"][0]["status"], "pending", "{}", pending.body);
    }

    /// `/metrics` in Prometheus's text format, without a key: requests by
    /// method, matched route and status, their durations, link
    /// transitions by type, webhook outcomes and lag, and (SQLite) the
    /// writer's group commits. The recorder is the process's, shared by
    /// every test server, so counts only ever grow.
    async fn metrics_count_requests_transitions_and_deliveries() {
        let app = TestApp::spawn().await;
        let receiver = Receiver::start().await;
        register(&app, json!({"url": receiver.url(), "events": ["payment_link.cancelled"]})).await;
        let link = app.create_link().await;
        assert_eq!(app.link(&link).await["status"], "active");
        app.cancel(&link, json!({})).await;
        receiver.wait_for(1, WAIT).await;
        let id = event_id(&app, &link, "payment_link.cancelled").await;
        event_when(&app, &id, |e| e["deliveries"][0]["status"] == "succeeded").await;
        // A method outside HTTP's standard ones gets no label of its own.
        let brewed = app
            .client
            .request(reqwest::Method::from_bytes(b"BREW").unwrap(), format!("{}/v1/payment-links", app.base))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        assert_eq!(brewed.status(), StatusCode::METHOD_NOT_ALLOWED);

        let scraped = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap();
        assert_eq!(scraped.status(), StatusCode::OK);
        assert!(scraped.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        let text = scraped.text().await.unwrap();
        let value = |series: &str| -> f64 {
            text.lines()
                .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
                .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        };
        assert!(value(r#"paylink_http_requests_total{method="GET",route="/v1/payment-links/{id}",status="200"}"#) >= 1.0);
        assert!(value(r#"paylink_http_requests_total{method="POST",route="/v1/payment-links/{id}/cancel",status="200"}"#) >= 1.0);
        assert!(value(r#"paylink_http_request_duration_seconds_count{route="/v1/payment-links/{id}"}"#) >= 1.0);
        assert!(text.contains(r#"paylink_http_request_duration_seconds_bucket{route="/v1/payment-links/{id}",le="0.005"}"#), "a histogram, with buckets");
        assert!(value(r#"paylink_link_transitions_total{type="payment_link.created"}"#) >= 1.0);
        assert!(value(r#"paylink_link_transitions_total{type="payment_link.cancelled"}"#) >= 1.0);
        assert!(value(r#"paylink_webhook_deliveries_total{outcome="succeeded"}"#) >= 1.0);
        assert!(value("paylink_webhook_delivery_lag_seconds_count") >= 1.0);
        if app.database_url.starts_with("sqlite") {
            assert!(value("paylink_store_write_batch_size_count") >= 1.0);
            assert!(text.contains("paylink_store_write_queue_depth"));
        }
        assert!(!text.contains(&link), "no series per link");
        assert!(!text.contains(r#"method="BREW""#), "no series per made-up method");
        assert!(value(r#"paylink_http_requests_total{method="other",route="/v1/payment-links",status="405"}"#) >= 1.0);
    }

    async fn a_receiver_failing_twice_gets_the_event_on_retry() {
        let app = TestApp::spawn().await;
        let receiver = Receiver::start().await;
        register(&app, json!({"url": receiver.url(), "events": ["payment_link.cancelled"]})).await;
        // A redirect is a failure and is not followed; a 500 is a failure.
        receiver.answer_next(&[302, 500]);
        let link = app.create_link().await;
        app.cancel(&link, json!({"reason": "duplicate order"})).await;
        let id = event_id(&app, &link, "payment_link.cancelled").await;

        receiver.wait_for(1, WAIT).await;
        let event = event_when(&app, &id, |e| attempts(e) == 1).await;
        let delivery = &event["deliveries"][0];
        assert_eq!(delivery["status"], "pending");
        assert_eq!(delivery["attempts"][0]["status_code"], 302);
        assert!(delivery["attempts"][0]["error"].as_str().unwrap().contains("redirect"));
        let first_retry: jiff::Timestamp = delivery["next_attempt_at"].as_str().unwrap().parse().unwrap();
        let first_attempt: jiff::Timestamp = delivery["attempts"][0]["attempted_at"].as_str().unwrap().parse().unwrap();
        let backoff = first_retry.duration_since(first_attempt);
        assert!(
            backoff >= SignedDuration::from_secs(5) && backoff < SignedDuration::from_secs(6),
            "retried 5 s after the failure, not {backoff:?}"
        );

        // Time moves on (the clock is shifted, not slept through).
        app.advance(SignedDuration::from_secs(6));
        receiver.wait_for(2, WAIT).await;
        event_when(&app, &id, |e| attempts(e) == 2).await;
        app.advance(SignedDuration::from_mins(5));
        let received = receiver.wait_for(3, WAIT).await;

        assert_eq!(received.iter().map(|r| r.status).collect::<Vec<_>>(), [302, 500, 200]);
        assert!(received.iter().all(|r| r.webhook_id() == id), "one webhook-id across retries");
        assert!(received.iter().all(|r| r.body == received[0].body), "one payload across retries");
        assert_eq!(receiver.redirects_followed(), 0);
        let event = event_when(&app, &id, |e| e["deliveries"][0]["status"] == "succeeded").await;
        let codes: Vec<_> = event["deliveries"][0]["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["status_code"].as_u64().unwrap())
            .collect();
        assert_eq!(codes, [302, 500, 200]);
    }

    async fn a_receiver_down_across_a_restart_gets_every_event_after() {
        let app = TestApp::spawn().await;
        let mut receiver = Receiver::start().await;
        register(&app, json!({"url": receiver.url()})).await;
        receiver.stop().await;

        let mut expected = HashSet::new();
        for _ in 0..3 {
            let link = app.create_link().await;
            expected.insert(event_id(&app, &link, "payment_link.created").await);
        }
        let link = app.create_link().await;
        expected.insert(event_id(&app, &link, "payment_link.created").await);
        app.cancel(&link, json!({})).await;
        expected.insert(event_id(&app, &link, "payment_link.cancelled").await);
        // Every delivery has been tried and refused at least once.
        for id in &expected {
            let event = event_when(&app, id, |e| attempts(e) >= 1).await;
            assert!(event["deliveries"][0]["attempts"][0]["status_code"].is_null());
            assert!(event["deliveries"][0]["attempts"][0]["error"].is_string());
            assert_eq!(event["deliveries"][0]["status"], "pending");
        }

        let app = app.restart().await;
        receiver.restart().await;
        app.advance(SignedDuration::from_secs(6));
        let received = receiver
            .wait_until(WAIT, |received| {
                let ids: HashSet<_> = received.iter().map(|r| r.webhook_id().to_owned()).collect();
                expected.iter().all(|id| ids.contains(id))
            })
            .await;
        let ids: HashSet<_> = received.iter().map(|r| r.webhook_id().to_owned()).collect();
        assert_eq!(ids, expected, "every event, and nothing else");
        for id in &expected {
            event_when(&app, id, |e| e["deliveries"][0]["status"] == "succeeded").await;
        }
    }

    async fn gale_endpoints_receive_the_gale_payload() {
        let app = TestApp::spawn().await;
        let receiver = Receiver::start().await;
        let endpoint = register(
            &app,
            json!({"url": receiver.url(), "events": ["payment_link.cancelled"], "format": "gale"}),
        )
        .await;
        assert_eq!(endpoint["format"], "gale");
        let link = app.create_link().await;
        app.cancel(&link, json!({"reason": "Customer requested cancellation"})).await;
        let received = receiver.wait_for(1, WAIT).await;
        assert!(verifies(endpoint["secret"].as_str().unwrap(), &received[0]));
        let body = received[0].json();
        let cancelled_at = body["data"]["cancelled_at"].as_str().unwrap().to_owned();
        assert_eq!(
            body,
            json!({
                "type": "payment_link.cancelled",
                "data": {
                    "id": link,
                    "status": "cancelled",
                    "cancelled_at": cancelled_at,
                    "cancellation_reason": "Customer requested cancellation",
                }
            })
        );
        assert!(cancelled_at.ends_with('Z') && cancelled_at.len() == 20, "{cancelled_at}");
    }

    async fn after_rotation_both_secrets_verify() {
        let app = TestApp::spawn().await;
        let receiver = Receiver::start().await;
        let endpoint = register(&app, json!({"url": receiver.url(), "events": ["payment_link.cancelled"]})).await;
        let id = endpoint["id"].as_str().unwrap();
        let old = endpoint["secret"].as_str().unwrap();
        let rotated = app.post(&format!("/v1/webhook-endpoints/{id}/rotate-secret"), json!({})).await;
        assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
        let new = rotated.body["secret"].as_str().unwrap();
        assert!(new.starts_with("whsec_") && new != old);
        assert!(rotated.body["previous_secret_expires_at"].is_string());

        let link = app.create_link().await;
        app.cancel(&link, json!({})).await;
        let received = receiver.wait_for(1, WAIT).await;
        let signature = received[0].headers["webhook-signature"].to_str().unwrap();
        assert_eq!(signature.split(' ').count(), 2, "{signature}");
        assert!(verifies(new, &received[0]), "the new secret verifies");
        assert!(verifies(old, &received[0]), "the old secret still verifies");
    }

    async fn a_second_rotation_keeps_the_first_secret_signing() {
        let app = TestApp::spawn().await;
        let receiver = Receiver::start().await;
        let endpoint = register(&app, json!({"url": receiver.url(), "events": ["payment_link.cancelled"]})).await;
        let id = endpoint["id"].as_str().unwrap();
        let first = endpoint["secret"].as_str().unwrap().to_owned();
        let path = format!("/v1/webhook-endpoints/{id}/rotate-secret");
        for body in [json!({"secret": "whsec_mine"}), json!([1])] {
            let refused = app.post(&path, body.clone()).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}: {}", refused.body);
        }
        let second = app.post(&path, json!({})).await.body["secret"].as_str().unwrap().to_owned();
        let third = app.request(reqwest::Method::POST, &path, Some(&app.key.clone()), None).await;
        assert_eq!(third.status, StatusCode::OK, "{}", third.body);
        let third = third.body["secret"].as_str().unwrap().to_owned();

        let link = app.create_link().await;
        app.cancel(&link, json!({})).await;
        let received = receiver.wait_for(1, WAIT).await;
        let signature = received[0].headers["webhook-signature"].to_str().unwrap();
        assert_eq!(signature.split(' ').count(), 3, "{signature}");
        for secret in [&first, &second, &third] {
            assert!(verifies(secret, &received[0]), "{secret} verifies");
        }
    }

    async fn a_410_disables_the_endpoint_until_re_enabled() {
        let app = TestApp::spawn().await;
        let receiver = Receiver::start().await;
        let endpoint = register(&app, json!({"url": receiver.url(), "events": ["payment_link.cancelled"]})).await;
        let endpoint_id = endpoint["id"].as_str().unwrap();
        receiver.answer_next(&[410]);
        let (first, second) = (app.create_link().await, app.create_link().await);
        app.cancel(&first, json!({})).await;
        receiver.wait_for(1, WAIT).await;
        let first_event = event_id(&app, &first, "payment_link.cancelled").await;
        let event = event_when(&app, &first_event, |e| e["deliveries"][0]["status"] == "failed").await;
        assert_eq!(event["deliveries"][0]["attempts"][0]["status_code"], 410);
        let shown = app.get(&format!("/v1/webhook-endpoints/{endpoint_id}")).await;
        assert_eq!(shown.body["enabled"], false);
        assert!(shown.body["disabled_reason"].as_str().unwrap().contains("410"));

        // A disabled endpoint is owed nothing new.
        app.cancel(&second, json!({})).await;
        let second_event = event_id(&app, &second, "payment_link.cancelled").await;
        let event = app.get(&format!("/v1/events/{second_event}")).await;
        assert_eq!(event.body["deliveries"], json!([]));
        let refused = app.post(&format!("/v1/events/{second_event}/redeliver"), json!({"endpoint": endpoint_id})).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(refused.param(), "endpoint");

        // Re-enabled, it gets what is redelivered.
        let enabled = app.patch(&format!("/v1/webhook-endpoints/{endpoint_id}"), json!({"enabled": true})).await;
        assert_eq!(enabled.body["enabled"], true);
        assert!(enabled.body["disabled_reason"].is_null());
        let again = app.post(&format!("/v1/events/{second_event}/redeliver"), json!({})).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        let received = receiver.wait_for(2, WAIT).await;
        assert_eq!(received[1].webhook_id(), second_event);
        assert_eq!(receiver.received().len(), 2);
    }

    async fn endpoint_management_validates_and_is_scoped() {
        let app = TestApp::spawn().await;
        let bad = [
            (json!({}), "url"),
            (json!({"url": "ftp://example.com/hook"}), "url"),
            (json!({"url": "not a url"}), "url"),
            (json!({"url": "https://example.com/hook", "events": []}), "events"),
            (json!({"url": "https://example.com/hook", "events": ["payment_link.disputed"]}), "events"),
            (json!({"url": "https://example.com/hook", "format": "xml"}), "format"),
            (json!({"url": "https://example.com/hook", "secret": "whsec_mine"}), "secret"),
            (json!({"url": "https://example.com/hook", "description": "x".repeat(501)}), "description"),
        ];
        for (body, param) in bad {
            let response = app.post("/v1/webhook-endpoints", body.clone()).await;
            assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}: {}", response.body);
            assert_eq!(response.param(), param, "{body}");
        }
        assert_eq!(
            app.get("/v1/webhook-endpoints").await.body["data"],
            json!([]),
            "bad requests created nothing"
        );

        let endpoint = register(&app, json!({"url": "http://127.0.0.1:9/hook"})).await;
        let id = endpoint["id"].as_str().unwrap();
        assert_eq!(endpoint["events"], json!(["*"]));
        assert_eq!(endpoint["enabled"], true);
        assert_eq!(endpoint["livemode"], false);

        let changed = app
            .patch(&format!("/v1/webhook-endpoints/{id}"), json!({"events": ["payment_link.paid"], "description": "paid orders"}))
            .await;
        assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
        assert_eq!(changed.body["events"], json!(["payment_link.paid"]));
        let refused = app.patch(&format!("/v1/webhook-endpoints/{id}"), json!({"url": "gopher://x"})).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(app.get(&format!("/v1/webhook-endpoints/{id}")).await.body["url"], "http://127.0.0.1:9/hook");

        // Another account, or the live mode, sees none of it.
        let other = app.create_key("another-shop", false).await;
        let live = app.create_key("default", true).await;
        for key in [&other, &live] {
            let response = app.request(reqwest::Method::GET, &format!("/v1/webhook-endpoints/{id}"), Some(key), None).await;
            assert_eq!(response.status, StatusCode::NOT_FOUND);
            let listed = app.request(reqwest::Method::GET, "/v1/webhook-endpoints", Some(key), None).await;
            assert_eq!(listed.body["data"], json!([]));
        }

        let deleted = app.delete(&format!("/v1/webhook-endpoints/{id}")).await;
        assert_eq!(deleted.status, StatusCode::OK);
        assert_eq!(deleted.body, json!({"id": id, "object": "webhook_endpoint", "deleted": true}));
        assert_eq!(app.get(&format!("/v1/webhook-endpoints/{id}")).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.delete(&format!("/v1/webhook-endpoints/{id}")).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get("/v1/webhook-endpoints/we_unknown").await.code(), "not_found");
        assert_eq!(app.get("/v1/webhook-endpoints/nonsense").await.status, StatusCode::NOT_FOUND);
    }

    async fn the_event_log_filters_and_pages() {
        let app = TestApp::spawn().await;
        let (first, second) = (app.create_link().await, app.create_link().await);
        app.cancel(&first, json!({"reason": "r"})).await;

        let all = app.get("/v1/events").await;
        assert_eq!(all.status, StatusCode::OK, "{}", all.body);
        let types: Vec<_> = all.body["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["payment_link.cancelled", "payment_link.created", "payment_link.created"], "newest first");
        assert_eq!(all.body["has_more"], false);

        let cancelled = app.get("/v1/events?type=payment_link.cancelled").await;
        assert_eq!(cancelled.body["data"].as_array().unwrap().len(), 1);
        assert_eq!(cancelled.body["data"][0]["data"]["object"]["id"], first.as_str());
        let of_second = app.get(&format!("/v1/events?payment_link={second}")).await;
        assert_eq!(of_second.body["data"].as_array().unwrap().len(), 1);

        let page = app.get("/v1/events?limit=2").await;
        assert_eq!(page.body["has_more"], true);
        let last = page.body["data"][1]["id"].as_str().unwrap();
        let rest = app.get(&format!("/v1/events?limit=2&starting_after={last}")).await;
        assert_eq!(rest.body["data"].as_array().unwrap().len(), 1);
        assert_eq!(rest.body["has_more"], false);
        assert_eq!(rest.body["data"][0], all.body["data"][2]);

        for (query, param) in [("type=payment_link.disputed", "type"), ("limit=0", "limit"), ("colour=red", "colour"), ("starting_after=evt_nope", "starting_after")] {
            let response = app.get(&format!("/v1/events?{query}")).await;
            assert_eq!(response.status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(response.param(), param, "{query}");
        }

        let other = app.create_key("another-shop", false).await;
        let theirs = app.request(reqwest::Method::GET, "/v1/events", Some(&other), None).await;
        assert_eq!(theirs.body["data"], json!([]));
        let id = all.body["data"][0]["id"].as_str().unwrap();
        let theirs = app.request(reqwest::Method::GET, &format!("/v1/events/{id}"), Some(&other), None).await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND);
        let mine = app.get(&format!("/v1/events/{id}")).await;
        assert_eq!(mine.body["deliveries"], json!([]));
        assert_eq!(app.get("/v1/events/evt_unknown").await.status, StatusCode::NOT_FOUND);
    }

    async fn internal_urls_are_refused_at_registration_unless_allowed() {
        let strict = TestApp::spawn_with_settings(ServerOptions::default(), ServiceSettings::default()).await;
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://2130706433/hook",
            "http://0177.0.0.1/hook",
            "http://10.0.0.5/hook",
            "http://172.16.3.4/hook",
            "http://192.168.1.1/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.1.1/hook",
            "http://0.0.0.0/hook",
            "http://224.0.0.1/hook",
            "http://[::1]/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://[fe80::1]/hook",
            "http://[fd12::1]/hook",
        ] {
            let response = strict.post("/v1/webhook-endpoints", json!({"url": url})).await;
            assert_eq!(response.status, StatusCode::BAD_REQUEST, "{url}: {}", response.body);
            assert_eq!(response.param(), "url");
            let moved = strict.patch("/v1/webhook-endpoints/we_x", json!({"url": url})).await;
            assert_eq!(moved.status, StatusCode::NOT_FOUND);
        }
        let public = strict.post("/v1/webhook-endpoints", json!({"url": "https://93.184.215.14/hook"})).await;
        assert_eq!(public.status, StatusCode::CREATED, "{}", public.body);
        let id = public.id();
        let moved = strict.patch(&format!("/v1/webhook-endpoints/{id}"), json!({"url": "http://169.254.169.254/"})).await;
        assert_eq!(moved.status, StatusCode::BAD_REQUEST);

        let allowed = TestApp::spawn().await;
        let local = allowed.post("/v1/webhook-endpoints", json!({"url": "http://127.0.0.1:8080/hook"})).await;
        assert_eq!(local.status, StatusCode::CREATED, "allowed with PAYLINK_WEBHOOK_ALLOW_PRIVATE");
    }
}

/// Two nodes on one PostgreSQL share a burst of 500 events: each is
/// delivered, and no event is ever in flight from both nodes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_deliver_a_burst_once_at_a_time() {
    crate::helpers::on_postgres(async {
        // Each node gets its own public URL, which the links inside its
        // payloads carry: that is how the receiver tells the senders apart.
        let options = |node: &str| ServerOptions {
            public_url: Some(format!("http://{node}.paylink.test")),
            rate_limits: RateLimitSettings {
                per_second: 100_000,
                burst: 100_000,
                ..RateLimitSettings::default()
            },
            ..ServerOptions::default()
        };
        let first = TestApp::spawn_with(options("first")).await;
        let second = first.second_node_with(options("second")).await;
        let receiver = Receiver::start().await;
        receiver.hold_each_request(Duration::from_millis(5));
        register(
            &first,
            json!({"url": receiver.url(), "events": ["payment_link.cancelled"]}),
        )
        .await;
        for i in 0..500 {
            let node = if i % 2 == 0 { &first } else { &second };
            let created = node
                .create_link_with(
                    json!({"metadata": {"node": if i % 2 == 0 { "first" } else { "second" }}}),
                )
                .await;
            assert_eq!(created.status, StatusCode::CREATED);
        }
        // Each node cancels its half at the same time: both dispatchers wake.
        let (a, b) = tokio::join!(
            first.post(
                "/v1/payment-links/cancel",
                json!({"metadata": {"node": "first"}})
            ),
            second.post(
                "/v1/payment-links/cancel",
                json!({"metadata": {"node": "second"}})
            ),
        );
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(b.status, StatusCode::OK, "{}", b.body);

        let received = receiver
            .wait_until(Duration::from_secs(60), |received| {
                received
                    .iter()
                    .map(Received::webhook_id)
                    .collect::<HashSet<_>>()
                    .len()
                    >= 500
            })
            .await;
        let mut per_id: HashMap<&str, usize> = HashMap::new();
        for delivery in &received {
            *per_id.entry(delivery.webhook_id()).or_default() += 1;
        }
        assert_eq!(per_id.len(), 500, "every event delivered");
        assert_eq!(receiver.overlaps(), 0, "no event in flight twice at once");
        let sent_by = |node: &str| {
            received
                .iter()
                .filter(|r| r.json()["data"]["object"]["url"].as_str().unwrap().starts_with(&format!("http://{node}.")))
                .count()
        };
        let (by_first, by_second) = (sent_by("first"), sent_by("second"));
        assert_eq!(by_first + by_second, received.len());
        assert!(by_first > 0 && by_second > 0, "both nodes delivered ({by_first} and {by_second})");
        let duplicates = per_id.values().filter(|count| **count > 1).count();
        eprintln!("500 events: {by_first} delivered by the first node, {by_second} by the second; {duplicates} more than once");
        assert_eq!(
            duplicates, 0,
            "with a healthy receiver, nothing is sent twice"
        );
    })
    .await;
}

backend_tests! {
    async fn endpoint_secrets_are_sealed_at_rest_and_still_sign() {
        let app = TestApp::spawn_with_settings(ServerOptions::default(), crate::refunds::secrets_settings()).await;
        let receiver = Receiver::start().await;
        let endpoint = register(&app, json!({"url": receiver.url()})).await;
        let secret = endpoint["secret"].as_str().unwrap().to_owned();
        let id = endpoint["id"].as_str().unwrap().to_owned();
        let caller = app.service.authenticate(&app.key).await.unwrap();

        // What the database holds is not the secret.
        let stored = app.store.list_webhook_endpoints(&caller.scope).await.unwrap();
        let stored = stored.iter().find(|e| e.id == id).unwrap();
        assert_ne!(stored.secret, secret);
        assert!(!stored.secret.contains(secret.trim_start_matches("whsec_")));
        assert!(stored.secret.starts_with("v1:"), "{}", stored.secret);

        // Deliveries are still signed with it, and so after a rotation
        // with both secrets (the retired one sealed too).
        let link = app.create_link().await;
        app.cancel(&link, json!({})).await;
        let received = receiver.wait_for(2, WAIT).await;
        assert!(received.iter().all(|r| verifies(&secret, r)));
        let rotated = app.post(&format!("/v1/webhook-endpoints/{id}/rotate-secret"), json!({})).await;
        let new_secret = rotated.body["secret"].as_str().unwrap().to_owned();
        let stored = app.store.list_webhook_endpoints(&caller.scope).await.unwrap();
        let stored = stored.iter().find(|e| e.id == id).unwrap();
        assert!(stored.retired_secrets.iter().all(|r| r.secret.starts_with("v1:")));
        app.create_link().await;
        let received = receiver.wait_for(3, WAIT).await;
        let last = received.last().unwrap();
        assert!(verifies(&secret, last) && verifies(&new_secret, last));
    }

    async fn clear_secrets_are_sealed_when_a_key_is_set() {
        // An endpoint made without a key (stored in clear)...
        let app = TestApp::spawn().await;
        let receiver = Receiver::start().await;
        let endpoint = register(&app, json!({"url": receiver.url()})).await;
        let secret = endpoint["secret"].as_str().unwrap().to_owned();
        let caller = app.service.authenticate(&app.key).await.unwrap();
        let stored = app.store.list_webhook_endpoints(&caller.scope).await.unwrap();
        assert_eq!(stored[0].secret, secret);

        // ... is sealed at the next start with a key, and still opens.
        let service = paylink::service::Service::new(
            std::sync::Arc::clone(&app.store),
            std::sync::Arc::new(paylink::clock::SystemClock),
            crate::refunds::secrets_settings(),
        );
        service.recover_after_start().await.unwrap();
        let stored = app.store.list_webhook_endpoints(&caller.scope).await.unwrap();
        assert!(stored[0].secret.starts_with("v1:"));
        let id = endpoint["id"].as_str().unwrap();
        assert_eq!(service.get_webhook_endpoint(&caller, id).await.unwrap().secret, secret);
        // Without the key, a database with sealed secrets is refused.
        assert!(app.service.recover_after_start().await.is_err());
    }
}

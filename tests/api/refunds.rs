//! Refunds through the built-in test processor, over real HTTP: full and
//! partial, over-refunds refused, concurrent refunds bounded by the amount,
//! idempotency, events; and live links refused without a processor.

use reqwest::{Method, StatusCode};
use serde_json::json;

use paylink::payments::ProcessorSettings;
use paylink::secrets::SecretsKey;
use paylink::server::ServerOptions;
use paylink::service::{ProcessorChoice, ServiceSettings};

use crate::helpers::TestApp;

async fn paid_link(app: &TestApp, amount: i64) -> String {
    let id = app
        .create_link_with(json!({"amount": amount, "currency": "EUR"}))
        .await
        .id();
    app.pay(&id).await;
    id
}

async fn refund(app: &TestApp, id: &str, body: serde_json::Value) -> crate::helpers::Response {
    app.post(&format!("/v1/payment-links/{id}/refunds"), body)
        .await
}

/// Connects account `name` to Stripe (with keys that are never called).
pub async fn connect_stripe(app: &TestApp, name: &str, live: bool) {
    let mode = if live { "live" } else { "test" };
    app.service
        .set_processor(
            name,
            live,
            ProcessorChoice::Stripe(paylink::payments::stripe::StripeConfig {
                secret_key: format!("sk_{mode}_123"),
                publishable_key: format!("pk_{mode}_123"),
                webhook_secret: "whsec_123".into(),
            }),
        )
        .await
        .unwrap();
}

/// Settings with a secrets key, so processors can be configured.
pub fn secrets_settings() -> ServiceSettings {
    ServiceSettings {
        webhook_allow_private: true,
        processors: ProcessorSettings {
            secrets_key: Some(
                SecretsKey::parse("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap(),
            ),
            ..ProcessorSettings::default()
        },
        ..ServiceSettings::default()
    }
}

backend_tests! {
    async fn a_full_refund_gives_everything_back_with_its_events() {
        let app = TestApp::spawn().await;
        let id = paid_link(&app, 4995).await;

        let response = refund(&app, &id, json!({"reason": "Customer returned the item"})).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        assert_eq!(response.body["object"], "refund");
        assert_eq!(response.body["status"], "succeeded");
        assert_eq!(response.body["amount"], 4995);
        assert_eq!(response.body["currency"], "EUR");
        assert_eq!(response.body["reason"], "Customer returned the item");
        assert_eq!(response.body["payment_link"], id.as_str());
        assert!(response.body["id"].as_str().unwrap().starts_with("re_"));
        assert!(response.body["processor_refund_id"].is_string());

        let link = app.link(&id).await;
        assert_eq!(link["status"], "paid");
        assert_eq!(link["amount_refunded"], 4995);
        let types = app.event_types(&id).await;
        assert_eq!(
            &types[types.len() - 2..],
            ["payment_link.refund_created", "payment_link.refunded"]
        );
        let events = app.get(&format!("/v1/events?type=payment_link.refunded&payment_link={id}")).await;
        let event = &events.body["data"][0];
        assert_eq!(event["data"]["refund"]["status"], "succeeded");
        assert_eq!(event["data"]["object"]["amount_refunded"], 4995);

        let listed = app.get(&format!("/v1/payment-links/{id}/refunds")).await;
        assert_eq!(listed.status, StatusCode::OK);
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);

        // Nothing is left: a second refund is refused and changes nothing.
        let again = refund(&app, &id, json!({})).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
        assert_eq!(again.code(), "invalid_state");
        assert_eq!(app.event_types(&id).await.len(), types.len());
    }

    async fn partial_refunds_add_up_to_the_amount_and_never_past_it() {
        let app = TestApp::spawn().await;
        let id = paid_link(&app, 1000).await;

        assert_eq!(refund(&app, &id, json!({"amount": 300})).await.status, StatusCode::CREATED);
        let over = refund(&app, &id, json!({"amount": 701})).await;
        assert_eq!(over.status, StatusCode::BAD_REQUEST, "{}", over.body);
        assert_eq!(over.param(), "amount");
        assert!(over.body["error"]["message"].as_str().unwrap().contains("700"));
        assert_eq!(app.link(&id).await["amount_refunded"], 300);

        // The default is what is left.
        let rest = refund(&app, &id, json!({})).await;
        assert_eq!(rest.status, StatusCode::CREATED);
        assert_eq!(rest.body["amount"], 700);
        assert_eq!(app.link(&id).await["amount_refunded"], 1000);
        let listed = app.get(&format!("/v1/payment-links/{id}/refunds")).await;
        let amounts: Vec<i64> = listed.body["data"].as_array().unwrap().iter().map(|r| r["amount"].as_i64().unwrap()).collect();
        assert_eq!(amounts, [300, 700]);
    }

    async fn bad_refunds_are_refused_and_change_nothing() {
        let app = TestApp::spawn().await;
        let active = app.create_link().await;
        let unpaid = refund(&app, &active, json!({})).await;
        assert_eq!(unpaid.status, StatusCode::CONFLICT);
        assert!(unpaid.body["error"]["message"].as_str().unwrap().contains("Only a paid link"));

        let id = paid_link(&app, 500).await;
        let events = app.event_types(&id).await.len();
        for (body, param) in [
            (json!({"amount": 0}), "amount"),
            (json!({"amount": -5}), "amount"),
            (json!({"amount": 12.5}), "amount"),
            (json!({"reason": "x".repeat(501)}), "reason"),
            (json!({"amount": 100, "currency": "USD"}), "currency"),
        ] {
            let response = refund(&app, &id, body.clone()).await;
            assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}: {}", response.body);
            assert_eq!(response.param(), param, "{body}");
        }
        let missing = refund(&app, "plink_000000000000000000000000", json!({})).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(app.link(&id).await["amount_refunded"], 0);
        assert_eq!(app.event_types(&id).await.len(), events);
    }

    async fn ten_concurrent_refunds_never_exceed_the_amount() {
        let app = TestApp::spawn().await;
        let id = paid_link(&app, 100).await;
        let answers = futures::future::join_all(
            (0..10).map(|_| refund(&app, &id, json!({"amount": 30}))),
        )
        .await;
        let created = answers.iter().filter(|a| a.status == StatusCode::CREATED).count();
        assert_eq!(created, 3, "{:?}", answers.iter().map(|a| (a.status, a.body.to_string())).collect::<Vec<_>>());
        for answer in answers.iter().filter(|a| a.status != StatusCode::CREATED) {
            assert!(
                answer.status == StatusCode::BAD_REQUEST || answer.status == StatusCode::CONFLICT,
                "{} {}", answer.status, answer.body
            );
        }
        assert_eq!(app.link(&id).await["amount_refunded"], 90);
        let listed = app.get(&format!("/v1/payment-links/{id}/refunds")).await;
        let total: i64 = listed.body["data"].as_array().unwrap().iter().map(|r| r["amount"].as_i64().unwrap()).sum();
        assert_eq!(total, 90);
    }

    async fn an_idempotency_key_makes_one_refund() {
        let app = TestApp::spawn().await;
        let id = paid_link(&app, 800).await;
        let send = || async {
            let response = app
                .client
                .post(format!("{}/v1/payment-links/{id}/refunds", app.base))
                .bearer_auth(&app.key)
                .header("Idempotency-Key", "refund-once")
                .json(&json!({"amount": 200}))
                .send()
                .await
                .unwrap();
            TestApp::read(response).await
        };
        let first = send().await;
        let second = send().await;
        assert_eq!(first.status, StatusCode::CREATED);
        assert_eq!(second.body["id"], first.body["id"]);
        assert_eq!(app.link(&id).await["amount_refunded"], 200);
    }

    async fn a_live_link_needs_a_processor() {
        let app = TestApp::spawn_with_settings(ServerOptions::default(), secrets_settings()).await;
        let live = app.create_key("default", true).await;
        let create = || app.request(
            Method::POST,
            "/v1/payment-links",
            Some(&live),
            Some(json!({"amount": 100, "currency": "EUR"})),
        );
        let refused = create().await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        assert!(refused.body["error"]["message"].as_str().unwrap().contains("paylink accounts set-processor"));

        connect_stripe(&app, "default", true).await;
        let created = create().await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!(created.body["livemode"], true);
    }
}

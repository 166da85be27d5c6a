//! API keys: both header forms, 401s, suspension, and isolation between
//! accounts and modes (404, never 403, and nothing changes).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

backend_tests! {
    async fn a_missing_or_wrong_key_is_401() {
        let app = TestApp::spawn().await;
        for key in [
            None,
            Some("pl_test_wrongwrongwrongwrongwrongwrong"),
            Some("sk_live_other"),
            Some(""),
        ] {
            let response = app
                .request(Method::GET, "/v1/payment-links", key, None)
                .await;
            assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{key:?}");
            assert_eq!(response.code(), "unauthorized");
            assert_eq!(response.body["error"]["type"], "authentication_error");
        }
        let create = app
            .request(
                Method::POST,
                "/v1/payment-links",
                None,
                Some(json!({"amount": 100, "currency": "USD"})),
            )
            .await;
        assert_eq!(create.status, StatusCode::UNAUTHORIZED);
    }

    async fn x_api_key_and_bearer_both_authenticate() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        let response = app
            .client
            .get(format!("{}/v1/payment-links/{id}", app.base))
            .header("X-API-Key", &app.key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    async fn a_suspended_account_gets_403_and_can_be_resumed() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        app.service
            .set_account_suspended("default", true)
            .await
            .unwrap();

        let response = app.get(&format!("/v1/payment-links/{id}")).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN);
        assert_eq!(response.code(), "account_suspended");
        let cancel = app.cancel(&id, json!({})).await;
        assert_eq!(cancel.status, StatusCode::FORBIDDEN);

        app.service
            .set_account_suspended("default", false)
            .await
            .unwrap();
        assert_eq!(app.link(&id).await["status"], "active");
    }

    async fn another_account_or_mode_sees_404_on_every_endpoint_with_an_id_and_changes_nothing() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        let other_account = app.create_key("acme", false).await;
        let same_account_live = app.create_key("default", true).await;

        for key in [&other_account, &same_account_live] {
            let calls = [
                (Method::GET, format!("/v1/payment-links/{id}"), None),
                (
                    Method::PATCH,
                    format!("/v1/payment-links/{id}"),
                    Some(json!({"description": "hijacked"})),
                ),
                (
                    Method::POST,
                    format!("/v1/payment-links/{id}/cancel"),
                    Some(json!({"reason": "hijacked"})),
                ),
                (Method::GET, format!("/v1/payment-links/{id}/events"), None),
            ];
            for (method, path, body) in calls {
                let response = app.request(method.clone(), &path, Some(key), body).await;
                assert_eq!(response.status, StatusCode::NOT_FOUND, "{method} {path}");
                assert_eq!(response.code(), "not_found");
            }
            let list = app
                .request(Method::GET, "/v1/payment-links", Some(key), None)
                .await;
            assert_eq!(list.body["data"], json!([]));
            let bulk = app
                .request(
                    Method::POST,
                    "/v1/payment-links/cancel",
                    Some(key),
                    Some(json!({"reason": "all", "all": true})),
                )
                .await;
            assert_eq!(bulk.body["data"], json!([]));
        }

        let link = app.link(&id).await;
        assert_eq!(link["status"], "active");
        assert_eq!(link["description"], "Premium Blood Pressure Monitor");
        assert_eq!(app.event_types(&id).await, ["payment_link.created"]);
    }

    async fn a_live_key_creates_live_links() {
        let app = TestApp::spawn_with_settings(Default::default(), crate::refunds::secrets_settings()).await;
        crate::refunds::connect_stripe(&app, "default", true).await;
        let live = app.create_key("default", true).await;
        assert!(live.starts_with("pl_live_"));
        let response = app
            .request(
                Method::POST,
                "/v1/payment-links",
                Some(&live),
                Some(json!({"amount": 100, "currency": "EUR"})),
            )
            .await;
        assert_eq!(response.status, StatusCode::CREATED);
        assert_eq!(response.body["livemode"], true);
    }
}

//! The cancel table of DESIGN.md §2, row by row.

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

backend_tests! {
    async fn cancelling_an_active_link_cancels_it_with_reason_and_one_event() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;

        let response = app
            .cancel(&id, json!({"reason": "Customer requested cancellation"}))
            .await;

        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert_eq!(response.body["status"], "cancelled");
        assert_eq!(
            response.body["cancellation_reason"],
            "Customer requested cancellation"
        );
        assert!(response.body["cancelled_at"].is_string());
        assert_eq!(app.link(&id).await["status"], "cancelled");
        assert_eq!(
            app.event_types(&id).await,
            ["payment_link.created", "payment_link.cancelled"]
        );
    }

    async fn cancelling_without_a_body_or_reason_works() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        let response = app
            .client
            .post(format!("{}/v1/payment-links/{id}/cancel", app.base))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        let response = TestApp::read(response).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert_eq!(response.body["status"], "cancelled");
        assert!(response.body["cancellation_reason"].is_null());
    }

    async fn cancelling_again_returns_the_link_unchanged_without_a_new_event() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        let first = app.cancel(&id, json!({"reason": "first"})).await;

        let second = app.cancel(&id, json!({"reason": "second"})).await;

        assert_eq!(second.status, StatusCode::OK);
        assert_eq!(second.body["cancelled_at"], first.body["cancelled_at"]);
        assert_eq!(second.body["cancellation_reason"], "first");
        assert_eq!(second.body["updated_at"], first.body["updated_at"]);
        assert_eq!(
            app.event_types(&id).await,
            ["payment_link.created", "payment_link.cancelled"]
        );
    }

    async fn a_paid_link_cannot_be_cancelled() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        app.pay(&id).await;

        let response = app.cancel(&id, json!({})).await;

        assert_eq!(response.status, StatusCode::CONFLICT);
        assert_eq!(response.code(), "invalid_state");
        assert!(
            response.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("refund")
        );
        let link = app.link(&id).await;
        assert_eq!(link["status"], "paid");
        assert!(link["payment_id"].as_str().unwrap().starts_with("pay_"));
        assert!(link["cancelled_at"].is_null());
        assert_eq!(
            app.event_types(&id).await,
            [
                "payment_link.created",
                "payment_link.processing",
                "payment_link.paid"
            ]
        );
    }

    async fn a_link_with_a_payment_in_progress_cannot_be_cancelled() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        app.start_payment(&id).await;

        let response = app.cancel(&id, json!({})).await;

        assert_eq!(response.status, StatusCode::CONFLICT);
        assert_eq!(response.code(), "invalid_state");
        assert_eq!(app.link(&id).await["status"], "processing");
    }

    async fn an_expired_link_cannot_be_cancelled_and_its_expiry_is_recorded_once() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        app.advance(SignedDuration::from_hours(15 * 24));

        let response = app.cancel(&id, json!({"reason": "too late"})).await;
        let again = app.cancel(&id, json!({})).await;

        assert_eq!(response.status, StatusCode::CONFLICT);
        assert_eq!(response.code(), "invalid_state");
        assert_eq!(again.status, StatusCode::CONFLICT);
        let link = app.link(&id).await;
        assert_eq!(link["status"], "expired");
        assert!(link["cancelled_at"].is_null());
        assert_eq!(
            app.event_types(&id).await,
            ["payment_link.created", "payment_link.expired"]
        );
    }

    async fn a_reason_over_500_characters_is_refused_and_changes_nothing() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;

        let response = app.cancel(&id, json!({"reason": "é".repeat(501)})).await;

        assert_eq!(response.status, StatusCode::BAD_REQUEST);
        assert_eq!(response.code(), "invalid_request");
        assert_eq!(response.param(), "reason");
        assert_eq!(app.link(&id).await["status"], "active");
        let message = app.cancel(&id, json!({"customer_message": "é".repeat(501)})).await;
        assert_eq!(message.status, StatusCode::BAD_REQUEST);
        assert_eq!(message.param(), "customer_message");
        assert_eq!(app.link(&id).await["status"], "active");
        let exactly_500 = app
            .cancel(&id, json!({"reason": "é".repeat(500), "customer_message": "ü".repeat(500)}))
            .await;
        assert_eq!(exactly_500.status, StatusCode::OK);
        assert_eq!(exactly_500.body["customer_message"], "ü".repeat(500));
        // The event carries both, as the link was left.
        let events = app.get(&format!("/v1/payment-links/{id}/events")).await;
        let cancelled = &events.body["data"][1];
        assert_eq!(cancelled["type"], "payment_link.cancelled");
        assert_eq!(cancelled["data"]["object"]["customer_message"], "ü".repeat(500));
    }

    async fn cancelling_an_unknown_link_is_404() {
        let app = TestApp::spawn().await;
        for id in ["plink_doesnotexist000000000000", "not-an-id"] {
            let response = app.cancel(id, json!({})).await;
            assert_eq!(response.status, StatusCode::NOT_FOUND, "{id}");
            assert_eq!(response.code(), "not_found");
        }
    }

    async fn concurrent_cancels_of_one_link_make_exactly_one_event() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;

        let attempts = (0..20).map(|i| app.cancel(&id, json!({"reason": format!("attempt {i}")})));
        let responses = futures::future::join_all(attempts).await;

        let reasons: std::collections::HashSet<_> = responses
            .iter()
            .map(|r| {
                assert_eq!(r.status, StatusCode::OK, "{}", r.body);
                r.body["cancellation_reason"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            reasons.len(),
            1,
            "every caller sees the one winner's reason"
        );
        assert_eq!(
            app.event_types(&id).await,
            ["payment_link.created", "payment_link.cancelled"]
        );
    }
}

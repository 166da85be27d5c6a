//! PATCH: expires_at, metadata and description, only while active.

use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

backend_tests! {
    async fn many_changes_of_one_link_at_once_all_go_through() {
        // Each change reads the link and writes it only if no other did
        // meanwhile; a loser reads again. Forty at once must all land in
        // turn, none giving up as contention.
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        let path = format!("/v1/payment-links/{id}");
        let answers = futures::future::join_all((0..40).map(|i| {
            let (app, path) = (&app, &path);
            async move {
                app.patch(path, json!({"description": format!("Version {i}")}))
                    .await
            }
        }))
        .await;
        for answer in &answers {
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        }
        let events = app.event_types(&id).await;
        assert_eq!(events.len(), 41, "{events:?}");
    }

    async fn an_active_link_can_be_retimed_and_annotated_with_an_event() {
        let app = TestApp::spawn().await;
        let id = app
            .create_link_with(json!({"metadata": {"a": "1", "b": "2"}}))
            .await
            .id();
        let new_expiry = Timestamp::now() + SignedDuration::from_hours(48);

        let response = app
            .patch(
                &format!("/v1/payment-links/{id}"),
                json!({"expires_at": new_expiry.to_string(), "metadata": {"b": "", "c": "3"}, "description": "Renamed"}),
            )
            .await;

        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert_eq!(response.body["metadata"], json!({"a": "1", "c": "3"}));
        assert_eq!(response.body["description"], "Renamed");
        let stored: Timestamp = response.body["expires_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(stored.as_second(), new_expiry.as_second());
        assert_eq!(response.body["amount"], 4995);
        let events = app.get(&format!("/v1/payment-links/{id}/events")).await;
        let updated = &events.body["data"][1];
        assert_eq!(updated["type"], "payment_link.updated");
        assert_eq!(
            updated["data"]["previous_attributes"]["description"],
            "Premium Blood Pressure Monitor"
        );
        assert_eq!(
            updated["data"]["previous_attributes"]["metadata"],
            json!({"a": "1", "b": "2"})
        );

        let cleared = app
            .patch(
                &format!("/v1/payment-links/{id}"),
                json!({"description": null}),
            )
            .await;
        assert!(cleared.body["description"].is_null());
    }

    async fn an_update_that_changes_nothing_records_nothing() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        let response = app
            .patch(&format!("/v1/payment-links/{id}"), json!({}))
            .await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(app.event_types(&id).await, ["payment_link.created"]);
    }

    async fn expires_at_in_the_past_or_over_a_year_ahead_is_400() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        for at in [
            Timestamp::now() - SignedDuration::from_secs(60),
            Timestamp::now() + SignedDuration::from_hours(24 * 400),
        ] {
            let response = app
                .patch(
                    &format!("/v1/payment-links/{id}"),
                    json!({"expires_at": at.to_string()}),
                )
                .await;
            assert_eq!(response.status, StatusCode::BAD_REQUEST);
            assert_eq!(response.param(), "expires_at");
        }
        assert_eq!(app.event_types(&id).await, ["payment_link.created"]);
    }

    async fn only_active_links_can_be_updated() {
        let app = TestApp::spawn().await;
        let cancelled = app.create_link().await;
        app.cancel(&cancelled, json!({})).await;
        let paid = app.create_link().await;
        app.pay(&paid).await;
        let expired = app
            .create_link_with(
                json!({"expires_at": (Timestamp::now() + SignedDuration::from_hours(1)).to_string()}),
            )
            .await
            .id();
        app.advance(SignedDuration::from_hours(2));

        for id in [&cancelled, &paid, &expired] {
            let response = app
                .patch(
                    &format!("/v1/payment-links/{id}"),
                    json!({"description": "late"}),
                )
                .await;
            assert_eq!(response.status, StatusCode::CONFLICT, "{id}");
            assert_eq!(response.code(), "invalid_state");
            assert_ne!(app.link(id).await["description"], "late");
        }
    }

    async fn server_owned_and_unknown_fields_cannot_be_patched() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        for (body, param) in [
            (json!({"status": "paid"}), "status"),
            (json!({"amount": 1}), "amount"),
            (json!({"currency": "EUR"}), "currency"),
            (
                json!({"cancelled_at": "2030-01-01T00:00:00Z"}),
                "cancelled_at",
            ),
        ] {
            let response = app.patch(&format!("/v1/payment-links/{id}"), body).await;
            assert_eq!(response.status, StatusCode::BAD_REQUEST);
            assert_eq!(response.param(), param);
        }
        let link = app.link(&id).await;
        assert_eq!(link["status"], "active");
        assert_eq!(link["amount"], 4995);
    }
}

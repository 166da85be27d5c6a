//! Bulk cancel (with and without dry_run), stats, and the audit trail.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

backend_tests! {
    async fn a_dry_run_reports_and_changes_nothing() {
        let app = TestApp::spawn().await;
        let a = app
            .create_link_with(json!({"metadata": {"campaign": "spring"}}))
            .await
            .id();
        let b = app
            .create_link_with(json!({"metadata": {"campaign": "spring"}}))
            .await
            .id();
        let paid = app
            .create_link_with(json!({"metadata": {"campaign": "spring"}}))
            .await
            .id();
        app.pay(&paid).await;
        let other = app
            .create_link_with(json!({"metadata": {"campaign": "autumn"}}))
            .await
            .id();

        let response = app
            .post(
                "/v1/payment-links/cancel",
                json!({"metadata": {"campaign": "spring"}, "dry_run": true, "reason": "campaign over"}),
            )
            .await;

        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert_eq!(response.body["dry_run"], true);
        let outcomes: Vec<(String, String)> = response.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                (
                    item["id"].as_str().unwrap().to_owned(),
                    item["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                (paid.clone(), "refused".to_owned()),
                (b.clone(), "would_cancel".to_owned()),
                (a.clone(), "would_cancel".to_owned())
            ]
        );
        assert_eq!(
            response.body["summary"],
            json!({"would_cancel": 2, "refused": 1})
        );
        for id in [&a, &b, &other] {
            assert_eq!(app.link(id).await["status"], "active");
            assert_eq!(app.event_types(id).await, ["payment_link.created"]);
        }
    }

    async fn bulk_cancel_cancels_matching_links_and_reports_each() {
        let app = TestApp::spawn().await;
        let mut spring = Vec::new();
        for _ in 0..4 {
            spring.push(
                app.create_link_with(json!({"order_reference": "BATCH-1"}))
                    .await
                    .id(),
            );
        }
        app.cancel(&spring[0], json!({"reason": "earlier"})).await;
        let other = app
            .create_link_with(json!({"order_reference": "BATCH-2"}))
            .await
            .id();

        let response = app
            .post(
                "/v1/payment-links/cancel",
                json!({"order_reference": "BATCH-1", "reason": "batch withdrawn"}),
            )
            .await;

        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert_eq!(response.body["has_more"], false);
        assert_eq!(
            response.body["summary"],
            json!({"cancelled": 3, "already_cancelled": 1})
        );
        for item in response.body["data"].as_array().unwrap() {
            assert_eq!(item["status"], "cancelled");
        }
        for id in &spring[1..] {
            let link = app.link(id).await;
            assert_eq!(link["cancellation_reason"], "batch withdrawn");
            assert_eq!(
                app.event_types(id).await,
                ["payment_link.created", "payment_link.cancelled"]
            );
        }
        assert_eq!(app.link(&spring[0]).await["cancellation_reason"], "earlier");
        assert_eq!(app.link(&other).await["status"], "active");
    }

    async fn bulk_cancel_pages_with_has_more() {
        let app = TestApp::spawn().await;
        for _ in 0..5 {
            app.create_link().await;
        }
        let first = app
            .post(
                "/v1/payment-links/cancel",
                json!({"status": "active", "limit": 3}),
            )
            .await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.body);
        assert_eq!(first.body["data"].as_array().unwrap().len(), 3);
        assert_eq!(first.body["has_more"], true);
        let second = app
            .post(
                "/v1/payment-links/cancel",
                json!({"status": "active", "limit": 3}),
            )
            .await;
        assert_eq!(second.body["data"].as_array().unwrap().len(), 2);
        assert_eq!(second.body["has_more"], false);
        let stats = app.get("/v1/payment-links/stats").await;
        assert_eq!(stats.body["count_by_status"]["cancelled"], 5);
        let too_many = app
            .post("/v1/payment-links/cancel", json!({"limit": 1001}))
            .await;
        assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
        assert_eq!(too_many.param(), "limit");
        let long_reason = app
            .post(
                "/v1/payment-links/cancel",
                json!({"reason": "x".repeat(501), "all": true}),
            )
            .await;
        assert_eq!(long_reason.param(), "reason");
    }

    async fn bulk_cancel_without_a_filter_needs_all_true() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        for body in [json!({}), json!({"reason": "oops"}), json!({"all": false}), json!({"limit": 10})] {
            let refused = app.post("/v1/payment-links/cancel", body.clone()).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}: {}", refused.body);
            assert_eq!(refused.param(), "all");
        }
        let empty = app
            .request(reqwest::Method::POST, "/v1/payment-links/cancel", Some(&app.key.clone()), None)
            .await;
        assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.body);
        assert_eq!(app.link(&id).await["status"], "active");
        let all = app.post("/v1/payment-links/cancel", json!({"all": true})).await;
        assert_eq!(all.status, StatusCode::OK, "{}", all.body);
        assert_eq!(app.link(&id).await["status"], "cancelled");
    }

    async fn stats_count_and_sum_by_status_and_currency() {
        let app = TestApp::spawn().await;
        for (amount, currency) in [(1000, "USD"), (2500, "USD"), (700, "EUR"), (300, "JPY")] {
            app.post(
                "/v1/payment-links",
                json!({"amount": amount, "currency": currency}),
            )
            .await;
        }
        let cancelled = app
            .post(
                "/v1/payment-links",
                json!({"amount": 4000, "currency": "USD"}),
            )
            .await
            .id();
        app.cancel(&cancelled, json!({})).await;
        let paid = app
            .post(
                "/v1/payment-links",
                json!({"amount": 9900, "currency": "EUR"}),
            )
            .await
            .id();
        app.pay(&paid).await;
        // Another account's links never count.
        let other = app.create_key("acme", false).await;
        app.request(
            reqwest::Method::POST,
            "/v1/payment-links",
            Some(&other),
            Some(json!({"amount": 1, "currency": "USD"})),
        )
        .await;

        let stats = app.get("/v1/payment-links/stats").await;

        assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
        assert_eq!(
            stats.body["count_by_status"],
            json!({"active": 4, "processing": 0, "paid": 1, "expired": 0, "cancelled": 1})
        );
        assert_eq!(
            stats.body["data"],
            json!([
                {"status": "active", "currency": "EUR", "count": 1, "amount": 700},
                {"status": "active", "currency": "JPY", "count": 1, "amount": 300},
                {"status": "active", "currency": "USD", "count": 2, "amount": 3500},
                {"status": "cancelled", "currency": "USD", "count": 1, "amount": 4000},
                {"status": "paid", "currency": "EUR", "count": 1, "amount": 9900},
            ])
        );
        let future = app
            .get("/v1/payment-links/stats?created_after=2100-01-01T00:00:00Z")
            .await;
        assert_eq!(future.body["data"], json!([]));
    }

    async fn the_audit_trail_lists_every_event_oldest_first_with_actor_and_reason() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        app.patch(
            &format!("/v1/payment-links/{id}"),
            json!({"metadata": {"note": "vip"}}),
        )
        .await;
        app.cancel(&id, json!({"reason": "Order cancelled by customer"}))
            .await;

        let trail = app.get(&format!("/v1/payment-links/{id}/events")).await;

        assert_eq!(trail.status, StatusCode::OK);
        let events = trail.body["data"].as_array().unwrap();
        let types: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "payment_link.created",
                "payment_link.updated",
                "payment_link.cancelled"
            ]
        );
        for event in events {
            assert!(event["id"].as_str().unwrap().starts_with("evt_"));
            assert_eq!(event["actor"]["type"], "api_key");
            assert!(event["actor"]["id"].as_str().unwrap().starts_with("key_"));
            assert!(
                !event.to_string().contains(&app.key),
                "the secret never appears"
            );
            assert_eq!(event["data"]["object"]["id"], id.as_str());
        }
        assert_eq!(events[2]["reason"], "Order cancelled by customer");
        assert_eq!(events[2]["data"]["object"]["status"], "cancelled");
        assert_eq!(events[0]["data"]["object"]["status"], "active");
    }
}

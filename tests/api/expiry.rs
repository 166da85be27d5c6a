//! Expiry: at read time, on writes, by the sweeper, and across restarts.

use std::time::Duration;

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

backend_tests! {
    async fn a_link_past_expires_at_reads_as_expired_before_any_sweep() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        let other = app.create_link().await;
        app.cancel(&other, json!({})).await;
        app.advance(SignedDuration::from_hours(14 * 24 + 1));

        assert_eq!(app.link(&id).await["status"], "expired");
        let expired = app.get("/v1/payment-links?status=expired").await;
        assert_eq!(expired.body["data"].as_array().unwrap().len(), 1);
        assert_eq!(expired.body["data"][0]["id"], id.as_str());
        let active = app.get("/v1/payment-links?status=active").await;
        assert_eq!(active.body["data"], json!([]));
        let stats = app.get("/v1/payment-links/stats").await;
        assert_eq!(stats.body["count_by_status"]["expired"], 1);
        assert_eq!(stats.body["count_by_status"]["active"], 0);
        // Reads never write: the expiry event is stored by a write or the sweeper.
        assert_eq!(app.event_types(&id).await, ["payment_link.created"]);
    }

    async fn the_sweeper_stores_expiry_with_exactly_one_event() {
        let app = TestApp::spawn_with_sweeper(Duration::from_millis(50)).await;
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(app.create_link().await);
        }
        let keeps = app
            .create_link_with(json!({"expires_at": (jiff::Timestamp::now() + SignedDuration::from_hours(30 * 24)).to_string()}))
            .await
            .id();
        app.advance(SignedDuration::from_hours(15 * 24));

        // Wait (bounded) for the sweeper to store them; not a timing assertion.
        for _ in 0..100 {
            let mut all_swept = true;
            for id in &ids {
                all_swept &= app.event_types(id).await.len() == 2;
            }
            if all_swept {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let several more sweeps run: none may add a second event.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for id in &ids {
            assert_eq!(
                app.event_types(id).await,
                ["payment_link.created", "payment_link.expired"]
            );
        }
        assert_eq!(app.link(&keeps).await["status"], "active");
        assert_eq!(app.event_types(&keeps).await, ["payment_link.created"]);
    }

    async fn the_sweeper_and_a_write_never_both_record_expiry() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        app.advance(SignedDuration::from_hours(15 * 24));

        let (sweep, cancel) = tokio::join!(
            app.service.expire_due_links(100),
            app.cancel(&id, json!({}))
        );

        assert!(sweep.unwrap() <= 1);
        assert_eq!(cancel.status, StatusCode::CONFLICT);
        assert_eq!(app.service.expire_due_links(100).await.unwrap(), 0);
        assert_eq!(
            app.event_types(&id).await,
            ["payment_link.created", "payment_link.expired"]
        );
    }

    async fn a_failed_payment_after_expiry_leaves_the_link_expired() {
        let app = TestApp::spawn().await;
        let id = app.create_link().await;
        app.start_payment(&id).await;
        app.advance(SignedDuration::from_hours(15 * 24));

        // Processing links are not expired until the attempt resolves.
        assert_eq!(app.link(&id).await["status"], "processing");
        assert_eq!(app.service.expire_due_links(100).await.unwrap(), 0);
        let slug = app.link(&id).await["slug"].as_str().unwrap().to_owned();
        app.service
            .fail_payment(&slug, "Your card was declined.")
            .await
            .unwrap();

        assert_eq!(app.link(&id).await["status"], "expired");
        assert_eq!(
            app.event_types(&id).await,
            [
                "payment_link.created",
                "payment_link.processing",
                "payment_link.payment_failed",
                "payment_link.expired"
            ]
        );
    }

    async fn links_and_events_survive_a_restart() {
        let app = TestApp::spawn().await;
        let kept = app
            .create_link_with(json!({"metadata": {"order_id": "ORD-1"}}))
            .await
            .id();
        let cancelled = app.create_link().await;
        app.cancel(&cancelled, json!({"reason": "persist me"}))
            .await;

        let app = app.restart().await;

        let link = app.link(&kept).await;
        assert_eq!(link["status"], "active");
        assert_eq!(link["metadata"]["order_id"], "ORD-1");
        let link = app.link(&cancelled).await;
        assert_eq!(link["status"], "cancelled");
        assert_eq!(link["cancellation_reason"], "persist me");
        assert_eq!(
            app.event_types(&cancelled).await,
            ["payment_link.created", "payment_link.cancelled"]
        );
        assert_eq!(
            app.get("/v1/payment-links").await.body["data"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
}

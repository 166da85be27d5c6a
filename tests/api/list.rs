//! Listing: newest first, cursor pagination without gaps or repeats, filters.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

backend_tests! {
    async fn cursor_pagination_visits_every_link_once_newest_first() {
        let app = TestApp::spawn().await;
        let mut created = Vec::new();
        for _ in 0..23 {
            created.push(app.create_link().await);
        }
        created.reverse();

        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(after) => format!("/v1/payment-links?limit=5&starting_after={after}"),
                None => "/v1/payment-links?limit=5".to_owned(),
            };
            let page = app.get(&path).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            assert_eq!(page.body["object"], "list");
            let ids: Vec<String> = page.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["id"].as_str().unwrap().to_owned())
                .collect();
            assert!(ids.len() <= 5);
            seen.extend(ids.iter().cloned());
            if !page.body["has_more"].as_bool().unwrap() {
                break;
            }
            // A link created mid-walk appears on no later page (it is newer).
            if seen.len() == 10 {
                app.create_link().await;
            }
            cursor = ids.last().cloned();
        }
        assert_eq!(seen, created, "every link exactly once, newest first");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len());
    }

    async fn the_default_page_is_20_and_limit_is_bounded() {
        let app = TestApp::spawn().await;
        for _ in 0..21 {
            app.create_link().await;
        }
        let page = app.get("/v1/payment-links").await;
        assert_eq!(page.body["data"].as_array().unwrap().len(), 20);
        assert_eq!(page.body["has_more"], true);
        for bad in ["0", "101", "-1", "ten"] {
            let response = app.get(&format!("/v1/payment-links?limit={bad}")).await;
            assert_eq!(response.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(response.param(), "limit");
        }
        let unknown_cursor = app.get("/v1/payment-links?starting_after=plink_nope").await;
        assert_eq!(unknown_cursor.status, StatusCode::BAD_REQUEST);
        assert_eq!(unknown_cursor.param(), "starting_after");
        let unknown_param = app.get("/v1/payment-links?colour=red").await;
        assert_eq!(unknown_param.status, StatusCode::BAD_REQUEST);
        assert_eq!(unknown_param.param(), "colour");
    }

    /// The metadata filter follows an update: a removed pair no longer
    /// matches, a new one does, the kept one still does.
    async fn the_metadata_filter_follows_updates() {
        let app = TestApp::spawn().await;
        let id = app.create_link_with(json!({"metadata": {"a": "1", "b": "2"}})).await.id();
        let other = app.create_link_with(json!({"metadata": {"a": "1"}})).await.id();
        let updated = app.patch(&format!("/v1/payment-links/{id}"), json!({"metadata": {"b": "", "c": "3"}})).await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
        // Cancelling rewrites the row but not its metadata.
        assert_eq!(app.cancel(&id, json!({})).await.status, StatusCode::OK);
        let ids = |response: crate::helpers::Response| -> Vec<String> {
            assert_eq!(response.status, StatusCode::OK, "{}", response.body);
            response.body["data"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(ids(app.get("/v1/payment-links?metadata[b]=2").await), Vec::<String>::new());
        assert_eq!(ids(app.get("/v1/payment-links?metadata[c]=3").await), [id.as_str()]);
        assert_eq!(ids(app.get("/v1/payment-links?metadata[a]=1").await), [other.as_str(), id.as_str()]);
        assert_eq!(ids(app.get("/v1/payment-links?metadata[a]=1&metadata[c]=3").await), [id.as_str()]);
    }

    /// A list filtered by metadata or product pages like any other:
    /// newest first, each match once, the others never.
    async fn filtered_lists_page_through_every_match_once() {
        let app = TestApp::spawn().await;
        let mut tagged = Vec::new();
        for i in 0..5 {
            tagged.push(app.create_link_with(json!({
                "metadata": {"batch": "b7"},
                "line_items": [{"product_id": "mug", "name": "Mug", "quantity": 1, "unit_amount": 900}],
                "amount": 900
            })).await.id());
            if i % 2 == 0 {
                app.create_link_with(json!({"metadata": {"batch": "b8"}})).await;
            }
        }
        tagged.reverse();
        for filter in ["metadata[batch]=b7", "product_id=mug", "metadata[batch]=b7&product_id=mug"] {
            let mut seen = Vec::new();
            let mut cursor = String::new();
            loop {
                let page = app.get(&format!("/v1/payment-links?{filter}&limit=2{cursor}")).await;
                assert_eq!(page.status, StatusCode::OK, "{}", page.body);
                let ids: Vec<String> = page.body["data"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_owned()).collect();
                seen.extend(ids.iter().cloned());
                if page.body["has_more"] != true {
                    break;
                }
                cursor = format!("&starting_after={}", ids.last().unwrap());
            }
            assert_eq!(seen, tagged, "{filter}");
        }
    }

    async fn filters_narrow_the_list() {
        let app = TestApp::spawn().await;
        let shoes = app
            .create_link_with(json!({
                "order_reference": "ORD-7",
                "metadata": {"channel": "email", "tier": "gold"},
                "line_items": [{"product_id": "shoe-42", "name": "Shoe", "quantity": 2, "unit_amount": 2500}],
                "amount": 5000
            }))
            .await
            .id();
        let hats = app
            .create_link_with(json!({
                "order_reference": "ORD-8",
                "metadata": {"channel": "sms"},
                "line_items": [{"product_id": "hat-1", "name": "Hat", "quantity": 1, "unit_amount": 1500}],
                "amount": 1500
            }))
            .await
            .id();
        let between = app.link(&hats).await["created_at"]
            .as_str()
            .unwrap()
            .to_owned();
        let plain = app.create_link().await;
        app.cancel(&plain, json!({})).await;

        let ids = |response: crate::helpers::Response| -> Vec<String> {
            assert_eq!(response.status, StatusCode::OK, "{}", response.body);
            response.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            ids(app.get("/v1/payment-links?order_reference=ORD-7").await),
            [shoes.as_str()]
        );
        assert_eq!(
            ids(app.get("/v1/payment-links?product_id=hat-1").await),
            [hats.as_str()]
        );
        assert_eq!(
            ids(app
                .get("/v1/payment-links?metadata%5Bchannel%5D=email")
                .await),
            [shoes.as_str()]
        );
        assert_eq!(
            ids(app
                .get("/v1/payment-links?metadata[channel]=email&metadata[tier]=silver")
                .await),
            Vec::<String>::new()
        );
        assert_eq!(
            ids(app.get("/v1/payment-links?status=cancelled").await),
            [plain.as_str()]
        );
        assert_eq!(
            ids(app.get("/v1/payment-links?status=active").await),
            [hats.as_str(), shoes.as_str()]
        );
        let after = ids(app
            .get(&format!(
                "/v1/payment-links?created_after={}",
                between.replace('+', "%2B")
            ))
            .await);
        assert_eq!(after, [plain.as_str()]);
        let before = ids(app
            .get(&format!("/v1/payment-links?created_before={between}"))
            .await);
        assert_eq!(before, [shoes.as_str()]);
        let bad_status = app.get("/v1/payment-links?status=open").await;
        assert_eq!(bad_status.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad_status.param(), "status");
        let bad_time = app.get("/v1/payment-links?created_after=yesterday").await;
        assert_eq!(bad_time.param(), "created_after");
    }
}

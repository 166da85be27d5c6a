//! Every field of DESIGN.md §1 validated on create: a bad value is a 400
//! naming the field, and creates nothing.

use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;

fn line_item(product: &str, quantity: i64, unit_amount: i64) -> Value {
    json!({"product_id": product, "name": "Thing", "quantity": quantity, "unit_amount": unit_amount})
}

backend_tests! {
    async fn urls_are_stored_in_the_normalised_form_they_were_checked_in() {
        let app = TestApp::spawn().await;
        let created = app
            .create_link_with(json!({
                "success_url": "HTTPS://Shop.EXAMPLE:443/a/../thanks?o=1",
                "cancel_url": "http://shop.example"
            }))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!(created.body["success_url"], "https://shop.example/thanks?o=1");
        assert_eq!(created.body["cancel_url"], "http://shop.example/");
        let read = app.link(&created.id()).await;
        assert_eq!(read["success_url"], "https://shop.example/thanks?o=1");
        let endpoint = app
            .post("/v1/webhook-endpoints", json!({"url": "HTTP://127.0.0.1:80/hooks/../paylink"}))
            .await;
        assert_eq!(endpoint.status, StatusCode::CREATED, "{}", endpoint.body);
        assert_eq!(endpoint.body["url"], "http://127.0.0.1/paylink");
    }

    async fn every_invalid_field_is_named_and_nothing_is_created() {
        let app = TestApp::spawn().await;
        let past = (Timestamp::now() - SignedDuration::from_secs(1)).to_string();
        let too_far = (Timestamp::now() + SignedDuration::from_hours(24 * 367)).to_string();
        let many_keys: serde_json::Map<String, Value> =
            (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
        let cases: Vec<(Value, &str)> = vec![
            (json!({"amount": 0}), "amount"),
            (json!({"amount": -5}), "amount"),
            (json!({"amount": 49.95}), "amount"),
            (json!({"amount": "4995"}), "amount"),
            (json!({"amount": 100_000_000_000_i64}), "amount"),
            (json!({"currency": "usdollars"}), "currency"),
            (json!({"currency": "XYZ"}), "currency"),
            (json!({"currency": "XAU"}), "currency"),
            (json!({"currency": null}), "currency"),
            (json!({"description": "x".repeat(1001)}), "description"),
            (json!({"payment_type": "subscription"}), "payment_type"),
            (
                json!({"customer": {"email": "not-an-email"}}),
                "customer.email",
            ),
            (
                json!({"customer": {"email": "a@b.co", "phone": "1"}}),
                "customer.phone",
            ),
            (
                json!({"customer": {"first_name": "x".repeat(256)}}),
                "customer.first_name",
            ),
            (
                json!({"line_items": [line_item("p", 1, 1000)], "amount": 999}),
                "amount",
            ),
            (
                json!({"line_items": [line_item("p", 0, 1000)]}),
                "line_items[0].quantity",
            ),
            (
                json!({"line_items": [line_item("p", 1, 0)]}),
                "line_items[0].unit_amount",
            ),
            (
                json!({"line_items": [line_item("", 1, 10)]}),
                "line_items[0].product_id",
            ),
            (json!({"line_items": []}), "line_items"),
            (
                json!({"order_reference": "x".repeat(256)}),
                "order_reference",
            ),
            (json!({"metadata": {"k": 1}}), "metadata.k"),
            (
                json!({"metadata": {"k".repeat(41): "v"}}),
                "metadata[kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk]",
            ),
            (json!({"metadata": {"k": "v".repeat(501)}}), "metadata[k]"),
            (json!({"metadata": many_keys}), "metadata"),
            (json!({"success_url": "/thanks"}), "success_url"),
            (json!({"cancel_url": "ftp://example.com/x"}), "cancel_url"),
            (json!({"expires_at": past}), "expires_at"),
            (json!({"expires_at": too_far}), "expires_at"),
            (json!({"expires_at": "next tuesday"}), "expires_at"),
            (json!({"colour": "red"}), "colour"),
            (json!({"id": "plink_mine"}), "id"),
            (json!({"status": "paid"}), "status"),
            (json!({"livemode": true}), "livemode"),
        ];
        for (extra, param) in cases {
            let response = app.create_link_with(extra.clone()).await;
            assert_eq!(
                response.status,
                StatusCode::BAD_REQUEST,
                "{extra}: {}",
                response.body
            );
            assert_eq!(response.code(), "invalid_request", "{extra}");
            assert_eq!(response.param(), param, "{extra}: {}", response.body);
            assert!(
                !response.body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .is_empty()
            );
        }
        let missing = app.post("/v1/payment-links", json!({"amount": 100})).await;
        assert_eq!(missing.param(), "currency");
        let no_amount = app
            .post("/v1/payment-links", json!({"currency": "USD"}))
            .await;
        assert_eq!(no_amount.param(), "amount");
        assert_eq!(app.get("/v1/payment-links").await.body["data"], json!([]));
    }

    async fn a_full_link_is_stored_as_given_with_defaults_filled_in() {
        let app = TestApp::spawn().await;
        let response = app
            .post(
                "/v1/payment-links",
                json!({
                    "currency": "jpy",
                    "description": "Tea set",
                    "payment_type": "one_time",
                    "customer": {"email": "customer@example.com", "first_name": "Jane", "last_name": "Doe"},
                    "line_items": [line_item("cup", 4, 1000), line_item("pot", 1, 995)],
                    "order_reference": "ORD-12345",
                    "metadata": {"order_id": "ORD-12345"},
                    "success_url": "https://yoursite.com/success",
                    "cancel_url": "https://yoursite.com/cancel"
                }),
            )
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        let link = &response.body;
        assert!(link["id"].as_str().unwrap().starts_with("plink_"));
        assert!(link["id"].as_str().unwrap().len() >= 6 + 22);
        assert_eq!(link["object"], "payment_link");
        assert_eq!(link["livemode"], false);
        assert_eq!(
            link["amount"], 4995,
            "amount defaults to the line items' sum"
        );
        assert_eq!(link["currency"], "JPY");
        assert_eq!(link["status"], "active");
        assert_eq!(link["customer"]["last_name"], "Doe");
        assert_eq!(link["line_items"][1]["product_id"], "pot");
        let slug = link["slug"].as_str().unwrap();
        assert!(slug.len() >= 22, "at least 128 random bits");
        assert_eq!(link["url"], format!("{}/pay/{slug}", app.base));
        let created: Timestamp = link["created_at"].as_str().unwrap().parse().unwrap();
        let expires: Timestamp = link["expires_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            expires.duration_since(created),
            SignedDuration::from_hours(14 * 24)
        );
        assert!(
            link["cancelled_at"].is_null() && link["paid_at"].is_null() && link["payment_id"].is_null()
        );
        assert_eq!(app.link(&response.id()).await, response.body);
    }

    async fn amounts_keep_each_currencys_minor_units() {
        let app = TestApp::spawn().await;
        for (currency, amount) in [("USD", 4995), ("JPY", 4995), ("BHD", 49_995), ("EUR", 1)] {
            let response = app
                .post(
                    "/v1/payment-links",
                    json!({"amount": amount, "currency": currency}),
                )
                .await;
            assert_eq!(response.status, StatusCode::CREATED, "{currency}");
            assert_eq!(response.body["amount"], amount);
            assert_eq!(response.body["currency"], currency);
        }
    }
}

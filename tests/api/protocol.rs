//! The HTTP contract: error envelope for malformed requests, limits,
//! request ids, operational endpoints and the OpenAPI document.

use reqwest::StatusCode;

use crate::helpers::TestApp;

async fn raw_post(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> crate::helpers::Response {
    let mut request = app
        .client
        .post(format!("{}{path}", app.base))
        .bearer_auth(&app.key)
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    TestApp::read(request.send().await.unwrap()).await
}

backend_tests! {
    async fn duplicate_keys_and_control_characters_are_400_naming_the_field() {
        let app = TestApp::spawn().await;
        for (body, param) in [
            (r#"{"amount": 100, "currency": "USD", "amount": 999999}"#, "amount"),
            (r#"{"amount": 100, "currency": "USD", "metadata": {"k": "1", "k": "2"}}"#, "metadata.k"),
            (r#"{"amount": 100, "currency": "USD", "description": "nul\u0000here"}"#, "description"),
            (r#"{"amount": 100, "currency": "USD", "order_reference": "ORD\u001b[31m"}"#, "order_reference"),
        ] {
            let response = raw_post(&app, "/v1/payment-links", Some("application/json"), body.as_bytes().to_vec()).await;
            assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}: {}", response.body);
            assert_eq!(response.param(), param, "{body}");
        }
        let fine = raw_post(
            &app,
            "/v1/payment-links",
            Some("application/json"),
            br#"{"amount": 100, "currency": "USD", "description": "two\nlines\tand a tab"}"#.to_vec(),
        )
        .await;
        assert_eq!(fine.status, StatusCode::CREATED, "{}", fine.body);
        let all = app.get("/v1/payment-links").await;
        assert_eq!(all.body["data"].as_array().unwrap().len(), 1, "refused bodies changed nothing");
    }

    async fn malformed_json_is_400_in_the_envelope() {
        let app = TestApp::spawn().await;
        for body in [
            &b"{\"amount\": 100,"[..],
            b"[1,2]",
            b"\"text\"",
            b"{'a': 1}",
        ] {
            let response = raw_post(
                &app,
                "/v1/payment-links",
                Some("application/json"),
                body.to_vec(),
            )
            .await;
            assert_eq!(response.status, StatusCode::BAD_REQUEST);
            assert_eq!(response.code(), "invalid_request");
            let request_id = response.headers["x-request-id"].to_str().unwrap();
            assert_eq!(response.body["error"]["request_id"], request_id);
        }
    }

    async fn a_body_that_is_not_json_is_415() {
        let app = TestApp::spawn().await;
        let response = raw_post(
            &app,
            "/v1/payment-links",
            Some("application/x-www-form-urlencoded"),
            b"amount=100".to_vec(),
        )
        .await;
        assert_eq!(response.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(response.code(), "invalid_request");
        let none = raw_post(&app, "/v1/payment-links", None, b"{\"amount\":1}".to_vec()).await;
        assert_eq!(none.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let with_charset = raw_post(
            &app,
            "/v1/payment-links",
            Some("application/json; charset=utf-8"),
            br#"{"amount":100,"currency":"USD"}"#.to_vec(),
        )
        .await;
        assert_eq!(with_charset.status, StatusCode::CREATED);
    }

    async fn a_body_over_64_kib_is_413() {
        let app = TestApp::spawn().await;
        let body = format!(
            r#"{{"amount":100,"currency":"USD","description":"{}"}}"#,
            "x".repeat(70 * 1024)
        );
        let response = raw_post(
            &app,
            "/v1/payment-links",
            Some("application/json"),
            body.into_bytes(),
        )
        .await;
        assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.code(), "invalid_request");
    }

    async fn unknown_routes_and_methods_answer_in_the_envelope_with_request_ids() {
        let app = TestApp::spawn().await;
        let unknown = app.get("/v1/nothing-here").await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(unknown.code(), "not_found");
        let wrong_method = app
            .client
            .delete(format!("{}/v1/payment-links", app.base))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        let wrong_method = TestApp::read(wrong_method).await;
        assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(wrong_method.code(), "invalid_request");
        let a = app.get("/healthz").await;
        let b = app.get("/healthz").await;
        assert_ne!(a.headers["x-request-id"], b.headers["x-request-id"]);
    }

    async fn health_and_readiness() {
        let app = TestApp::spawn().await;
        assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status, StatusCode::OK);
        assert_eq!(ready.body["status"], "ready");
    }

    async fn the_openapi_document_covers_every_native_endpoint() {
        let app = TestApp::spawn().await;
        let doc = app.get("/openapi.json").await.body;
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [
            ("/v1/payment-links", "post"),
            ("/v1/payment-links", "get"),
            ("/v1/payment-links/{id}", "get"),
            ("/v1/payment-links/{id}", "patch"),
            ("/v1/payment-links/{id}/cancel", "post"),
            ("/v1/payment-links/cancel", "post"),
            ("/v1/payment-links/stats", "get"),
            ("/v1/payment-links/{id}/events", "get"),
            ("/healthz", "get"),
            ("/readyz", "get"),
        ] {
            let operation = &paths[path][method];
            assert!(operation.is_object(), "{method} {path} documented");
            if path.starts_with("/v1") {
                assert!(
                    operation["responses"]["401"].is_object(),
                    "{method} {path} documents 401"
                );
            }
        }
        for schema in [
            "PaymentLinkResource",
            "ErrorBody",
            "CreatePaymentLinkRequest",
            "BulkCancelResponse",
            "StatsResponse",
            "EventList",
        ] {
            assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}

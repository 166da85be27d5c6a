//! The five providers' formats, built from their seeds: every request
//! example reproduced against a live server, each documented error, the
//! cancellable and non-cancellable statuses, and cross-dialect cancels.

use jiff::SignedDuration;
use paylink::server::ServerOptions;
use paylink::web::rate_limit::RateLimitSettings;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Response, TestApp};

/// A request with exactly these headers (each provider authenticates its way).
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let mut request = app.client.request(method, format!("{}{}", app.base, path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    TestApp::read(request.send().await.expect("sent")).await
}

fn bearer(app: &TestApp) -> String {
    format!("Bearer {}", app.key)
}

async fn slug(app: &TestApp, id: &str) -> String {
    app.link(id).await["slug"].as_str().unwrap().to_owned()
}

/// A time a month ahead in whole seconds, as the seeds write times.
fn in_thirty_days() -> String {
    (jiff::Timestamp::now() + SignedDuration::from_hours(30 * 24))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Links in each status: active, paid, expired, cancelled, processing.
struct Statuses {
    active: String,
    paid: String,
    expired: String,
    cancelled: String,
    processing: String,
}

async fn links_in_every_status(app: &TestApp) -> Statuses {
    let expiring = app
        .create_link_with(json!({"expires_at": (jiff::Timestamp::now() + SignedDuration::from_secs(2)).to_string()}))
        .await
        .id();
    let paid = app.create_link().await;
    app.pay(&paid).await;
    let cancelled = app.create_link().await;
    assert_eq!(
        app.cancel(&cancelled, json!({})).await.status,
        StatusCode::OK
    );
    let processing = app.create_link().await;
    app.start_payment(&processing).await;
    app.advance(SignedDuration::from_secs(3));
    let active = app.create_link().await;
    assert_eq!(app.link(&expiring).await["status"], "expired");
    Statuses {
        active,
        paid,
        expired: expiring,
        cancelled,
        processing,
    }
}

backend_tests! {
    async fn gale_cancel_as_its_seed_documents() {
        let app = TestApp::spawn().await;
        let auth = bearer(&app);
        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        let links = links_in_every_status(&app).await;

        // "Basic Cancellation" (curl) with a reason.
        let path = format!("/compat/gale/v2/payment-links/{}/cancel", links.active);
        let cancelled = call(&app, Method::POST, &path, &headers, Some(r#"{"reason": "Order cancelled by customer"}"#)).await;
        assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
        let body = &cancelled.body;
        assert_eq!(body["id"], links.active.as_str());
        assert_eq!(body["status"], "cancelled");
        assert_eq!(body["cancellation_reason"], "Order cancelled by customer");
        assert_eq!(body["amount_cents"], 4995);
        assert_eq!(body["currency"], "USD");
        assert_eq!(body["payment_type"], "one_time");
        assert_eq!(body["description"], "Premium Blood Pressure Monitor");
        let cancelled_at = body["cancelled_at"].as_str().unwrap();
        assert!(cancelled_at.ends_with('Z') && cancelled_at.len() == 20, "{cancelled_at}");
        assert!(body["url"].as_str().unwrap().ends_with(&format!("/pay/{}", slug(&app, &links.active).await)));
        for field in ["success_url", "cancel_url", "metadata", "expires_at", "created_at", "customer"] {
            assert!(body.get(field).is_some(), "{field}");
        }

        // "Without Reason": `{}`.
        let other = app.create_link().await;
        let path = format!("/compat/gale/v2/payment-links/{other}/cancel");
        let cancelled = call(&app, Method::POST, &path, &headers, Some("{}")).await;
        assert_eq!(cancelled.status, StatusCode::OK);
        assert!(cancelled.body["cancellation_reason"].is_null());

        // Only active cancels; each refusal exactly as documented.
        for (id, word) in [(&links.paid, "paid"), (&links.expired, "expired"), (&links.cancelled, "cancelled")] {
            let path = format!("/compat/gale/v2/payment-links/{id}/cancel");
            let refused = call(&app, Method::POST, &path, &headers, Some("{}")).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{word}");
            assert_eq!(
                refused.body,
                json!({"error": {"code": "invalid_state", "message": format!("Cannot cancel payment link with status '{word}'"), "param": "status"}})
            );
        }
        let path = format!("/compat/gale/v2/payment-links/{}/cancel", links.processing);
        let refused = call(&app, Method::POST, &path, &headers, Some("{}")).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(refused.body["error"]["code"], "invalid_state");

        // 401, 404, and a reason over 500 characters.
        let path = format!("/compat/gale/v2/payment-links/{other}/cancel");
        for auth in [None, Some("Bearer glm_test_YOUR_API_KEY")] {
            let mut headers = vec![("Content-Type", "application/json")];
            headers.extend(auth.map(|a| ("Authorization", a)));
            let refused = call(&app, Method::POST, &path, &headers, Some("{}")).await;
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
            assert_eq!(refused.body["error"]["code"], "unauthorized");
            assert!(refused.body["error"]["message"].is_string());
        }
        let missing = call(&app, Method::POST, "/compat/gale/v2/payment-links/plink_abc123xyz/cancel", &headers, Some("{}")).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.body["error"]["code"], "not_found");
        let stranger = app.create_key("another-shop", false).await;
        let stranger = format!("Bearer {stranger}");
        let theirs = call(&app, Method::POST, &format!("/compat/gale/v2/payment-links/{}/cancel", app.create_link().await), &[("Authorization", stranger.as_str())], None).await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND, "another account's link does not exist");
        let long = json!({"reason": "x".repeat(501)}).to_string();
        let fresh = app.create_link().await;
        let too_long = call(&app, Method::POST, &format!("/compat/gale/v2/payment-links/{fresh}/cancel"), &headers, Some(&long)).await;
        assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
        assert_eq!(too_long.body["error"]["param"], "reason");
        assert_eq!(app.link(&fresh).await["status"], "active", "a refused request changes nothing");
    }

    async fn gale_create_list_and_retrieve_for_its_use_cases() {
        let app = TestApp::spawn().await;
        let auth = bearer(&app);
        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        let created = call(&app, Method::POST, "/compat/gale/v2/payment-links", &headers, Some(&json!({
            "amount_cents": 4995,
            "currency": "USD",
            "description": "Premium Blood Pressure Monitor",
            "customer": {"email": "customer@example.com", "first_name": "Jane", "last_name": "Doe"},
            "success_url": "https://yoursite.com/success",
            "cancel_url": "https://yoursite.com/cancel",
            "metadata": {"order_id": "ORD-12345"},
            "products": [{"merchant_product_id": "bp-monitor", "name": "Monitor", "quantity": 1, "price_cents": 4995}]
        }).to_string())).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let id = created.id();
        assert_eq!(created.body["customer"]["email"], "customer@example.com");
        assert_eq!(created.body["products"][0]["merchant_product_id"], "bp-monitor");
        assert_eq!(created.body["status"], "active");

        let bad = call(&app, Method::POST, "/compat/gale/v2/payment-links", &headers, Some(r#"{"amount_cents": 0, "currency": "USD"}"#)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.body["error"]["param"], "amount_cents");

        let retrieved = call(&app, Method::GET, &format!("/compat/gale/v2/payment-links/{id}"), &headers, None).await;
        assert_eq!(retrieved.body, created.body);
        // The "cleanup" use case: active links created before a moment.
        let later = (jiff::Timestamp::now() + SignedDuration::from_secs(60)).to_string();
        let listed = call(&app, Method::GET, &format!("/compat/gale/v2/payment-links?status=active&created_before={later}"), &headers, None).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
        assert_eq!(listed.body["data"][0]["id"], id.as_str());
        assert!(listed.body["data"][0]["products"].as_array().unwrap().iter().any(|p| p["merchant_product_id"] == "bp-monitor"));
        let none = call(&app, Method::GET, "/compat/gale/v2/payment-links?status=paid", &headers, None).await;
        assert_eq!(none.body["data"], json!([]));
        let bad = call(&app, Method::GET, "/compat/gale/v2/payment-links?status=pending", &headers, None).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.body["error"]["code"], "invalid_request");
    }

    async fn zelta_cancel_as_its_seed_documents() {
        let app = TestApp::spawn().await;
        let headers = [("X-API-Key", app.key.as_str()), ("Content-Type", "application/json")];
        let links = links_in_every_status(&app).await;

        // The cURL / Node / Python examples: PATCH by hashUrl, no body.
        let hash = slug(&app, &links.active).await;
        let cancelled = call(&app, Method::PATCH, &format!("/compat/zelta/v1/payment-links/{hash}/cancel"), &headers, None).await;
        assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
        assert_eq!(cancelled.body["success"], true);
        assert_eq!(cancelled.body["message"], "Payment link cancelled successfully");
        let link = &cancelled.body["data"]["paymentLink"];
        assert_eq!(link["id"], links.active.as_str());
        assert_eq!(link["status"], "cancelled");
        assert_eq!(link["amount"], 4995);
        assert_eq!(link["isTest"], true);
        assert!(link["completedAt"].is_null());
        assert!(link["paymentLinkUrl"].as_str().unwrap().ends_with(&hash), "hashUrl is the URL's last segment");
        let stamp = cancelled.body["timestamp"].as_str().unwrap();
        assert!(stamp.ends_with('Z') && stamp.len() == 24, "{stamp}");
        assert_eq!(link["cancelledAt"].as_str().unwrap().len(), 24);

        // Expired links cancel too; by link id as well as by hashUrl.
        let expired = call(&app, Method::PATCH, &format!("/compat/zelta/v1/payment-links/{}/cancel", links.expired), &headers, None).await;
        assert_eq!(expired.status, StatusCode::OK, "{}", expired.body);
        assert_eq!(expired.body["data"]["paymentLink"]["status"], "cancelled");

        // Completed and cancelled are refused.
        for (id, details) in [(&links.paid, "Payment link is already completed"), (&links.cancelled, "Payment link is already cancelled")] {
            let refused = call(&app, Method::PATCH, &format!("/compat/zelta/v1/payment-links/{id}/cancel"), &headers, None).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST);
            assert_eq!(refused.body["success"], false);
            assert_eq!(refused.body["message"], "Payment link cannot be cancelled");
            assert_eq!(refused.body["error"], json!({"code": "ERR_INVALID_STATE", "details": details}));
            assert!(refused.body["timestamp"].is_string());
        }
        let refused = call(&app, Method::PATCH, &format!("/compat/zelta/v1/payment-links/{}/cancel", links.processing), &headers, None).await;
        assert_eq!(refused.body["error"]["code"], "ERR_INVALID_STATE");

        // 404 (unknown, and another account's), 401 missing and invalid, 403.
        let missing = call(&app, Method::PATCH, "/compat/zelta/v1/payment-links/abc123/cancel", &headers, None).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.body["message"], "Payment link not found");
        assert_eq!(missing.body["error"], json!({"code": "ERR_PAYMENT_LINK_NOT_FOUND"}));
        let stranger = app.create_key("another-shop", false).await;
        let theirs = app.create_link().await;
        let theirs = call(&app, Method::PATCH, &format!("/compat/zelta/v1/payment-links/{}/cancel", slug(&app, &theirs).await), &[("X-API-Key", stranger.as_str())], None).await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND);
        assert_eq!(theirs.body["error"]["code"], "ERR_PAYMENT_LINK_NOT_FOUND");
        let no_key = call(&app, Method::PATCH, "/compat/zelta/v1/payment-links/abc123/cancel", &[("Content-Type", "application/json")], None).await;
        assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);
        assert_eq!(no_key.body["message"], "Missing X-API-Key header");
        assert_eq!(no_key.body["error"], json!({"code": "ERR_MISSING_API_KEY"}));
        let auth = bearer(&app);
        let wrong_header = call(&app, Method::PATCH, "/compat/zelta/v1/payment-links/abc123/cancel", &[("Authorization", auth.as_str())], None).await;
        assert_eq!(wrong_header.status, StatusCode::UNAUTHORIZED, "Zelta reads X-API-Key only");
        assert_eq!(wrong_header.body["error"]["code"], "ERR_MISSING_API_KEY");
        let bad_key = call(&app, Method::PATCH, "/compat/zelta/v1/payment-links/abc123/cancel", &[("X-API-Key", "your-api-key-here")], None).await;
        assert_eq!(bad_key.status, StatusCode::UNAUTHORIZED);
        assert_eq!(bad_key.body["error"]["code"], "ERR_INVALID_API_KEY");
        app.service.set_account_suspended("another-shop", true).await.unwrap();
        let suspended = call(&app, Method::GET, "/compat/zelta/v1/payment-links", &[("X-API-Key", stranger.as_str())], None).await;
        assert_eq!(suspended.status, StatusCode::FORBIDDEN);
        assert_eq!(suspended.body["error"]["code"], "ERR_ACCOUNT_SUSPENDED");
        assert_eq!(suspended.body["success"], false);

        // Retrieve (used by safeCancelPaymentLink) and list (getAllPaymentLinks).
        let got = call(&app, Method::GET, &format!("/compat/zelta/v1/payment-links/{hash}"), &headers, None).await;
        assert_eq!(got.body["data"]["paymentLink"]["status"], "cancelled");
        let all = call(&app, Method::GET, "/compat/zelta/v1/payment-links?limit=100", &headers, None).await;
        assert_eq!(all.status, StatusCode::OK);
        assert!(all.body["data"]["paymentLinks"].as_array().unwrap().len() >= 6);
        let created = call(&app, Method::POST, "/compat/zelta/v1/payment-links", &headers, Some(r#"{"amount": 2500, "concept": "Consulting Service", "customerName": "John Doe", "metadata": {"orderId": "ORD-001"}}"#)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!(created.body["data"]["paymentLink"]["customerName"], "John Doe");
        assert_eq!(created.body["data"]["paymentLink"]["status"], "pending");
    }

    async fn every_dialect_answers_rate_limits_in_its_envelope() {
        let app = TestApp::spawn_with(ServerOptions {
            rate_limits: RateLimitSettings { per_second: 1, burst: 1, ..RateLimitSettings::default() },
            ..ServerOptions::default()
        })
        .await;
        let auth = bearer(&app);
        call(&app, Method::GET, "/compat/gale/v2/payment-links", &[("Authorization", auth.as_str())], None).await;
        let limited = call(&app, Method::GET, "/compat/gale/v2/payment-links", &[("Authorization", auth.as_str())], None).await;
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.body["error"]["code"], "rate_limit_exceeded");
        assert!(limited.headers.contains_key("retry-after"));
        let limited = call(&app, Method::GET, "/compat/zelta/v1/payment-links", &[("X-API-Key", app.key.as_str())], None).await;
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.body["error"]["code"], "ERR_RATE_LIMIT_EXCEEDED");
        assert_eq!(limited.body["success"], false);
        let limited = call(&app, Method::POST, "/compat/payments/payments/plink_x/cancel", &[("X-API-Key", app.key.as_str())], None).await;
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.body["error"]["type"], "rate_limit_error");
        assert_eq!(limited.body["success"], false);
        let limited = call(&app, Method::POST, "/compat/connect/payment-links/plink_x/cancel", &[("X-API-Key", app.key.as_str())], None).await;
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.body["error"]["code"], "RATE_LIMITED");
        let limited = call(&app, Method::DELETE, "/compat/plexy/v1/payment-links/plink_x", &[("Authorization", app.key.as_str())], None).await;
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.body["error"]["code"], "too_many_requests");
    }

    async fn payments_cancel_as_its_seed_documents() {
        let app = TestApp::spawn().await;
        let headers = [("X-API-Key", app.key.as_str())];
        let links = links_in_every_status(&app).await;

        // The curl example: POST /payments/{id}/cancel.
        let path = format!("/compat/payments/payments/{}/cancel", links.active);
        let cancelled = call(&app, Method::POST, &path, &headers, None).await;
        assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
        assert_eq!(cancelled.body["success"], true);
        let data = &cancelled.body["data"];
        assert_eq!(data["id"], links.active.as_str());
        assert_eq!(data["kind"], "link");
        assert_eq!(data["status"], "canceled");
        assert_eq!(data["object"], "payment");
        assert_eq!(data["livemode"], false);
        assert_eq!(data["amountTotal"], 4995);
        for field in ["customerId", "provider", "amountSubtotal", "taxAmount", "currency", "description", "metadata", "url", "expiresAt", "createdAt", "updatedAt"] {
            assert!(data.get(field).is_some(), "{field}");
        }
        // A second cancel is a no-op: 200, the same object.
        let again = call(&app, Method::POST, &path, &headers, None).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.body, cancelled.body);
        assert_eq!(app.event_types(&links.active).await.iter().filter(|t| *t == "payment_link.cancelled").count(), 1);
        // Not paid, not processing: an expired link cancels.
        let expired = call(&app, Method::POST, &format!("/compat/payments/payments/{}/cancel", links.expired), &headers, None).await;
        assert_eq!(expired.status, StatusCode::OK);
        assert_eq!(expired.body["data"]["status"], "canceled");

        // Paid and processing are refused, in the six-field envelope.
        for (id, word) in [(&links.paid, "is paid"), (&links.processing, "payment is in progress")] {
            let refused = call(&app, Method::POST, &format!("/compat/payments/payments/{id}/cancel"), &headers, None).await;
            assert_eq!(refused.status, StatusCode::CONFLICT, "{word}");
            assert_eq!(refused.body["success"], false);
            let error = refused.body["error"].as_object().unwrap();
            let mut fields: Vec<_> = error.keys().map(String::as_str).collect();
            fields.sort();
            assert_eq!(fields, ["code", "details", "doc_url", "message", "param", "type"]);
            assert_eq!(error["code"], "payment_not_cancelable");
            assert!(error["message"].as_str().unwrap().contains(word));
        }
        // A charge never cancels.
        let charge = app.link(&links.paid).await["payment_id"].as_str().unwrap().to_owned();
        let refused = call(&app, Method::POST, &format!("/compat/payments/payments/{charge}/cancel"), &headers, None).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        assert_eq!(refused.body["error"]["code"], "charge_not_cancelable");

        let missing = call(&app, Method::POST, "/compat/payments/payments/plink_nothing/cancel", &headers, None).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.body["error"]["code"], "resource_missing");
        let unknown_charge = call(&app, Method::POST, "/compat/payments/payments/pay_nothing/cancel", &headers, None).await;
        assert_eq!(unknown_charge.status, StatusCode::NOT_FOUND);
        let no_key = call(&app, Method::POST, &path, &[], None).await;
        assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);
        assert_eq!(no_key.body["error"]["type"], "authentication_error");
        assert_eq!(no_key.body["success"], false);
        let stranger = app.create_key("another-shop", false).await;
        app.service.set_account_suspended("another-shop", true).await.unwrap();
        let suspended = call(&app, Method::POST, &path, &[("X-API-Key", stranger.as_str())], None).await;
        assert_eq!(suspended.status, StatusCode::FORBIDDEN);
        assert_eq!(suspended.body["error"]["code"], "account_suspended");
    }

    async fn connect_cancel_and_its_idempotency_keys() {
        let app = TestApp::spawn().await;
        let links = links_in_every_status(&app).await;
        let cancel = |id: &str, key: Option<&'static str>| {
            let path = format!("/compat/connect/payment-links/{id}/cancel");
            let api_key = app.key.clone();
            let app = &app;
            async move {
                let mut headers = vec![("X-API-Key", api_key.as_str())];
                headers.extend(key.map(|k| ("X-Idempotency-Key", k)));
                call(app, Method::POST, &path, &headers, None).await
            }
        };
        let cancelled = cancel(&links.active, Some("order-77-cancel")).await;
        assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
        assert_eq!(cancelled.body["paymentLinkId"], links.active.as_str());
        assert_eq!(cancelled.body["status"], "CANCELLED");
        for field in ["url", "description", "expiresAt", "createdAt", "updatedAt", "metadata"] {
            assert!(cancelled.body.get(field).is_some(), "{field}");
        }
        // Optional, not nullable in the seed's schema: absent, never null.
        for field in ["paymentId", "completedAt"] {
            assert!(cancelled.body.get(field).is_none(), "{field} is absent on an unpaid link");
        }
        // Same key, same request: the same result, replayed.
        let replayed = cancel(&links.active, Some("order-77-cancel")).await;
        assert_eq!(replayed.status, StatusCode::OK);
        assert_eq!(replayed.body, cancelled.body);
        assert_eq!(replayed.headers["idempotent-replayed"], "true");
        // Same key, modified request: 409 Conflict, and nothing happens.
        let conflict = cancel(&links.expired, Some("order-77-cancel")).await;
        assert_eq!(conflict.status, StatusCode::CONFLICT, "{}", conflict.body);
        assert_eq!(conflict.body["error"]["code"], "IDEMPOTENCY_KEY_REUSED");
        let bad_key = cancel(&links.expired, Some("")).await;
        assert_eq!(bad_key.status, StatusCode::BAD_REQUEST);

        // Status words, and what is refused.
        let get = |id: String| {
            let app = &app;
            async move { call(app, Method::GET, &format!("/compat/connect/payment-links/{id}"), &[("X-API-Key", app.key.as_str())], None).await }
        };
        assert_eq!(get(links.processing.clone()).await.body["status"], "ACTIVE");
        assert_eq!(get(links.paid.clone()).await.body["status"], "COMPLETED");
        assert!(get(links.paid.clone()).await.body["completedAt"].is_string());
        let paid = get(links.paid.clone()).await.body;
        assert!(paid["paymentId"].as_str().is_some_and(|id| id.starts_with("pay_")));
        for (field, value) in paid.as_object().unwrap() {
            assert!(!value.is_null(), "Connect never sends null ({field})");
        }
        assert_eq!(get(links.expired.clone()).await.body["status"], "EXPIRED");
        for id in [&links.paid, &links.expired, &links.processing] {
            let refused = cancel(id, None).await;
            assert_eq!(refused.status, StatusCode::CONFLICT);
            assert_eq!(refused.body["error"]["code"], "PAYMENT_LINK_NOT_CANCELLABLE");
        }
        let again = cancel(&links.cancelled, None).await;
        assert_eq!(again.status, StatusCode::OK, "cancelling a cancelled link is a no-op");
        let missing = cancel("plink_nothing", None).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.body["error"]["code"], "NOT_FOUND");
        let no_key = call(&app, Method::POST, &format!("/compat/connect/payment-links/{}/cancel", links.active), &[], None).await;
        assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);
        assert_eq!(no_key.body["error"]["code"], "UNAUTHORIZED");
    }

    async fn plexy_cancel_and_its_menu() {
        let app = TestApp::spawn().await;
        let headers = [("Authorization", app.key.as_str())];
        let links = links_in_every_status(&app).await;

        // The seed's request: DELETE with the raw key; 204, empty body.
        let deleted = call(&app, Method::DELETE, &format!("/compat/plexy/v1/payment-links/{}", links.active), &headers, None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        assert!(deleted.body.is_null(), "empty body");
        assert_eq!(app.link(&links.active).await["status"], "cancelled");
        // The seed's literal example, quotes and all: an unknown id, 404 as
        // Plexy answers one; a real id in the seed's quotes cancels.
        let example = call(&app, Method::DELETE, "/compat/plexy/v1/payment-links/%22abcd1234-efgh-5678-ijkl-9012mnop3456%22", &headers, None).await;
        assert_eq!(example.status, StatusCode::NOT_FOUND, "{}", example.body);
        assert_eq!(example.body["error"]["code"], "not_found");
        let quoted = app.create_link().await;
        let deleted = call(&app, Method::DELETE, &format!("/compat/plexy/v1/payment-links/%22{quoted}%22"), &headers, None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
        assert_eq!(app.link(&quoted).await["status"], "cancelled");
        let missing = call(&app, Method::DELETE, "/compat/plexy/v1/payment-links/plink_nothing", &headers, None).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        for id in [&links.paid, &links.expired, &links.cancelled, &links.processing] {
            let refused = call(&app, Method::DELETE, &format!("/compat/plexy/v1/payment-links/{id}"), &headers, None).await;
            assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{id}");
            assert_eq!(refused.body["error"]["code"], "unprocessable_entity");
        }
        let no_key = call(&app, Method::DELETE, &format!("/compat/plexy/v1/payment-links/{}", links.paid), &[], None).await;
        assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);

        // The rest of the menu.
        let json_headers = [("Authorization", app.key.as_str()), ("Content-Type", "application/json")];
        let created = call(&app, Method::POST, "/compat/plexy/v1/payment-links", &json_headers, Some(r#"{"amount": 1500, "currency": "EUR", "order_reference": "ORD-9"}"#)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let id = created.body["external_id"].as_str().unwrap().to_owned();
        assert_eq!(created.body["status"], "Active");
        let by_reference = call(&app, Method::GET, "/compat/plexy/v1/payment-links/order-reference/ORD-9", &headers, None).await;
        assert_eq!(by_reference.body["external_id"], id.as_str());
        let no_reference = call(&app, Method::GET, "/compat/plexy/v1/payment-links/order-reference/ORD-0", &headers, None).await;
        assert_eq!(no_reference.status, StatusCode::NOT_FOUND);
        let later = (jiff::Timestamp::now() + SignedDuration::from_hours(48)).round(jiff::Unit::Second).unwrap().to_string();
        let moved = call(&app, Method::PATCH, &format!("/compat/plexy/v1/payment-links/{id}"), &json_headers, Some(&json!({"expires_at": later}).to_string())).await;
        assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
        assert_eq!(moved.body["expires_at"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap(), later.parse::<jiff::Timestamp>().unwrap());
        let not_active = call(&app, Method::PATCH, &format!("/compat/plexy/v1/payment-links/{}", links.paid), &json_headers, Some(&json!({"expires_at": later}).to_string())).await;
        assert_eq!(not_active.status, StatusCode::UNPROCESSABLE_ENTITY);
        let got = call(&app, Method::GET, &format!("/compat/plexy/v1/payment-links/{id}"), &headers, None).await;
        assert_eq!(got.body, moved.body);
        let listed = call(&app, Method::GET, "/compat/plexy/v1/payment-links?status=Cancelled", &headers, None).await;
        // The one cancelled before, the one deleted by id, the one in quotes.
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 3);
        let stats = call(&app, Method::GET, "/compat/plexy/v1/payment-links/statistics", &headers, None).await;
        assert_eq!(stats.status, StatusCode::OK);
        let eur = stats.body["data"].as_array().unwrap().iter().find(|row| row["currency"] == "EUR").unwrap().clone();
        assert_eq!(eur, json!({"status": "Active", "currency": "EUR", "count": 1, "amount": 1500}));
    }

    async fn payments_create_list_and_retrieve_in_its_shape() {
        let app = TestApp::spawn().await;
        let json_headers = [("X-API-Key", app.key.as_str()), ("Content-Type", "application/json")];
        let headers = [("X-API-Key", app.key.as_str())];
        let expires = in_thirty_days();
        let body = format!(r#"{{"kind": "link", "amountTotal": 4995, "currency": "usd", "description": "Monitor", "metadata": {{"order": "A-1"}}, "expiresAt": "{expires}"}}"#);
        let created = call(&app, Method::POST, "/compat/payments/payments", &json_headers, Some(&body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!(created.body["success"], true);
        let payment = &created.body["data"];
        let mut fields: Vec<_> = payment.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(fields, ["amountSubtotal", "amountTotal", "createdAt", "currency", "customerId", "description", "expiresAt", "id", "kind", "livemode", "metadata", "object", "provider", "status", "taxAmount", "updatedAt", "url"]);
        assert_eq!(payment["kind"], "link");
        assert_eq!(payment["status"], "pending");
        assert_eq!(payment["amountTotal"], 4995);
        assert_eq!(payment["amountSubtotal"], 4995);
        assert_eq!(payment["taxAmount"], 0);
        assert_eq!(payment["currency"], "USD");
        assert_eq!(payment["metadata"], json!({"order": "A-1"}));
        assert_eq!(payment["expiresAt"], expires.as_str());
        let id = payment["id"].as_str().unwrap().to_owned();
        assert_eq!(app.link(&id).await["amount"], 4995, "the same link natively");

        // Retrieve, then list with its status word and paging.
        let got = call(&app, Method::GET, &format!("/compat/payments/payments/{id}"), &headers, None).await;
        assert_eq!(got.body["data"], *payment);
        let second = call(&app, Method::POST, "/compat/payments/payments", &json_headers, Some(r#"{"amountTotal": 100, "currency": "EUR"}"#)).await;
        assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
        let second_id = second.body["data"]["id"].as_str().unwrap().to_owned();
        let cancelled = call(&app, Method::POST, &format!("/compat/payments/payments/{second_id}/cancel"), &headers, None).await;
        assert_eq!(cancelled.status, StatusCode::OK);
        let listed = call(&app, Method::GET, "/compat/payments/payments?limit=1", &headers, None).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
        assert_eq!(listed.body["success"], true);
        assert_eq!(listed.body["hasMore"], true);
        assert_eq!(listed.body["data"][0]["id"], second_id.as_str(), "newest first");
        let next = call(&app, Method::GET, &format!("/compat/payments/payments?limit=1&startingAfter={second_id}"), &headers, None).await;
        assert_eq!(next.body["data"][0]["id"], id.as_str());
        assert_eq!(next.body["hasMore"], false);
        let canceled = call(&app, Method::GET, "/compat/payments/payments?status=canceled", &headers, None).await;
        let ids: Vec<_> = canceled.body["data"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [second_id.as_str()]);

        // Errors in its envelope, naming its own fields; nothing created.
        let bad = call(&app, Method::POST, "/compat/payments/payments", &json_headers, Some(r#"{"amountTotal": 0, "currency": "USD"}"#)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
        assert_eq!(bad.body["success"], false);
        assert_eq!(bad.body["error"]["param"], "amountTotal");
        assert!(bad.body["error"]["message"].as_str().unwrap().contains("`amountTotal`"), "{}", bad.body);
        let past = call(&app, Method::POST, "/compat/payments/payments", &json_headers, Some(r#"{"amountTotal": 10, "currency": "USD", "expiresAt": "2001-01-01T00:00:00Z"}"#)).await;
        assert_eq!(past.body["error"]["param"], "expiresAt", "{}", past.body);
        let charge = call(&app, Method::POST, "/compat/payments/payments", &json_headers, Some(r#"{"kind": "charge", "amountTotal": 10, "currency": "USD"}"#)).await;
        assert_eq!(charge.status, StatusCode::BAD_REQUEST, "{}", charge.body);
        let word = call(&app, Method::GET, "/compat/payments/payments?status=cancelled", &headers, None).await;
        assert_eq!(word.status, StatusCode::BAD_REQUEST);
        assert_eq!(word.body["error"]["param"], "status");
        let all = call(&app, Method::GET, "/compat/payments/payments?limit=100", &headers, None).await;
        assert_eq!(all.body["data"].as_array().unwrap().len(), 2);
    }

    async fn connect_create_list_and_retrieve_in_its_shape() {
        let app = TestApp::spawn().await;
        let json_headers = [("X-API-Key", app.key.as_str()), ("Content-Type", "application/json")];
        let headers = [("X-API-Key", app.key.as_str())];
        let expires = in_thirty_days();
        let body = format!(r#"{{"amount": 2500, "currency": "USD", "description": "Pay your monthly subscription", "expiresAt": "{expires}", "metadata": {{}}}}"#);
        let body = body.as_str();
        let created = call(&app, Method::POST, "/compat/connect/payment-links", &json_headers, Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let link = &created.body;
        let mut fields: Vec<_> = link.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort();
        // paymentId and completedAt are optional, not nullable: absent until paid.
        assert_eq!(fields, ["createdAt", "description", "expiresAt", "metadata", "paymentLinkId", "status", "updatedAt", "url"]);
        assert_eq!(link["status"], "ACTIVE");
        assert_eq!(link["expiresAt"], expires.as_str());
        let id = link["paymentLinkId"].as_str().unwrap().to_owned();
        assert_eq!(app.link(&id).await["amount"], 2500);

        // The same key with the same request replays; with another, 409.
        let mut keyed = json_headers.to_vec();
        keyed.push(("X-Idempotency-Key", "create-1"));
        let first = call(&app, Method::POST, "/compat/connect/payment-links", &keyed, Some(body)).await;
        let again = call(&app, Method::POST, "/compat/connect/payment-links", &keyed, Some(body)).await;
        assert_eq!(again.status, StatusCode::CREATED);
        assert_eq!(again.body["paymentLinkId"], first.body["paymentLinkId"]);
        let modified = call(&app, Method::POST, "/compat/connect/payment-links", &keyed, Some(r#"{"amount": 1, "currency": "USD"}"#)).await;
        assert_eq!(modified.status, StatusCode::CONFLICT);
        let second_id = first.body["paymentLinkId"].as_str().unwrap().to_owned();

        // Paid: paymentId and completedAt appear; listed by COMPLETED.
        app.pay(&second_id).await;
        let got = call(&app, Method::GET, &format!("/compat/connect/payment-links/{second_id}"), &headers, None).await;
        assert_eq!(got.body["status"], "COMPLETED");
        assert!(got.body["paymentId"].as_str().unwrap().starts_with("pay_"));
        assert!(got.body["completedAt"].as_str().unwrap().ends_with('Z'));
        let listed = call(&app, Method::GET, "/compat/connect/payment-links?status=COMPLETED", &headers, None).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
        assert_eq!(listed.body["data"][0], got.body);
        assert_eq!(listed.body["hasMore"], false);
        let page = call(&app, Method::GET, "/compat/connect/payment-links?limit=1", &headers, None).await;
        assert_eq!(page.body["data"][0]["paymentLinkId"], second_id.as_str());
        assert_eq!(page.body["hasMore"], true);
        let rest = call(&app, Method::GET, &format!("/compat/connect/payment-links?limit=1&startingAfter={second_id}"), &headers, None).await;
        assert_eq!(rest.body["data"][0]["paymentLinkId"], id.as_str());

        // Errors in its envelope, naming its own fields.
        let past = call(&app, Method::POST, "/compat/connect/payment-links", &json_headers, Some(r#"{"amount": 10, "currency": "USD", "expiresAt": "2001-01-01T00:00:00Z"}"#)).await;
        assert_eq!(past.status, StatusCode::BAD_REQUEST);
        assert_eq!(past.body["error"]["code"], "INVALID_REQUEST");
        assert!(past.body["error"]["message"].as_str().unwrap().contains("`expiresAt`"), "{}", past.body);
        let word = call(&app, Method::GET, "/compat/connect/payment-links?status=active", &headers, None).await;
        assert_eq!(word.status, StatusCode::BAD_REQUEST);
    }

    /// A cancel that meets a payment in flight waits for it, on every
    /// surface alike: a declined attempt lets the cancel through, a paid
    /// one is refused as paid, and one still unresolved after the wait is
    /// refused with a message that names no status the client never saw.
    async fn a_cancel_waits_for_a_payment_in_flight_on_every_surface() {
        let app = TestApp::spawn().await;
        let settle_later = |slug: String, paid: bool| {
            let service = app.service.clone();
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                if paid {
                    service.complete_payment(&slug).await.expect("paid");
                } else {
                    service.fail_payment(&slug, "Card declined").await.expect("failed");
                }
            }
        };
        for surface in Surface::ALL {
            // Declined while the cancel waits: the cancel goes through.
            let id = app.create_link().await;
            let slug = app.start_payment(&id).await;
            let (answer, ()) = tokio::join!(surface.cancel(&app, &id), settle_later(slug, false));
            assert!(answer.status.is_success(), "{surface:?}: {} {}", answer.status, answer.body);
            assert_eq!(app.link(&id).await["status"], "cancelled", "{surface:?}");

            // Paid while the cancel waits: refused as paid, in the provider's words.
            let id = app.create_link().await;
            let slug = app.start_payment(&id).await;
            let (answer, ()) = tokio::join!(surface.cancel(&app, &id), settle_later(slug, true));
            assert!(answer.status.is_client_error(), "{surface:?}: {}", answer.status);
            let text = answer.body.to_string();
            assert!(text.contains(surface.paid_word()), "{surface:?}: {text}");
            assert_eq!(app.link(&id).await["status"], "paid", "{surface:?}");
        }

        // Never resolved: each surface gives up after the wait (all six
        // at once) with its own refusal, naming no status.
        let mut stuck = Vec::new();
        for surface in Surface::ALL {
            let id = app.create_link().await;
            app.start_payment(&id).await;
            stuck.push((surface, id));
        }
        let started = std::time::Instant::now();
        let answers = futures::future::join_all(stuck.iter().map(|(surface, id)| surface.cancel(&app, id))).await;
        let waited = started.elapsed();
        assert!(waited >= std::time::Duration::from_secs(2), "waited {waited:?}");
        assert!(waited < std::time::Duration::from_secs(30), "waited {waited:?}");
        for ((surface, id), answer) in stuck.iter().zip(answers) {
            assert_eq!(answer.status, surface.refusal_status(), "{surface:?}: {}", answer.body);
            let text = answer.body.to_string();
            assert!(text.contains("A payment is in progress on this link; retry the cancel in a few seconds"), "{surface:?}: {text}");
            for word in ["'active'", "\"active\"", "pending", "ACTIVE", "processing", "Processing"] {
                assert!(!text.contains(word), "{surface:?} names {word}: {text}");
            }
            assert_eq!(app.link(id).await["status"], "processing");
        }
    }

    async fn one_link_across_every_dialect() {
        let app = TestApp::spawn().await;
        let auth = bearer(&app);
        // Created natively, cancelled through Gale; the others then see it cancelled.
        let id = app.create_link().await;
        let hash = slug(&app, &id).await;
        let gale = call(&app, Method::POST, &format!("/compat/gale/v2/payment-links/{id}/cancel"), &[("Authorization", auth.as_str())], Some("")).await;
        assert_eq!(gale.status, StatusCode::OK, "{}", gale.body);
        assert_eq!(app.link(&id).await["status"], "cancelled");
        let zelta = call(&app, Method::GET, &format!("/compat/zelta/v1/payment-links/{hash}"), &[("X-API-Key", app.key.as_str())], None).await;
        assert_eq!(zelta.body["data"]["paymentLink"]["status"], "cancelled");
        let payments = call(&app, Method::POST, &format!("/compat/payments/payments/{id}/cancel"), &[("X-API-Key", app.key.as_str())], None).await;
        assert_eq!(payments.status, StatusCode::OK, "Payments: a no-op");
        let plexy = call(&app, Method::DELETE, &format!("/compat/plexy/v1/payment-links/{id}"), &[("Authorization", app.key.as_str())], None).await;
        assert_eq!(plexy.status, StatusCode::UNPROCESSABLE_ENTITY, "Plexy: already cancelled");
        assert_eq!(app.event_types(&id).await, ["payment_link.created", "payment_link.cancelled"], "one cancel, one event");

        // Created through Zelta, cancelled natively and seen by Connect.
        let created = call(&app, Method::POST, "/compat/zelta/v1/payment-links", &[("X-API-Key", app.key.as_str()), ("Content-Type", "application/json")], Some(r#"{"amount": 900}"#)).await;
        let id = created.body["data"]["paymentLink"]["id"].as_str().unwrap().to_owned();
        assert_eq!(app.cancel(&id, json!({"reason": "native"})).await.status, StatusCode::OK);
        let connect = call(&app, Method::GET, &format!("/compat/connect/payment-links/{id}"), &[("X-API-Key", app.key.as_str())], None).await;
        assert_eq!(connect.body["status"], "CANCELLED");

        // Created through Plexy, cancelled through Connect, seen by Gale.
        let created = call(&app, Method::POST, "/compat/plexy/v1/payment-links", &[("Authorization", app.key.as_str()), ("Content-Type", "application/json")], Some(r#"{"amount": 700, "currency": "GBP"}"#)).await;
        let id = created.body["external_id"].as_str().unwrap().to_owned();
        let connect = call(&app, Method::POST, &format!("/compat/connect/payment-links/{id}/cancel"), &[("X-API-Key", app.key.as_str())], None).await;
        assert_eq!(connect.status, StatusCode::OK);
        let gale = call(&app, Method::GET, &format!("/compat/gale/v2/payment-links/{id}"), &[("Authorization", auth.as_str())], None).await;
        assert_eq!(gale.body["status"], "cancelled");
        assert_eq!(gale.body["amount_cents"], 700);
    }
}

/// Every surface that cancels, and how it is asked to.
#[derive(Debug, Clone, Copy)]
enum Surface {
    Native,
    Gale,
    Zelta,
    Payments,
    Connect,
    Plexy,
}

impl Surface {
    const ALL: [Surface; 6] = [
        Surface::Native,
        Surface::Gale,
        Surface::Zelta,
        Surface::Payments,
        Surface::Connect,
        Surface::Plexy,
    ];

    async fn cancel(self, app: &TestApp, id: &str) -> Response {
        let bearer = bearer(app);
        let key = app.key.as_str();
        let (method, path, header) = match self {
            Surface::Native => (
                Method::POST,
                format!("/v1/payment-links/{id}/cancel"),
                ("Authorization", bearer.as_str()),
            ),
            Surface::Gale => (
                Method::POST,
                format!("/compat/gale/v2/payment-links/{id}/cancel"),
                ("Authorization", bearer.as_str()),
            ),
            Surface::Zelta => (
                Method::PATCH,
                format!("/compat/zelta/v1/payment-links/{id}/cancel"),
                ("X-API-Key", key),
            ),
            Surface::Payments => (
                Method::POST,
                format!("/compat/payments/payments/{id}/cancel"),
                ("X-API-Key", key),
            ),
            Surface::Connect => (
                Method::POST,
                format!("/compat/connect/payment-links/{id}/cancel"),
                ("X-API-Key", key),
            ),
            Surface::Plexy => (
                Method::DELETE,
                format!("/compat/plexy/v1/payment-links/{id}"),
                ("Authorization", key),
            ),
        };
        call(app, method, &path, &[header], None).await
    }

    fn paid_word(self) -> &'static str {
        match self {
            Surface::Native => "been paid",
            Surface::Gale => "status 'paid'",
            Surface::Zelta => "already completed",
            Surface::Payments => "is paid",
            Surface::Connect => "status COMPLETED",
            Surface::Plexy => "is Paid",
        }
    }

    fn refusal_status(self) -> StatusCode {
        match self {
            Surface::Native | Surface::Payments | Surface::Connect => StatusCode::CONFLICT,
            Surface::Gale | Surface::Zelta => StatusCode::BAD_REQUEST,
            Surface::Plexy => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// Each document is valid OpenAPI 3.1 by `openapi-spec-validator` (the
/// Python reference validator), when it is installed; CI installs it.
fn assert_valid_openapi(name: &str, document: &serde_json::Value) {
    use std::io::Write;
    // Valid OpenAPI 3.1, and every example valid against its own schema.
    let check = r#"
import json, sys
import jsonschema, referencing
from openapi_spec_validator import validate
document = json.load(sys.stdin)
validate(document)
registry = referencing.Registry().with_resource(
    "urn:document",
    referencing.Resource.from_contents(document, default_specification=referencing.jsonschema.DRAFT202012),
)
bad = []
def pointer(*segments):
    return "/".join(s.replace("~", "~0").replace("/", "~1") for s in segments)
for path, item in document["paths"].items():
    for method, operation in item.items():
        media = [("request", ("requestBody", "content", t), c) for t, c in operation.get("requestBody", {}).get("content", {}).items()]
        for status, response in operation["responses"].items():
            media += [(status, ("responses", status, "content", t), c) for t, c in (response.get("content") or {}).items()]
        for where, at, content in media:
            if "example" not in content:
                continue
            # The schema where it stands, so its references resolve in the document.
            schema = {"$ref": "urn:document#/" + pointer("paths", path, method, *at, "schema")}
            validator = jsonschema.Draft202012Validator(schema, registry=registry)
            for error in validator.iter_errors(content["example"]):
                bad.append(f"{method} {path} {where}: {error.message}")
if bad:
    sys.exit("examples that do not match their schemas:\n" + "\n".join(bad))
"#;
    let available = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !available {
        assert!(
            std::env::var("CI").is_err(),
            "CI validates every OpenAPI document: install openapi-spec-validator"
        );
        eprintln!("SKIPPED: validating {name} (pip install openapi-spec-validator)");
        return;
    }
    let mut child = std::process::Command::new("python3")
        .args(["-c", check])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(document.to_string().as_bytes())
        .unwrap();
    // Bounded: the validator answers in well under a second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the validator of {name} hangs"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name} is not valid OpenAPI 3.1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every operationId of a document, each once.
fn assert_unique_operation_ids(name: &str, document: &serde_json::Value) {
    let mut seen = std::collections::BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if let Some(id) = operation["operationId"].as_str() {
                assert!(
                    seen.insert(id.to_owned()),
                    "{name}: operationId {id} ({method} {path}) is not unique"
                );
            }
        }
    }
}

#[tokio::test]
async fn each_dialect_has_its_own_valid_openapi_document() {
    let app = TestApp::spawn().await;
    let native = app.get("/openapi.json").await.body;
    let native_paths = native["paths"].as_object().unwrap();
    assert!(
        native_paths
            .keys()
            .all(|path| !path.starts_with("/compat/")),
        "the native document carries no other provider's operation"
    );
    assert_unique_operation_ids("/openapi.json", &native);
    assert_valid_openapi("/openapi.json", &native);
    // The metadata filter as the deepObject it is; the actor union told
    // apart by its `type`.
    let list = &native_paths["/v1/payment-links"]["get"]["parameters"];
    let metadata = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "metadata")
        .expect("metadata filter");
    assert_eq!(metadata["style"], "deepObject");
    assert_eq!(metadata["explode"], true);
    assert_eq!(metadata["schema"]["type"], "object");
    let actor = &native["components"]["schemas"]["ActorBody"];
    assert_eq!(actor["discriminator"]["propertyName"], "type");
    assert_eq!(
        actor["discriminator"]["mapping"]["api_key"],
        "#/components/schemas/ApiKeyActor"
    );
    assert_eq!(actor["oneOf"].as_array().unwrap().len(), 3);
    // Every native write documents its Idempotency-Key and what it answers
    // under one, and every authenticated operation its rate limit.
    for (path, item) in native_paths {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            // A summary, a description, and an example of what it takes
            // and what it answers.
            for field in ["summary", "description"] {
                assert!(
                    operation[field].as_str().is_some_and(|t| !t.is_empty()),
                    "{method} {path}: {field}"
                );
            }
            if let Some(body) = operation["requestBody"]["content"].as_object() {
                assert!(
                    body.values().all(|m| m.get("example").is_some()),
                    "{method} {path}: request example"
                );
            }
            let answers: Vec<_> = responses
                .iter()
                .filter(|(status, _)| status.starts_with('2'))
                .filter_map(|(_, r)| r["content"].as_object())
                .flat_map(|content| content.values())
                .filter(|media| media.get("schema").is_some())
                .collect();
            assert!(
                answers.iter().all(|m| m.get("example").is_some()),
                "{method} {path}: answer example"
            );
            if path.starts_with("/v1/") {
                assert!(
                    responses.contains_key("429"),
                    "{method} {path} documents 429"
                );
            }
            if matches!(method.as_str(), "post" | "patch" | "delete") && path.starts_with("/v1/") {
                let header = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header");
                assert!(header, "{method} {path} documents Idempotency-Key");
                for status in ["409", "422"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} documents {status}"
                    );
                }
            }
        }
    }
    let event_types =
        &native["components"]["schemas"]["EventResource"]["properties"]["type"]["enum"];
    assert_eq!(
        event_types.as_array().map(Vec::len),
        Some(paylink::domain::EventType::ALL.len()),
        "event types are an enum: {event_types}"
    );
    for (dialect, operations) in [
        (
            "gale",
            &[
                ("/v2/payment-links", "post"),
                ("/v2/payment-links", "get"),
                ("/v2/payment-links/{id}", "get"),
                ("/v2/payment-links/{id}/cancel", "post"),
            ][..],
        ),
        (
            "zelta",
            &[
                ("/v1/payment-links", "post"),
                ("/v1/payment-links", "get"),
                ("/v1/payment-links/{hashUrl}", "get"),
                ("/v1/payment-links/{hashUrl}/cancel", "patch"),
            ][..],
        ),
        (
            "payments",
            &[
                ("/payments", "post"),
                ("/payments", "get"),
                ("/payments/{id}", "get"),
                ("/payments/{id}/cancel", "post"),
            ][..],
        ),
        (
            "connect",
            &[
                ("/payment-links", "post"),
                ("/payment-links", "get"),
                ("/payment-links/{paymentLinkId}", "get"),
                ("/payment-links/{paymentLinkId}/cancel", "post"),
            ][..],
        ),
        (
            "plexy",
            &[
                ("/v1/payment-links", "post"),
                ("/v1/payment-links", "get"),
                ("/v1/payment-links/statistics", "get"),
                ("/v1/payment-links/order-reference/{order_reference}", "get"),
                ("/v1/payment-links/{external_id}", "get"),
                ("/v1/payment-links/{external_id}", "patch"),
                ("/v1/payment-links/{external_id}", "delete"),
            ][..],
        ),
    ] {
        // Served without a key, like the native document.
        let path = format!("/compat/{dialect}/openapi.json");
        let response = app.request(Method::GET, &path, None, None).await;
        assert_eq!(response.status, StatusCode::OK, "{path}");
        let document = response.body;
        let server = document["servers"][0]["url"].as_str().unwrap();
        assert_eq!(
            server,
            format!("{}/compat/{dialect}", app.base),
            "{path}: its base URL"
        );
        let paths = document["paths"].as_object().unwrap();
        assert_eq!(
            paths.len(),
            operations
                .iter()
                .map(|(p, _)| p)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            "{path}: only its own paths"
        );
        for (operation_path, method) in operations {
            assert!(
                paths
                    .get(*operation_path)
                    .and_then(|p| p.get(*method))
                    .is_some(),
                "{path}: {method} {operation_path} is documented"
            );
        }
        assert_unique_operation_ids(&path, &document);
        assert_valid_openapi(&path, &document);
    }
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_405_even_under_a_used_idempotency_key() {
    let app = TestApp::spawn().await;
    let id = app.create_link().await;
    let key = app.key.clone();
    let path = format!("/compat/connect/payment-links/{id}/cancel");
    let cancel = [("X-API-Key", key.as_str()), ("X-Idempotency-Key", "k-405")];
    let cancelled = call(&app, Method::POST, &path, &cancel, None).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    // The same key on a method the route does not take: no idempotency
    // answer (that key belongs to a request that could run), a 405.
    for method in [Method::PATCH, Method::PUT, Method::DELETE] {
        let refused = call(&app, method.clone(), &path, &cancel, None).await;
        assert_eq!(
            refused.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}: {}",
            refused.body
        );
        assert_eq!(
            refused.body["error"]["code"], "INVALID_REQUEST",
            "in Connect's envelope"
        );
    }
    let native = call(
        &app,
        Method::PUT,
        &format!("/v1/payment-links/{id}"),
        &[
            ("Authorization", &format!("Bearer {key}")),
            ("Idempotency-Key", "k-405"),
        ],
        None,
    )
    .await;
    assert_eq!(
        native.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{}",
        native.body
    );
}

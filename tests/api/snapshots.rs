//! Snapshots (insta) of every wire object and error, native and in each
//! dialect, so a change to what a client reads shows as a diff. Each
//! surface is one transcript of requests a client makes; ids, slugs,
//! secrets, times and ports are replaced by placeholders that keep their
//! shape. Both backends share one snapshot: they must answer alike.

use jiff::SignedDuration;
use regex::Regex;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Requests and their normalized answers, in order.
struct Transcript {
    app: TestApp,
    steps: Vec<Value>,
    /// The surface prints every time with exactly three fraction digits
    /// (Zelta), a shape the snapshot keeps. Elsewhere a time's fraction is
    /// as long as its digits need: a time whose microseconds end in 000
    /// prints three by chance, so the shape is not kept.
    millisecond_times: bool,
}

impl Transcript {
    async fn new() -> Self {
        Self {
            app: TestApp::spawn().await,
            steps: Vec::new(),
            millisecond_times: false,
        }
    }

    /// Sends `body` (raw) with exactly `headers`, records the answer.
    async fn call(
        &mut self,
        step: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Value {
        let mut request = self
            .app
            .client
            .request(method, format!("{}{}", self.app.base, path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        let response = TestApp::read(request.send().await.expect("sent")).await;
        self.steps.push(json!({
            "step": step,
            "status": response.status.as_u16(),
            "body": normalize(&response.body, self.millisecond_times),
        }));
        response.body
    }

    /// Links in each status, made natively: active, paid, expired,
    /// cancelled, processing (in that order).
    async fn links_in_every_status(&self) -> [String; 5] {
        let app = &self.app;
        let expiring = app
            .create_link_with(json!({"expires_at": (jiff::Timestamp::now() + SignedDuration::from_hours(1)).to_string()}))
            .await
            .id();
        app.advance(SignedDuration::from_hours(2));
        let paid = app.create_link().await;
        app.pay(&paid).await;
        let cancelled = app.create_link().await;
        assert_eq!(
            app.cancel(&cancelled, json!({"reason": "duplicate"}))
                .await
                .status,
            200
        );
        let processing = app.create_link().await;
        app.start_payment(&processing).await;
        let active = app.create_link().await;
        [active, paid, expiring, cancelled, processing]
    }

    async fn slug(&self, id: &str) -> String {
        self.app.link(id).await["slug"].as_str().unwrap().to_owned()
    }
}

/// Placeholders for what differs between runs, keeping each value's shape:
/// random runs of 16+ base62 characters, a loopback address's port, RFC 3339
/// times (with or without a fraction) and Unix times.
fn normalize(value: &Value, millisecond_times: bool) -> Value {
    static PATTERNS: std::sync::OnceLock<(Regex, Regex, Regex)> = std::sync::OnceLock::new();
    let (random, host, time) = PATTERNS.get_or_init(|| {
        (
            Regex::new(r"[A-Za-z0-9]{16,}").unwrap(),
            Regex::new(r"127\.0\.0\.1:\d+").unwrap(),
            Regex::new(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})").unwrap(),
        )
    });
    match value {
        Value::String(text) => {
            let text = host.replace_all(text, "[host]");
            let text = time.replace_all(&text, |captures: &regex::Captures| {
                let fraction = match captures.get(1).map(|m| m.as_str().len() - 1) {
                    None => String::new(),
                    Some(3) if millisecond_times => ".mmm".into(),
                    Some(_) => ".fraction".into(),
                };
                format!("[time{fraction}{}]", &captures[2])
            });
            Value::String(random.replace_all(&text, "[random]").into_owned())
        }
        Value::Number(number) => match number.as_i64() {
            Some(seconds) if (1_600_000_000..4_000_000_000).contains(&seconds) => {
                json!("[unix seconds]")
            }
            Some(millis) if (1_600_000_000_000..4_000_000_000_000).contains(&millis) => {
                json!("[unix millis]")
            }
            _ => value.clone(),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| normalize(item, millisecond_times))
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| (key.clone(), normalize(value, millisecond_times)))
                .collect(),
        ),
        Value::Null | Value::Bool(_) => value.clone(),
    }
}

backend_tests! {
    async fn native_objects_and_errors() {
        let mut t = Transcript::new().await;
        let bearer = format!("Bearer {}", t.app.key);
        let auth = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
        let created = t.call("create, every field", Method::POST, "/v1/payment-links", &auth, Some(&json!({
            "amount": 4995, "currency": "USD", "description": "Premium Blood Pressure Monitor",
            "customer": {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"},
            "line_items": [{"product_id": "sku-1", "name": "Monitor", "quantity": 1, "unit_amount": 4995}],
            "order_reference": "ORD-1", "metadata": {"cart": "42"},
            "success_url": "https://shop.example/thanks", "cancel_url": "https://shop.example/cart",
        }).to_string())).await;
        let id = created["id"].as_str().unwrap().to_owned();
        t.call("retrieve", Method::GET, &format!("/v1/payment-links/{id}"), &auth, None).await;
        t.call("update", Method::PATCH, &format!("/v1/payment-links/{id}"), &auth, Some(r#"{"metadata": {"cart": "43"}}"#)).await;
        t.call("list", Method::GET, "/v1/payment-links?limit=1", &auth, None).await;
        t.call("cancel", Method::POST, &format!("/v1/payment-links/{id}/cancel"), &auth, Some(r#"{"reason": "customer asked"}"#)).await;
        t.call("cancel again", Method::POST, &format!("/v1/payment-links/{id}/cancel"), &auth, Some("{}")).await;
        t.call("events", Method::GET, &format!("/v1/payment-links/{id}/events"), &auth, None).await;
        let paid = t.app.create_link().await;
        t.app.pay(&paid).await;
        t.call("refund", Method::POST, &format!("/v1/payment-links/{paid}/refunds"), &auth, Some(r#"{"amount": 1000, "reason": "damaged"}"#)).await;
        t.call("refunds", Method::GET, &format!("/v1/payment-links/{paid}/refunds"), &auth, None).await;
        t.call("over-refund", Method::POST, &format!("/v1/payment-links/{paid}/refunds"), &auth, Some(r#"{"amount": 999999}"#)).await;
        t.call("stats", Method::GET, "/v1/payment-links/stats", &auth, None).await;
        t.call("bulk cancel", Method::POST, "/v1/payment-links/cancel", &auth, Some(&json!({"ids": [paid, "plink_nothing"]}).to_string())).await;
        t.call("events list", Method::GET, "/v1/events?limit=1", &auth, None).await;
        t.call("webhook endpoint", Method::POST, "/v1/webhook-endpoints", &auth, Some(r#"{"url": "https://hooks.example/paylink"}"#)).await;
        t.call("webhook endpoints", Method::GET, "/v1/webhook-endpoints", &auth, None).await;
        t.call("invalid field", Method::POST, "/v1/payment-links", &auth, Some(r#"{"amount": 0, "currency": "USD"}"#)).await;
        t.call("unknown field", Method::POST, "/v1/payment-links", &auth, Some(r#"{"amount": 100, "currency": "USD", "colour": "red"}"#)).await;
        t.call("malformed JSON", Method::POST, "/v1/payment-links", &auth, Some("{")).await;
        t.call("not JSON", Method::POST, "/v1/payment-links", &[("Authorization", bearer.as_str())], Some("amount=1")).await;
        t.call("bad filter", Method::GET, "/v1/payment-links?status=pending", &auth, None).await;
        t.call("missing", Method::GET, "/v1/payment-links/plink_nothing", &auth, None).await;
        t.call("no key", Method::GET, "/v1/payment-links", &[], None).await;
        t.call("bad key", Method::GET, "/v1/payment-links", &[("Authorization", "Bearer pl_test_nope")], None).await;
        t.call("unknown route", Method::GET, "/v1/nothing", &auth, None).await;
        t.call("wrong method", Method::PUT, "/v1/payment-links", &auth, None).await;
        let keyed = [("Authorization", bearer.as_str()), ("Content-Type", "application/json"), ("Idempotency-Key", "snap-1")];
        t.call("idempotent create", Method::POST, "/v1/payment-links", &keyed, Some(r#"{"amount": 100, "currency": "USD"}"#)).await;
        t.call("key reused", Method::POST, "/v1/payment-links", &keyed, Some(r#"{"amount": 200, "currency": "USD"}"#)).await;
        insta::assert_json_snapshot!("native", t.steps);
    }

    async fn gale_objects_and_errors() {
        let mut t = Transcript::new().await;
        let bearer = format!("Bearer {}", t.app.key);
        let auth = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
        let [active, paid, expired, cancelled, processing] = t.links_in_every_status().await;
        let created = t.call("create", Method::POST, "/compat/gale/v2/payment-links", &auth, Some(&json!({
            "amount_cents": 2500, "currency": "USD", "description": "Consult",
            "customer": {"email": "ada@example.com"},
            "products": [{"merchant_product_id": "sku-1", "name": "Hour", "quantity": 1, "price_cents": 2500}],
        }).to_string())).await;
        let id = created["id"].as_str().unwrap().to_owned();
        t.call("retrieve", Method::GET, &format!("/compat/gale/v2/payment-links/{id}"), &auth, None).await;
        t.call("list", Method::GET, "/compat/gale/v2/payment-links?status=cancelled", &auth, None).await;
        t.call("cancel", Method::POST, &format!("/compat/gale/v2/payment-links/{active}/cancel"), &auth, Some(r#"{"reason": "duplicate"}"#)).await;
        for (label, link) in [("paid", &paid), ("expired", &expired), ("cancelled", &cancelled), ("processing", &processing)] {
            t.call(&format!("cancel {label}"), Method::POST, &format!("/compat/gale/v2/payment-links/{link}/cancel"), &auth, None).await;
        }
        t.call("invalid field", Method::POST, "/compat/gale/v2/payment-links", &auth, Some(r#"{"amount_cents": 0, "currency": "USD"}"#)).await;
        t.call("bad filter", Method::GET, "/compat/gale/v2/payment-links?status=pending", &auth, None).await;
        t.call("missing", Method::GET, "/compat/gale/v2/payment-links/plink_abc123xyz", &auth, None).await;
        t.call("no key", Method::GET, "/compat/gale/v2/payment-links", &[], None).await;
        t.call("malformed JSON", Method::POST, "/compat/gale/v2/payment-links", &auth, Some("{")).await;
        insta::assert_json_snapshot!("gale", t.steps);
    }

    async fn zelta_objects_and_errors() {
        let mut t = Transcript::new().await;
        t.millisecond_times = true;
        let key = t.app.key.clone();
        let auth = [("X-API-Key", key.as_str()), ("Content-Type", "application/json")];
        let [active, paid, expired, cancelled, processing] = t.links_in_every_status().await;
        let created = t.call("create", Method::POST, "/compat/zelta/v1/payment-links", &auth, Some(r#"{"amount": 2500, "concept": "Consulting Service", "customerName": "John Doe", "metadata": {"orderId": "ORD-001"}}"#)).await;
        let hash = created["data"]["paymentLink"]["hashUrl"].as_str().map(str::to_owned).unwrap_or_else(|| "none".into());
        t.call("retrieve", Method::GET, &format!("/compat/zelta/v1/payment-links/{hash}"), &auth, None).await;
        t.call("list", Method::GET, "/compat/zelta/v1/payment-links?limit=2", &auth, None).await;
        let active_hash = t.slug(&active).await;
        t.call("cancel", Method::PATCH, &format!("/compat/zelta/v1/payment-links/{active_hash}/cancel"), &auth, None).await;
        for (label, link) in [("paid", &paid), ("expired", &expired), ("cancelled", &cancelled), ("processing", &processing)] {
            t.call(&format!("cancel {label}"), Method::PATCH, &format!("/compat/zelta/v1/payment-links/{link}/cancel"), &auth, None).await;
        }
        t.call("invalid field", Method::POST, "/compat/zelta/v1/payment-links", &auth, Some(r#"{"amount": 0}"#)).await;
        t.call("missing", Method::PATCH, "/compat/zelta/v1/payment-links/abc123/cancel", &auth, None).await;
        t.call("no key", Method::PATCH, "/compat/zelta/v1/payment-links/abc123/cancel", &[], None).await;
        t.call("bad key", Method::PATCH, "/compat/zelta/v1/payment-links/abc123/cancel", &[("X-API-Key", "your-api-key-here")], None).await;
        insta::assert_json_snapshot!("zelta", t.steps);
    }

    async fn payments_objects_and_errors() {
        let mut t = Transcript::new().await;
        let key = t.app.key.clone();
        let auth = [("X-API-Key", key.as_str())];
        let [active, paid, expired, cancelled, processing] = t.links_in_every_status().await;
        let json_auth = [("X-API-Key", key.as_str()), ("Content-Type", "application/json")];
        t.call("create", Method::POST, "/compat/payments/payments", &json_auth, Some(r#"{"kind": "link", "amountTotal": 1500, "currency": "EUR", "description": "Monitor", "metadata": {"order": "A-1"}}"#)).await;
        t.call("create invalid", Method::POST, "/compat/payments/payments", &json_auth, Some(r#"{"amountTotal": -1, "currency": "EUR"}"#)).await;
        t.call("list", Method::GET, "/compat/payments/payments?status=canceled&limit=1", &auth, None).await;
        t.call("list bad status", Method::GET, "/compat/payments/payments?status=active", &auth, None).await;
        t.call("retrieve", Method::GET, &format!("/compat/payments/payments/{active}"), &auth, None).await;
        t.call("cancel", Method::POST, &format!("/compat/payments/payments/{active}/cancel"), &auth, None).await;
        for (label, link) in [("paid", &paid), ("expired", &expired), ("cancelled", &cancelled), ("processing", &processing)] {
            t.call(&format!("cancel {label}"), Method::POST, &format!("/compat/payments/payments/{link}/cancel"), &auth, None).await;
        }
        t.call("missing", Method::POST, "/compat/payments/payments/plink_nothing/cancel", &auth, None).await;
        t.call("unknown charge", Method::POST, "/compat/payments/payments/pay_nothing/cancel", &auth, None).await;
        t.call("no key", Method::GET, &format!("/compat/payments/payments/{active}"), &[], None).await;
        insta::assert_json_snapshot!("payments", t.steps);
    }

    async fn connect_objects_and_errors() {
        let mut t = Transcript::new().await;
        let key = t.app.key.clone();
        let auth = [("X-API-Key", key.as_str())];
        let [active, paid, expired, cancelled, processing] = t.links_in_every_status().await;
        let json_auth = [("X-API-Key", key.as_str()), ("Content-Type", "application/json")];
        t.call("create", Method::POST, "/compat/connect/payment-links", &json_auth, Some(r#"{"amount": 1500, "currency": "EUR", "description": "Pay your monthly subscription"}"#)).await;
        t.call("create invalid", Method::POST, "/compat/connect/payment-links", &json_auth, Some(r#"{"amount": 1500, "currency": "EURO"}"#)).await;
        t.call("list", Method::GET, "/compat/connect/payment-links?status=COMPLETED&limit=1", &auth, None).await;
        t.call("list bad status", Method::GET, "/compat/connect/payment-links?status=PAID", &auth, None).await;
        t.call("retrieve", Method::GET, &format!("/compat/connect/payment-links/{active}"), &auth, None).await;
        t.call("cancel", Method::POST, &format!("/compat/connect/payment-links/{active}/cancel"), &auth, None).await;
        for (label, link) in [("paid", &paid), ("expired", &expired), ("cancelled", &cancelled), ("processing", &processing)] {
            t.call(&format!("cancel {label}"), Method::POST, &format!("/compat/connect/payment-links/{link}/cancel"), &auth, None).await;
        }
        t.call("missing", Method::GET, "/compat/connect/payment-links/plink_nothing", &auth, None).await;
        t.call("no key", Method::GET, &format!("/compat/connect/payment-links/{active}"), &[], None).await;
        insta::assert_json_snapshot!("connect", t.steps);
    }

    async fn plexy_objects_and_errors() {
        let mut t = Transcript::new().await;
        let key = t.app.key.clone();
        let auth = [("Authorization", key.as_str()), ("Content-Type", "application/json")];
        let [active, paid, expired, cancelled, processing] = t.links_in_every_status().await;
        let created = t.call("create", Method::POST, "/compat/plexy/v1/payment-links", &auth, Some(r#"{"amount": 1500, "currency": "EUR", "order_reference": "ORD-9"}"#)).await;
        let id = created["external_id"].as_str().unwrap().to_owned();
        t.call("retrieve", Method::GET, &format!("/compat/plexy/v1/payment-links/{id}"), &auth, None).await;
        t.call("by order reference", Method::GET, "/compat/plexy/v1/payment-links/order-reference/ORD-9", &auth, None).await;
        t.call("list", Method::GET, "/compat/plexy/v1/payment-links?status=Cancelled", &auth, None).await;
        t.call("statistics", Method::GET, "/compat/plexy/v1/payment-links/statistics", &auth, None).await;
        t.call("update", Method::PATCH, &format!("/compat/plexy/v1/payment-links/{id}"), &auth, Some(r#"{"expires_at": "2099-01-01T00:00:00Z"}"#)).await;
        t.call("update paid", Method::PATCH, &format!("/compat/plexy/v1/payment-links/{paid}"), &auth, Some(r#"{"expires_at": "2099-01-01T00:00:00Z"}"#)).await;
        t.call("delete", Method::DELETE, &format!("/compat/plexy/v1/payment-links/{active}"), &auth, None).await;
        for (label, link) in [("paid", &paid), ("expired", &expired), ("cancelled", &cancelled), ("processing", &processing)] {
            t.call(&format!("delete {label}"), Method::DELETE, &format!("/compat/plexy/v1/payment-links/{link}"), &auth, None).await;
        }
        t.call("quoted id", Method::DELETE, "/compat/plexy/v1/payment-links/%22abcd1234-efgh-5678-ijkl-9012mnop3456%22", &auth, None).await;
        t.call("missing", Method::DELETE, "/compat/plexy/v1/payment-links/plink_nothing", &auth, None).await;
        t.call("no reference", Method::GET, "/compat/plexy/v1/payment-links/order-reference/ORD-0", &auth, None).await;
        t.call("invalid field", Method::POST, "/compat/plexy/v1/payment-links", &auth, Some(r#"{"amount": 0, "currency": "EUR"}"#)).await;
        t.call("no key", Method::GET, "/compat/plexy/v1/payment-links", &[], None).await;
        insta::assert_json_snapshot!("plexy", t.steps);
    }
}

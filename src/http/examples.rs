//! One example of each object the native API answers and each request it
//! takes, for the OpenAPI document. Links and events are rendered by the
//! code that renders real answers, from a link the domain itself created
//! and cancelled, so those examples cannot drift from the wire; the rest
//! are written out and checked against their schemas by the tests that
//! validate the document.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::wire::{EventResource, PaymentLinkList, PaymentLinkResource};
use crate::domain::link::Creation;
use crate::domain::{Actor, CancelPolicy, Customer, NewLink, Reason};

/// Each example by the name of the component schema it illustrates.
pub fn by_schema(public_url: &str) -> BTreeMap<&'static str, Value> {
    let now: Timestamp = "2026-01-15T10:00:00Z".parse().expect("a fixed time");
    let actor = Actor::ApiKey {
        id: "key_8Kq2mD4xW1pZ".into(),
    };
    let (created, created_event) = NewLink {
        amount: Some(4995),
        currency: Some("USD".into()),
        description: Some("Premium Blood Pressure Monitor".into()),
        customer: Some(Customer {
            email: Some("jane@example.com".into()),
            first_name: Some("Jane".into()),
            last_name: Some("Doe".into()),
        }),
        order_reference: Some("ORD-1042".into()),
        metadata: Some(BTreeMap::from([("order".into(), "A-1".into())])),
        success_url: Some("https://shop.example.com/thanks".into()),
        ..NewLink::default()
    }
    .create(Creation {
        account_id: "acct_example",
        livemode: false,
        actor: actor.clone(),
        now,
        default_lifetime: SignedDuration::from_hours(24 * 7),
    })
    .expect("a valid example link");
    let cancelled = created
        .cancel(
            &CancelPolicy::NATIVE,
            Some(Reason::parse("Order cancelled by customer".into()).expect("short")),
            Reason::parse_field(
                "customer_message",
                Some("Your order was cancelled at your request; nothing was charged.".into()),
            )
            .expect("short"),
            actor,
            now + SignedDuration::from_mins(5),
        )
        .expect("an active link cancels")
        .expect("and changes");
    let link = json!(PaymentLinkResource::new(created.clone(), public_url));
    let event = json!(EventResource::new(cancelled.event, public_url));
    let created_event = json!(EventResource::new(created_event, public_url));
    let refund = json!({
        "id": "re_3xY7pQ2mN8kL", "object": "refund", "payment_link": created.id, "livemode": false,
        "amount": 1000, "currency": "USD", "status": "succeeded", "kind": "requested",
        "reason": "Damaged in transit", "payment_id": "pay_9Wq4rT6yU1iO",
        "processor_refund_id": "re_test_1", "failure_message": null,
        "created_at": "2026-01-16T09:30:00Z", "updated_at": "2026-01-16T09:30:01Z",
    });
    let endpoint = json!({
        "id": "we_5tR8eW2qA9sD", "object": "webhook_endpoint",
        "url": "https://shop.example.com/webhooks/paylink", "description": "Order service",
        "events": ["payment_link.paid", "payment_link.cancelled"], "format": "native",
        "enabled": true, "disabled_reason": null, "livemode": false,
        "created_at": "2026-01-15T10:00:00Z", "updated_at": "2026-01-15T10:00:00Z",
    });
    let mut endpoint_with_secret = endpoint.clone();
    endpoint_with_secret["secret"] = json!("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    BTreeMap::from([
        ("PaymentLinkResource", link.clone()),
        (
            "PaymentLinkList",
            json!(PaymentLinkList {
                object: "list",
                data: vec![PaymentLinkResource::new(created, public_url)],
                has_more: false,
            }),
        ),
        ("EventResource", event.clone()),
        (
            "EventList",
            json!({"object": "list", "data": [created_event.clone(), event.clone()]}),
        ),
        (
            "EventPageBody",
            json!({"object": "list", "data": [event.clone(), created_event], "has_more": false}),
        ),
        (
            "EventDetail",
            with_field(
                event.clone(),
                "deliveries",
                json!([{
                    "endpoint": "we_5tR8eW2qA9sD", "status": "succeeded", "next_attempt_at": null,
                    "attempts": [{"attempted_at": "2026-01-15T10:05:01Z", "status_code": 200, "latency_ms": 84, "error": null}],
                    "created_at": "2026-01-15T10:05:00Z",
                }]),
            ),
        ),
        ("RefundResource", refund.clone()),
        (
            "RefundList",
            json!({"object": "list", "data": [refund], "has_more": false}),
        ),
        ("WebhookEndpointResource", endpoint_with_secret),
        (
            "WebhookEndpointList",
            json!({"object": "list", "data": [endpoint], "has_more": false}),
        ),
        (
            "DeletedResource",
            json!({"id": "we_5tR8eW2qA9sD", "object": "webhook_endpoint", "deleted": true}),
        ),
        (
            "BulkCancelResponse",
            json!({"object": "bulk_cancel", "dry_run": false, "has_more": false,
                "data": [
                    {"id": "plink_2Fh8Kd9sLq3W", "outcome": "cancelled", "status": "cancelled"},
                    {"id": "plink_7Gt5Rw1eYp0Z", "outcome": "refused", "status": "paid",
                     "error": {"code": "invalid_state", "message": "This payment link has been paid; refund it instead (POST /v1/payment-links/{id}/refunds)."}},
                ],
                "summary": {"cancelled": 1, "refused": 1}}),
        ),
        (
            "StatsResponse",
            json!({"object": "payment_link_stats", "livemode": false,
            "created_after": "2026-01-01T00:00:00Z", "created_before": null,
            "count_by_status": {"active": 12, "processing": 0, "paid": 30, "expired": 4, "cancelled": 2},
            "data": [
                {"status": "active", "currency": "USD", "count": 12, "amount": 59940},
                {"status": "paid", "currency": "USD", "count": 30, "amount": 149850},
                {"status": "expired", "currency": "EUR", "count": 4, "amount": 8000},
                {"status": "cancelled", "currency": "USD", "count": 2, "amount": 9990},
            ]}),
        ),
        ("Health", json!({"status": "ok"})),
        (
            "ErrorBody",
            json!({"error": {"type": "invalid_request_error", "code": "invalid_request",
                "message": "`amount` must be a positive integer in minor units (got 0).", "param": "amount",
                "request_id": "req_4fQ9wE2rT7yU"}}),
        ),
        // Requests.
        (
            "CreatePaymentLinkRequest",
            json!({"amount": 4995, "currency": "USD", "description": "Premium Blood Pressure Monitor",
                "order_reference": "ORD-1042", "metadata": {"order": "A-1"},
                "success_url": "https://shop.example.com/thanks"}),
        ),
        (
            "UpdatePaymentLinkRequest",
            json!({"expires_at": "2026-02-15T10:00:00Z", "metadata": {"order": "A-1", "note": "extended"}}),
        ),
        (
            "CancelRequest",
            json!({"reason": "Order cancelled by customer",
                "customer_message": "Your order was cancelled at your request; nothing was charged."}),
        ),
        (
            "BulkCancelRequest",
            json!({"status": "active", "created_before": "2026-01-01T00:00:00Z", "reason": "Year-end cleanup", "dry_run": true}),
        ),
        (
            "CreateRefundRequest",
            json!({"amount": 1000, "reason": "Damaged in transit"}),
        ),
        (
            "CreateWebhookEndpointRequest",
            json!({"url": "https://shop.example.com/webhooks/paylink", "events": ["payment_link.paid", "payment_link.cancelled"], "description": "Order service"}),
        ),
        ("UpdateWebhookEndpointRequest", json!({"enabled": false})),
        ("RedeliverRequest", json!({"endpoint": "we_5tR8eW2qA9sD"})),
        ("RotateSecretRequest", json!({})),
    ])
}

/// `object` with `field` set to `value`.
fn with_field(mut object: Value, field: &str, value: Value) -> Value {
    object[field] = value;
    object
}

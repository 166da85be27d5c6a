//! The no-storage baseline: a plain axum server on the same runtime
//! settings as paylink that parses a create's JSON body and answers about
//! 600 bytes of JSON, for GET and POST alike. Whatever paylink does beyond
//! this (authentication, the store, its middleware) is what the ratio
//! measures. It runs in a process of its own (this bench binary, started
//! again with `--serve-baseline`), as paylink does.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

/// The create body the bench sends to both servers.
pub const CREATE_BODY: &str = r#"{"amount":4995,"currency":"USD","description":"Bench order","order_reference":"ORD-1042","metadata":{"order_id":"1042","channel":"bench"}}"#;

#[derive(Deserialize)]
#[allow(dead_code)] // parsed, as paylink parses it; not all of it is read
struct CreateBody {
    amount: i64,
    currency: String,
    description: Option<String>,
    order_reference: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Answer {
    id: String,
    object: &'static str,
    url: String,
    amount: i64,
    amount_refunded: i64,
    currency: String,
    description: Option<String>,
    order_reference: Option<String>,
    metadata: BTreeMap<String, String>,
    status: &'static str,
    livemode: bool,
    payment_type: &'static str,
    success_url: Option<String>,
    cancel_url: Option<String>,
    expires_at: &'static str,
    created_at: &'static str,
    updated_at: &'static str,
    cancelled_at: Option<String>,
    cancellation_reason: Option<String>,
    paid_at: Option<String>,
    payment_id: Option<String>,
}

fn answer(id: String, body: Option<CreateBody>) -> Answer {
    let body = body.unwrap_or(CreateBody {
        amount: 4995,
        currency: "USD".into(),
        description: Some("Bench order".into()),
        order_reference: Some("ORD-1042".into()),
        metadata: BTreeMap::new(),
    });
    Answer {
        url: format!("http://127.0.0.1:8080/pay/{id}xxxxxxxxxxxxxxxxxxxxxxxx"),
        id,
        object: "payment_link",
        amount: body.amount,
        amount_refunded: 0,
        currency: body.currency,
        description: body.description,
        order_reference: body.order_reference,
        metadata: body.metadata,
        status: "active",
        livemode: false,
        payment_type: "one_time",
        success_url: Some("https://shop.example/thanks".into()),
        cancel_url: Some("https://shop.example/cart".into()),
        expires_at: "2026-12-16T12:00:00.000000Z",
        created_at: "2026-12-02T12:00:00.000000Z",
        updated_at: "2026-12-02T12:00:00.000000Z",
        cancelled_at: None,
        cancellation_reason: None,
        paid_at: None,
        payment_id: None,
    }
}

async fn create(Json(body): Json<CreateBody>) -> Json<Answer> {
    Json(answer("plink_Baseline00000000000000000".into(), Some(body)))
}

async fn retrieve(Path(id): Path<String>) -> Json<Answer> {
    Json(answer(id, None))
}

async fn cancel(Path(id): Path<String>, Json(_body): Json<serde_json::Value>) -> Json<Answer> {
    Json(answer(id, None))
}

/// Serves until killed, printing `addr=IP:PORT` on stdout once bound.
pub fn serve() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let app = Router::new()
            .route("/v1/payment-links", post(create))
            .route("/v1/payment-links/{id}", get(retrieve))
            .route("/v1/payment-links/{id}/cancel", post(cancel));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("addr={}", listener.local_addr().expect("address"));
        axum::serve(listener, app).await.expect("serve");
    });
}

//! kill -9 between Stripe's success and paylink's commit: a real `paylink
//! serve` (SQLite) pays through a proxy in front of localstripe; the proxy
//! lets the PaymentIntent's confirmation through to localstripe and, the
//! moment localstripe answers it succeeded, kills paylink with SIGKILL, so
//! the answer never arrives. After a restart the reconciler asks Stripe and
//! the link is paid exactly once, with the PaymentIntent Stripe charged.
//! Skipped (and said so) without localstripe, except under CI=true.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::process::Command;

use common::localstripe::{self, Localstripe};
use common::{Server, create_key, free_port};

const SECRETS_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

#[derive(Clone)]
struct Proxy {
    upstream: String,
    /// Kill paylink when a confirmation succeeds.
    armed: Arc<AtomicBool>,
    paylink_pid: Arc<AtomicU32>,
    killed: Arc<AtomicBool>,
    client: reqwest::Client,
}

async fn forward(
    State(proxy): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut request = proxy.client.request(
        method,
        format!(
            "{}{}",
            proxy.upstream,
            uri.path_and_query().map_or("", |p| p.as_str())
        ),
    );
    for name in ["authorization", "content-type", "idempotency-key"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.as_bytes());
        }
    }
    let answer = request
        .body(body)
        .send()
        .await
        .expect("localstripe answers");
    let status = answer.status().as_u16();
    let bytes = answer.bytes().await.unwrap_or_default();
    if uri.path().ends_with("/confirm") && proxy.armed.load(Ordering::SeqCst) {
        let confirmed: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if confirmed["status"] == "succeeded" {
            // Noted before the kill: the client sees paylink die at once.
            proxy.killed.store(true, Ordering::SeqCst);
            let pid = proxy.paylink_pid.load(Ordering::SeqCst);
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .await;
            return StatusCode::BAD_GATEWAY.into_response();
        }
    }
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        bytes,
    )
        .into_response()
}

fn link_in_file(path: &std::path::Path, id: &str) -> (String, i64) {
    let connection = rusqlite::Connection::open(path).unwrap();
    let status: String = connection
        .query_row(
            "select status from payment_links where id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    let pending: i64 = connection
        .query_row(
            "select count(*) from payment_attempts where link_id = ?1 and state = 'pending' and processor_reference is not null",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    (status, pending)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_stripe_s_success_and_the_commit_is_reconciled_to_paid_once() {
    let Some(stripe) = Localstripe::start("kill -9 during a Stripe payment").await else {
        return;
    };
    let proxy = Proxy {
        upstream: stripe.base.clone(),
        armed: Arc::new(AtomicBool::new(true)),
        paylink_pid: Arc::new(AtomicU32::new(0)),
        killed: Arc::new(AtomicBool::new(false)),
        client: reqwest::Client::new(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paylink.db");
    let database_url = format!("sqlite://{}", path.display());
    let key = create_key(&database_url).await;
    // The operator connects Stripe with the CLI.
    let configured = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(Server::binary())
            .args([
                "accounts",
                "set-processor",
                "chaos",
                "--mode",
                "test",
                "--processor",
                "stripe",
                "--secret-key",
                localstripe::SECRET_KEY,
                "--publishable-key",
                localstripe::PUBLISHABLE_KEY,
                "--webhook-secret",
                localstripe::WEBHOOK_SECRET,
                "--public-url",
                "https://pay.example.com",
                "--database-url",
                &database_url,
            ])
            .env("PAYLINK_SECRETS_KEY", SECRETS_KEY)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        configured.status.success(),
        "{}",
        String::from_utf8_lossy(&configured.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&configured.stdout).trim(),
        "https://pay.example.com/processors/stripe/chaos/webhook"
    );
    let mut server = Server {
        child: None,
        addr: format!("127.0.0.1:{}", free_port()),
        database_url,
        env: vec![
            ("PAYLINK_SECRETS_KEY".into(), SECRETS_KEY.into()),
            ("PAYLINK_STRIPE_API_BASE".into(), proxy_url.clone()),
            ("PAYLINK_STRIPE_JS_URL".into(), stripe.js_url()),
        ],
    };
    server.start().await;
    proxy.paylink_pid.store(
        server.child.as_ref().unwrap().id().unwrap(),
        Ordering::SeqCst,
    );
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let link: Value = client
        .post(format!("{base}/v1/payment-links"))
        .bearer_auth(&key)
        .json(&json!({"amount": 4200, "currency": "EUR"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = link["id"].as_str().unwrap().to_owned();
    let url = link["url"].as_str().unwrap().to_owned();
    let page = client.get(&url).send().await.unwrap();
    let token = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("pl_csrf=")
        .unwrap()
        .to_owned();
    let payment_method = stripe.payment_method("4242424242424242").await;
    let cut = client
        .post(&url)
        .header("cookie", format!("pl_csrf={token}"))
        .form(&[
            ("payment_method", payment_method.as_str()),
            ("csrf_token", token.as_str()),
        ])
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    assert!(
        cut.is_err(),
        "paylink died before answering: {:?}",
        cut.map(|r| r.status())
    );
    assert!(
        proxy.killed.load(Ordering::SeqCst),
        "the kill came after Stripe's success"
    );
    server.kill().await;

    // What the kill left: Stripe charged; paylink's file says processing.
    let (status, pending) = link_in_file(&path, &id);
    assert_eq!((status.as_str(), pending), ("processing", 1));
    let intents = stripe.get("/v1/payment_intents?limit=100").await;
    let ours: Vec<&Value> = intents["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pi| pi["metadata"]["paylink_link_id"] == id.as_str())
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0]["status"], "succeeded");
    let charged = ours[0]["id"].as_str().unwrap().to_owned();

    // Restart: the reconciler asks Stripe and records the payment once.
    proxy.armed.store(false, Ordering::SeqCst);
    server.start().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let link = loop {
        let link: Value = client
            .get(format!("{base}/v1/payment-links/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if link["status"] != "processing" {
            break link;
        }
        assert!(
            Instant::now() < deadline,
            "still processing after restart: {link}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(link["status"], "paid");
    assert_eq!(link["payment_id"], charged.as_str());
    let events: Value = client
        .get(format!("{base}/v1/payment-links/{id}/events"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "payment_link.created",
            "payment_link.processing",
            "payment_link.paid"
        ]
    );
    let refunds = stripe
        .get(&format!("/v1/refunds?payment_intent={charged}"))
        .await;
    assert_eq!(
        refunds["data"].as_array().unwrap().len(),
        0,
        "nothing refunded"
    );
    server.kill().await;
}

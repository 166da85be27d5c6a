//! A webhook receiver on loopback for tests: records every request (headers
//! and body), answers from a script (200 once the script runs out), can be
//! stopped and started again on the same port, and notices when one
//! `webhook-id` is being delivered twice at the same moment.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn webhook_id(&self) -> &str {
        self.headers["webhook-id"].to_str().unwrap()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<u16>>,
    in_flight: Mutex<HashSet<String>>,
    overlaps: AtomicUsize,
    redirects_followed: AtomicUsize,
    arrived: Notify,
    /// How long each request is held before answering.
    hold: Mutex<Duration>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<CancellationToken>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, Arc::default())
    }

    fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) -> Self {
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let app = Router::new()
            .route("/hook", post(hook))
            .route("/followed", post(followed))
            .with_state(Arc::clone(&shared));
        let token = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
                .unwrap();
        });
        Self {
            addr,
            shared,
            stop: Some(stop),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Stops listening (connections are then refused); keeps what was received.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.cancel();
        }
        // Let the listener close before anyone connects again.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let again = Self::serve(listener, Arc::clone(&self.shared));
        self.stop = again.stop;
    }

    /// The next requests are answered with these statuses, in order.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.shared.script.lock().unwrap().extend(statuses);
    }

    pub fn hold_each_request(&self, hold: Duration) {
        *self.shared.hold.lock().unwrap() = hold;
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Times a `webhook-id` arrived while the same id was still in flight.
    pub fn overlaps(&self) -> usize {
        self.shared.overlaps.load(Ordering::SeqCst)
    }

    pub fn redirects_followed(&self) -> usize {
        self.shared.redirects_followed.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` requests have arrived; panics after `within`.
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.shared.arrived.notified();
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "expected {count} webhook requests within {within:?}, got {}",
                    self.received().len()
                );
            }
        }
    }

    /// Waits until `predicate` holds for what was received.
    pub async fn wait_until(
        &self,
        within: Duration,
        predicate: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.shared.arrived.notified();
            let received = self.received();
            if predicate(&received) {
                return received;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "the receiver did not get what was expected within {within:?} ({} requests)",
                    self.received().len()
                );
            }
        }
    }
}

async fn hook(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !shared.in_flight.lock().unwrap().insert(id.clone()) {
        shared.overlaps.fetch_add(1, Ordering::SeqCst);
    }
    let hold = *shared.hold.lock().unwrap();
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    let status = shared.script.lock().unwrap().pop_front().unwrap_or(200);
    shared.in_flight.lock().unwrap().remove(&id);
    shared.received.lock().unwrap().push(Received {
        headers,
        body,
        status,
    });
    shared.arrived.notify_waiters();
    let status = StatusCode::from_u16(status).unwrap();
    let mut response = status.into_response();
    if status.is_redirection() {
        response
            .headers_mut()
            .insert(header::LOCATION, "/followed".parse().unwrap());
    }
    response
}

async fn followed(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.redirects_followed.fetch_add(1, Ordering::SeqCst);
    StatusCode::OK
}

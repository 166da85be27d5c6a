//! A real paylink server on 127.0.0.1:0 over a temporary database, and a
//! small HTTP client for it.

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use paylink::clock::ShiftedClock;
use paylink::server::{self, RunningServer, ServerOptions};
use paylink::service::{Service, ServiceSettings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

pub struct TestApp {
    pub base: String,
    /// A test-mode key of account `default`.
    pub key: String,
    pub service: Arc<Service>,
    pub clock: Arc<ShiftedClock>,
    pub database_url: String,
    pub client: reqwest::Client,
    server: Option<RunningServer>,
    sweep_interval: Duration,
    // Held so the database outlives the server; removed on drop.
    _dir: Arc<TempDir>,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Response {
    /// The error envelope's `code`.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<none>")
    }
    pub fn param(&self) -> &str {
        self.body["error"]["param"].as_str().unwrap_or("<none>")
    }
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .expect("response has an id")
            .to_owned()
    }
}

impl TestApp {
    /// A server whose sweeper never runs during a test: expiry is read-time only.
    pub async fn spawn() -> Self {
        Self::spawn_with_sweeper(Duration::from_secs(3600)).await
    }

    pub async fn spawn_with_sweeper(sweep_interval: Duration) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let database_url = format!("sqlite://{}", dir.path().join("paylink.db").display());
        let clock = Arc::new(ShiftedClock::default());
        let mut app = Self::start(database_url, clock, dir, sweep_interval).await;
        app.key = app.create_key("default", false).await;
        app
    }

    async fn start(
        database_url: String,
        clock: Arc<ShiftedClock>,
        dir: Arc<TempDir>,
        sweep_interval: Duration,
    ) -> Self {
        let store = paylink::store::open(&database_url)
            .await
            .expect("open store");
        let service = Arc::new(Service::new(
            store,
            clock.clone(),
            ServiceSettings::default(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = server::start(
            listener,
            service.clone(),
            ServerOptions {
                public_url: None,
                sweep_interval,
                request_timeout: Duration::from_secs(30),
            },
        )
        .await
        .expect("start server");
        Self {
            base: format!("http://{}", server.addr),
            key: String::new(),
            service,
            clock,
            database_url,
            client: reqwest::Client::new(),
            server: Some(server),
            sweep_interval,
            _dir: dir,
        }
    }

    /// Stops the server gracefully and starts a new one on the same database.
    pub async fn restart(mut self) -> Self {
        self.server
            .take()
            .expect("running")
            .shutdown()
            .await
            .expect("clean shutdown");
        let key = self.key.clone();
        let (url, clock, dir) = (
            self.database_url.clone(),
            self.clock.clone(),
            self._dir.clone(),
        );
        let interval = self.sweep_interval;
        drop(self);
        let mut app = Self::start(url, clock, dir, interval).await;
        app.key = key;
        app
    }

    pub async fn create_key(&self, account: &str, live: bool) -> String {
        self.service
            .create_api_key(account, live)
            .await
            .expect("create key")
            .secret
    }

    pub fn advance(&self, by: SignedDuration) {
        self.clock.advance(by);
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        Self::read(response).await
    }

    pub async fn read(response: reqwest::Response) -> Response {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        assert!(
            headers.contains_key("x-request-id"),
            "every response carries X-Request-Id"
        );
        Response {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, Some(&self.key.clone()), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(&self.key.clone()), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Response {
        self.request(Method::PATCH, path, Some(&self.key.clone()), Some(body))
            .await
    }

    /// Creates a link with `extra` fields merged over a valid minimal body.
    pub async fn create_link_with(&self, extra: Value) -> Response {
        let mut body = json!({"amount": 4995, "currency": "USD", "description": "Premium Blood Pressure Monitor"});
        if let (Some(base), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        self.post("/v1/payment-links", body).await
    }

    pub async fn create_link(&self) -> String {
        let response = self.create_link_with(json!({})).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        response.id()
    }

    pub async fn cancel(&self, id: &str, body: Value) -> Response {
        self.post(&format!("/v1/payment-links/{id}/cancel"), body)
            .await
    }

    pub async fn link(&self, id: &str) -> Value {
        let response = self.get(&format!("/v1/payment-links/{id}")).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        response.body
    }

    pub async fn event_types(&self, id: &str) -> Vec<String> {
        let response = self.get(&format!("/v1/payment-links/{id}/events")).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        response.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|event| event["type"].as_str().expect("type").to_owned())
            .collect()
    }

    /// Drives a link to `processing` the way the hosted checkout will.
    pub async fn start_payment(&self, id: &str) {
        let slug = self.link(id).await["slug"]
            .as_str()
            .expect("slug")
            .to_owned();
        self.service
            .begin_payment(&slug)
            .await
            .expect("begin payment");
    }

    pub async fn pay(&self, id: &str) {
        let slug = self.link(id).await["slug"]
            .as_str()
            .expect("slug")
            .to_owned();
        self.service
            .begin_payment(&slug)
            .await
            .expect("begin payment");
        self.service
            .complete_payment(&slug)
            .await
            .expect("complete payment");
    }
}

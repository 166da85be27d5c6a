//! A real paylink server on 127.0.0.1:0 over a temporary database (a
//! SQLite file, or a fresh PostgreSQL database dropped afterwards), and a
//! small HTTP client for it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use paylink::clock::ShiftedClock;
use paylink::server::{self, RunningServer, ServerOptions};
use paylink::service::{Service, ServiceSettings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use tempfile::TempDir;

/// Which database the current test runs on.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres { admin_url: String },
}

tokio::task_local! {
    static BACKEND: Backend;
}

pub async fn on_sqlite(test: impl Future<Output = ()>) {
    BACKEND.scope(Backend::Sqlite, test).await;
}

/// Runs `test` on PostgreSQL when `PAYLINK_TEST_POSTGRES_URL` is set; says
/// it skipped otherwise. Under CI (`CI=true`) the variable is required.
pub async fn on_postgres(test: impl Future<Output = ()>) {
    match postgres_admin_url() {
        Some(admin_url) => BACKEND.scope(Backend::Postgres { admin_url }, test).await,
        None => eprintln!(
            "SKIPPED on PostgreSQL: set PAYLINK_TEST_POSTGRES_URL to run this test there too"
        ),
    }
}

pub fn postgres_admin_url() -> Option<String> {
    let url = std::env::var("PAYLINK_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true requires PAYLINK_TEST_POSTGRES_URL: the PostgreSQL half of the suite may not be skipped"
        );
    }
    url
}

fn current_backend() -> Backend {
    BACKEND.try_with(Clone::clone).unwrap_or(Backend::Sqlite)
}

/// A database for one test, removed when the last handle goes.
pub struct TestDatabase {
    pub url: String,
    postgres: Option<(String, String)>,
    _dir: Option<TempDir>,
}

impl TestDatabase {
    pub async fn create(backend: &Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                Self {
                    url: format!("sqlite://{}", dir.path().join("paylink.db").display()),
                    postgres: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres { admin_url } => {
                let name = format!(
                    "paylink_test_{}",
                    paylink::domain::ids::random_base62(12).to_lowercase()
                );
                let mut admin = sqlx::PgConnection::connect(admin_url)
                    .await
                    .expect("connect to PostgreSQL");
                admin
                    .execute(sqlx::AssertSqlSafe(format!("create database {name}")))
                    .await
                    .expect("create test database");
                let mut url = url::Url::parse(admin_url).expect("PostgreSQL URL");
                url.set_path(&name);
                Self {
                    url: url.to_string(),
                    postgres: Some((admin_url.clone(), name)),
                    _dir: None,
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime; use a thread with its own.
        let database = name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "drop database if exists {database} with (force)"
                    )))
                    .await
                    .map(|_| ())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {name}");
        }
    }
}

/// Checkout limits no test of concurrency or volume reaches.
pub fn generous_checkout_limits() -> paylink::checkout::limits::CheckoutLimitSettings {
    let budget = paylink::checkout::limits::Budget {
        per_minute: 1_000_000,
        burst: 100_000,
    };
    paylink::checkout::limits::CheckoutLimitSettings {
        payments_per_link: budget,
        payments_per_address: budget,
        unknown_slugs_per_address: budget,
    }
}

pub struct TestApp {
    pub base: String,
    /// A test-mode key of account `default`.
    pub key: String,
    pub service: Arc<Service>,
    /// The database under the service, for tests that look at what is stored.
    pub store: Arc<dyn paylink::store::Store>,
    pub clock: Arc<ShiftedClock>,
    pub database_url: String,
    pub client: reqwest::Client,
    server: Option<RunningServer>,
    options: ServerOptions,
    settings: ServiceSettings,
    // Held so the database outlives the server; removed on the last drop.
    database: Arc<TestDatabase>,
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
        Self::spawn_with(ServerOptions {
            sweep_interval,
            ..ServerOptions::default()
        })
        .await
    }

    pub async fn spawn_with(options: ServerOptions) -> Self {
        Self::spawn_with_settings(
            options,
            ServiceSettings {
                // Test receivers listen on loopback.
                webhook_allow_private: true,
                ..ServiceSettings::default()
            },
        )
        .await
    }

    pub async fn spawn_with_settings(options: ServerOptions, settings: ServiceSettings) -> Self {
        let database = Arc::new(TestDatabase::create(&current_backend()).await);
        let clock = Arc::new(ShiftedClock::default());
        let mut app = Self::start(database, clock, options, settings).await;
        app.key = app.create_key("default", false).await;
        app
    }

    /// Another node on the same database (its own store, service and port),
    /// sharing the clock. Meaningful on PostgreSQL, where nodes share one server.
    pub async fn second_node(&self) -> Self {
        self.second_node_with(self.options.clone()).await
    }

    /// Another node on the same database, with its own server options.
    pub async fn second_node_with(&self, options: ServerOptions) -> Self {
        let mut node = Self::start(
            self.database.clone(),
            self.clock.clone(),
            options,
            self.settings.clone(),
        )
        .await;
        node.key = self.key.clone();
        node
    }

    async fn start(
        database: Arc<TestDatabase>,
        clock: Arc<ShiftedClock>,
        options: ServerOptions,
        settings: ServiceSettings,
    ) -> Self {
        let database_url = database.url.clone();
        let store = paylink::store::open(&database_url, &Default::default())
            .await
            .expect("open store");
        let service = Arc::new(Service::new(
            Arc::clone(&store),
            clock.clone(),
            settings.clone(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = server::start(listener, service.clone(), options.clone())
            .await
            .expect("start server");
        Self {
            base: format!("http://{}", server.addr),
            key: String::new(),
            service,
            store,
            clock,
            database_url,
            client: reqwest::Client::new(),
            server: Some(server),
            options,
            settings,
            database,
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
        let (database, clock, options, settings) = (
            self.database.clone(),
            self.clock.clone(),
            self.options.clone(),
            self.settings.clone(),
        );
        drop(self);
        let mut app = Self::start(database, clock, options, settings).await;
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

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path, Some(&self.key.clone()), None)
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

    /// Drives a link to `processing` the way the hosted checkout will;
    /// returns its slug.
    pub async fn start_payment(&self, id: &str) -> String {
        let slug = self.link(id).await["slug"]
            .as_str()
            .expect("slug")
            .to_owned();
        self.service
            .begin_payment(&slug)
            .await
            .expect("begin payment");
        slug
    }

    pub async fn pay(&self, id: &str) {
        let slug = self.start_payment(id).await;
        self.service
            .complete_payment(&slug)
            .await
            .expect("complete payment");
    }
}

//! Webhook delivery throughput and lag, measured end to end: a real server
//! (release build), a real receiver on loopback, a burst of cancellations.
//!
//! `cargo bench --bench webhook_delivery` runs it on SQLite, and on
//! PostgreSQL too when `PAYLINK_BENCH_POSTGRES_URL` names a database it may
//! fill (e.g. postgres://postgres@127.0.0.1:5432/paylink_bench, created
//! beforehand); `PAYLINK_BENCH_ONLY=sqlite|postgres` runs one of the two.
//! Figures go to stdout; BENCHMARKS.md keeps the latest.
//!
//! Two figures. Throughput: a backlog of pending deliveries (links cancelled
//! while no dispatcher ran) drained by a freshly started server, events per
//! second to a local receiver. Lag under a cancel burst: the receiver's
//! arrival time minus the event's `created_at` (the moment the cancel
//! committed), so it includes dispatch, signing, HTTP and the receiver.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use futures::StreamExt;
use jiff::Timestamp;
use paylink::clock::SystemClock;
use paylink::domain::{CancelPolicy, NewLink};
use paylink::server::{self, ServerOptions};
use paylink::service::{Caller, NewEndpoint, Service, ServiceSettings};
use paylink::web::rate_limit::RateLimitSettings;
use tokio::sync::Notify;

/// The server runs in this process, with the allocator paylink's binary
/// uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LINKS: usize = 10000;
const CLIENT_CONCURRENCY: usize = 32;

#[derive(Default)]
struct Arrivals {
    /// (arrival, event created_at)
    seen: Mutex<Vec<(Timestamp, Timestamp)>>,
    notify: Notify,
}

impl Arrivals {
    /// The arrivals so far. Nothing panics while holding the lock, and a
    /// poisoned one is taken anyway rather than failing every later
    /// request to the receiver.
    fn seen(&self) -> MutexGuard<'_, Vec<(Timestamp, Timestamp)>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the receiver reads of an event: a receiver parses into the type
/// it needs, reading past the fields it does not (this bench's receiver
/// shares the server's two cores, so a tree of every field, as a
/// `serde_json::Value`, was the server's time spent elsewhere).
#[derive(serde::Deserialize)]
struct Arrival {
    created_at: Timestamp,
}

async fn receive(State(arrivals): State<Arc<Arrivals>>, body: Bytes) -> StatusCode {
    let now = Timestamp::now();
    // Anything but an event is refused, so the dispatcher retries it and
    // the run times out waiting instead of counting it.
    let Ok(event) = serde_json::from_slice::<Arrival>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    arrivals.seen().push((now, event.created_at));
    arrivals.notify.notify_waiters();
    StatusCode::NO_CONTENT
}

async fn create_links(service: &Service, caller: &Caller) -> Vec<String> {
    let mut links = Vec::with_capacity(LINKS);
    for _ in 0..LINKS {
        let link = service
            .create_link(
                caller,
                NewLink {
                    amount: Some(4995),
                    currency: Some("USD".into()),
                    ..NewLink::default()
                },
            )
            .await
            .unwrap();
        links.push(link.id);
    }
    links
}

async fn wait_for_all(arrivals: &Arrivals) {
    loop {
        let waiting = arrivals.notify.notified();
        if arrivals.seen().len() >= LINKS {
            return;
        }
        tokio::time::timeout(Duration::from_secs(120), waiting)
            .await
            .expect("every event delivered within 2 minutes");
    }
}

/// The `percent`th percentile (nearest rank) of sorted durations.
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    sorted[((sorted.len() - 1) * percent + 50) / 100]
}

/// Events per second over `elapsed`.
fn per_second(events: usize, elapsed: Duration) -> u128 {
    events as u128 * 1_000_000 / elapsed.as_micros().max(1)
}

async fn run(label: &str, database_url: &str) {
    let store = paylink::store::open(database_url, &Default::default())
        .await
        .expect("open store");
    let service = Arc::new(Service::new(
        store,
        Arc::new(SystemClock),
        ServiceSettings {
            webhook_allow_private: true,
            ..ServiceSettings::default()
        },
    ));
    let account = format!("bench-{}", paylink::domain::ids::random_base62(8));
    let key = service.create_api_key(&account, false).await.unwrap();
    let caller = service.authenticate(&key.secret).await.unwrap();

    let arrivals = Arc::new(Arrivals::default());
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_url = format!("http://{}/hook", receiver.local_addr().unwrap());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&arrivals));
    tokio::spawn(async move { axum::serve(receiver, app).await.unwrap() });

    service
        .create_webhook_endpoint(
            &caller,
            NewEndpoint {
                url: receiver_url,
                events: Some(vec!["payment_link.cancelled".into()]),
                ..NewEndpoint::default()
            },
        )
        .await
        .unwrap();
    // Backlog: cancel with no server (so no dispatcher) running, then start
    // one and time how fast it drains the pending deliveries.
    for id in create_links(&service, &caller).await {
        service
            .cancel_link(&caller, &id, None, None, &CancelPolicy::NATIVE)
            .await
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = Instant::now();
    let running = server::start(
        listener,
        Arc::clone(&service),
        ServerOptions {
            rate_limits: RateLimitSettings {
                per_second: 1_000_000,
                burst: 1_000_000,
                ..RateLimitSettings::default()
            },
            ..ServerOptions::default()
        },
    )
    .await
    .unwrap();
    wait_for_all(&arrivals).await;
    let drained = started.elapsed();
    arrivals.seen().clear();

    // Burst: cancels through HTTP while the dispatcher runs.
    let links = create_links(&service, &caller).await;
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::new();
    let started = Instant::now();
    futures::stream::iter(links)
        .map(|id| {
            let (client, base, secret) = (client.clone(), base.clone(), key.secret.clone());
            async move {
                let response = client
                    .post(format!("{base}/v1/payment-links/{id}/cancel"))
                    .bearer_auth(secret)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        })
        .buffer_unordered(CLIENT_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let cancels_done = started.elapsed();
    wait_for_all(&arrivals).await;
    let delivered = started.elapsed();
    running.shutdown().await.unwrap();

    let mut lags: Vec<Duration> = arrivals
        .seen()
        .iter()
        .map(|(arrived, created)| {
            Duration::try_from(arrived.duration_since(*created)).unwrap_or_default()
        })
        .collect();
    lags.sort();
    println!(
        "{label}: backlog of {LINKS} drained in {drained:.2?} = {} events/s",
        per_second(LINKS, drained),
    );
    println!(
        "{label}: burst of {LINKS} HTTP cancels in {cancels_done:.2?} ({}/s); last webhook after {delivered:.2?} = {} events/s; lag p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        per_second(LINKS, cancels_done),
        per_second(LINKS, delivered),
        percentile(&lags, 50),
        percentile(&lags, 99),
        lags.last().unwrap(),
    );
}

fn main() {
    // `cargo test` also runs bench targets with `--bench`-less args; only
    // measure when asked to by `cargo bench`.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let only = std::env::var("PAYLINK_BENCH_ONLY").ok();
        let wanted = |store: &str| only.as_deref().is_none_or(|only| only == store);
        let dir = tempfile::tempdir().unwrap();
        if wanted("sqlite") {
            let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
            run("sqlite", &sqlite).await;
        }
        if wanted("postgres")
            && let Ok(url) = std::env::var("PAYLINK_BENCH_POSTGRES_URL")
        {
            run("postgres", &url).await;
        }
    });
}

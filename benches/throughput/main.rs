//! How close paylink comes to the machine's ceilings, as ratios measured
//! in one run (issue "Fast on one box"; figures in BENCHMARKS.md).
//!
//! `cargo bench --bench throughput` starts two servers on loopback, each a
//! process of its own: the no-storage baseline (`baseline.rs`: plain axum,
//! the same JSON parsed, ~600 bytes answered) and paylink's release binary
//! on a fresh SQLite database filled with `PAYLINK_BENCH_LINKS` links. wrk
//! loads each path at its peak (retrieve, create, cancel), then a paced
//! load at half of each peak gives its latency. With
//! `PAYLINK_BENCH_POSTGRES_URL` (a database the bench may empty) it does
//! the same on PostgreSQL and runs pgbench on the same writes: a cancel's
//! version-checked UPDATE plus its event INSERT, and a create's two
//! INSERTs, 16 clients, as paylink's 16 pool connections.
//!
//! Settings: `PAYLINK_BENCH_SECS` (each run, default 10),
//! `PAYLINK_BENCH_LINKS` (default 600000; enough that no cancel run runs
//! out), `PAYLINK_BENCH_ONLY=sqlite|postgres`, `PAYLINK_BENCH_BINARY` (another
//! build of paylink to load instead of this one's). Needs wrk (and pgbench for
//! PostgreSQL) on the PATH.

mod baseline;
mod load;
mod paced;
mod pgbench;
mod seed;
mod servers;

use std::time::Duration;

use load::{Run, Target};

fn main() {
    if std::env::args().any(|a| a == "--serve-baseline") {
        baseline::serve();
        return;
    }
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(settings));
}

struct Settings {
    duration: Duration,
    links: u64,
    postgres: Option<String>,
    only: Option<String>,
}

impl Settings {
    fn from_env() -> Self {
        let number = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.parse()
                        .unwrap_or_else(|_| panic!("{name} must be a number"))
                })
                .unwrap_or(default)
        };
        Self {
            duration: Duration::from_secs(number("PAYLINK_BENCH_SECS", 10)),
            links: number("PAYLINK_BENCH_LINKS", 600_000),
            postgres: std::env::var("PAYLINK_BENCH_POSTGRES_URL").ok(),
            only: std::env::var("PAYLINK_BENCH_ONLY").ok(),
        }
    }

    fn wants(&self, backend: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == backend)
    }
}

/// Peak rates of one server's three paths.
struct Peaks {
    retrieve: Run,
    create: Run,
    cancel: Run,
}

async fn run(settings: Settings) {
    let scratch = tempfile::tempdir().unwrap();
    let baseline = servers::Baseline::start();
    let base_get = load::wrk(
        &baseline.url(),
        "none",
        &Target::Retrieve { links: 1000 },
        settings.duration,
        scratch.path(),
    );
    let base_post = load::wrk(
        &baseline.url(),
        "none",
        &Target::Create,
        settings.duration,
        scratch.path(),
    );
    println!(
        "baseline (no storage): GET {:.0} req/s, POST with the JSON body {:.0} req/s",
        base_get.rate, base_post.rate
    );

    if settings.wants("sqlite") {
        let database = scratch.path().join("bench.db");
        let url = format!("sqlite://{}", database.display());
        let server = servers::Paylink::start(&url, &[]).await;
        let template = server.create_link().await;
        seed::sqlite(database.to_str().unwrap(), &template, 1, settings.links);
        println!("\nSQLite, {} links", settings.links);
        let peaks = measure(&server, &settings, scratch.path()).await;
        report(&peaks, base_get.rate, base_post.rate);
        paced_report(&server, &peaks, &settings).await;
    }

    if let Some(url) = settings
        .postgres
        .clone()
        .filter(|_| settings.wants("postgres"))
    {
        servers::empty_postgres(&url).await;
        let server = servers::Paylink::start(&url, &[("PAYLINK_DB_MAX_CONNECTIONS", "16")]).await;
        let template = server.create_link().await;
        seed::postgres(&url, &template, 1, settings.links).await;
        println!("\nPostgreSQL, {} links", settings.links);
        let peaks = measure(&server, &settings, scratch.path()).await;
        report(&peaks, base_get.rate, base_post.rate);
        drop(server);
        let writes = pgbench::run(
            &url,
            &template,
            settings.links,
            settings.duration,
            scratch.path(),
        )
        .await;
        println!(
            "pgbench, 16 clients: a cancel's writes {:.0} tps, a create's inserts {:.0} tps",
            writes.cancel, writes.create
        );
        println!(
            "paylink / pgbench: cancel {:.3}, create {:.3}",
            peaks.cancel.rate / writes.cancel,
            peaks.create.rate / writes.create
        );
    }
}

async fn measure(
    server: &servers::Paylink,
    settings: &Settings,
    scratch: &std::path::Path,
) -> Peaks {
    let retrieve = load::wrk(
        &server.url(),
        &server.key,
        &Target::Retrieve {
            links: settings.links,
        },
        settings.duration,
        scratch,
    );
    let create = load::wrk(
        &server.url(),
        &server.key,
        &Target::Create,
        settings.duration,
        scratch,
    );
    let cancel = load::wrk(
        &server.url(),
        &server.key,
        &Target::Cancel { first: 1 },
        settings.duration,
        scratch,
    );
    Peaks {
        retrieve,
        create,
        cancel,
    }
}

fn report(peaks: &Peaks, base_get: f64, base_post: f64) {
    println!("| path | req/s | p99 at peak | share of the baseline |");
    println!("|---|---|---|---|");
    for (name, run, baseline) in [
        ("retrieve", peaks.retrieve, base_get),
        ("create", peaks.create, base_post),
        ("cancel", peaks.cancel, base_post),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.1}% |",
            run.rate,
            run.p99_ms,
            100.0 * run.rate / baseline
        );
    }
}

/// Latency at half of each peak rate, open loop.
async fn paced_report(server: &servers::Paylink, peaks: &Peaks, settings: &Settings) {
    let addr = server.addr.clone();
    // Past every link the peak run cancelled (its threads interleave).
    let cancels_from = peaks.cancel.requests + 1000;
    for (name, target, peak) in [
        (
            "retrieve",
            Target::Retrieve {
                links: settings.links,
            },
            peaks.retrieve.rate,
        ),
        ("create", Target::Create, peaks.create.rate),
        (
            "cancel",
            Target::Cancel {
                first: cancels_from,
            },
            peaks.cancel.rate,
        ),
    ] {
        let latency = paced::run(&addr, &server.key, &target, peak / 2.0, settings.duration).await;
        println!(
            "{name} at half its peak ({:.0} req/s): p50 {:.2} ms, p99 {:.2} ms; server RSS {:.1} MiB",
            latency.rate,
            latency.p50_ms,
            latency.p99_ms,
            server.rss_mib()
        );
    }
}

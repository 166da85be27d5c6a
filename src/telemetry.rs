//! Prometheus metrics: paylink's recorder (one per process, installed on
//! first use), the metrics it records, and their text for `/metrics`.
//!
//! Every metric is recorded through a function here, so the names, labels
//! and buckets are written once. Recording is an atomic add on a handle
//! the recorder finds by name and labels; with no recorder installed (a
//! library user who never serves) each call is a no-op.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of every `*_seconds` histogram: sub-millisecond requests up to
/// hour-long webhook lags.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0,
];
/// Buckets of the SQLite writer's batch sizes (its group commits).
const BATCH_SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

const HTTP_REQUESTS: &str = "paylink_http_requests_total";
const HTTP_DURATION: &str = "paylink_http_request_duration_seconds";
const LINK_TRANSITIONS: &str = "paylink_link_transitions_total";
const WEBHOOK_DELIVERIES: &str = "paylink_webhook_deliveries_total";
const WEBHOOK_LAG: &str = "paylink_webhook_delivery_lag_seconds";
const WRITE_BATCH: &str = "paylink_store_write_batch_size";
const WRITE_QUEUE: &str = "paylink_store_write_queue_depth";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// paylink's recorder, installed as the process's on the first call;
/// `None` if another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full(WRITE_BATCH.into()), BATCH_SIZES)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// The Prometheus text of every metric recorded so far.
pub fn render() -> Option<String> {
    let handle = install()?;
    handle.run_upkeep();
    Some(handle.render())
}

/// Folds the samples histograms have gathered since the last upkeep into
/// their buckets. The exporter keeps every sample a histogram records
/// until an upkeep, and with its default features off nothing runs one
/// but this and a scrape: a server nobody scrapes grew by 23.6 MiB in
/// 1.43 M requests (49.8 against 26.2 MiB of RSS, BENCHMARKS.md), without
/// end. The sweeper calls it every few seconds.
pub fn upkeep() {
    if let Some(handle) = HANDLE.get().and_then(Option::as_ref) {
        handle.run_upkeep();
    }
}

/// One answered HTTP request, by its matched route (never the raw path,
/// whose ids would make a series per link).
pub fn http_request(method: &str, route: &str, status: u16, seconds: f64) {
    // HTTP allows any token as a method: past the standard ones a label of
    // its own each would let a client make series (and cached handles)
    // without end.
    let method = match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    if HANDLE.get().is_some_and(Option::is_some) {
        REQUEST_HANDLES.with_borrow_mut(|handles| {
            let (counter, duration) = handles.find(method, route, status);
            counter.increment(1);
            duration.record(seconds);
        });
    } else {
        // No recorder of ours (yet): whatever is installed is asked each
        // time, and nothing is kept.
        request_counter(method, route, status).increment(1);
        request_duration(route).record(seconds);
    }
}

fn request_counter(method: &str, route: &str, status: u16) -> metrics::Counter {
    metrics::counter!(
        HTTP_REQUESTS,
        "method" => method.to_owned(),
        "route" => route.to_owned(),
        "status" => status.to_string(),
    )
}

fn request_duration(route: &str) -> metrics::Histogram {
    metrics::histogram!(HTTP_DURATION, "route" => route.to_owned())
}

thread_local! {
    /// This thread's handles of the request metrics. Finding a handle by
    /// its labels allocates them and searches the recorder's registry,
    /// 4 % of a read's instructions; a handle found once is an atomic add
    /// after. Kept only once paylink's recorder is installed: it stays the
    /// process's for good, so a handle never goes stale. Bounded by the
    /// routes times their methods and statuses.
    static REQUEST_HANDLES: std::cell::RefCell<RequestHandles> = Default::default();
}

#[derive(Default)]
struct RequestHandles {
    by_route: std::collections::HashMap<Box<str>, RouteHandles>,
}

struct RouteHandles {
    duration: metrics::Histogram,
    /// By method and status: a route answers few of each.
    counters: Vec<(Box<str>, u16, metrics::Counter)>,
}

impl RequestHandles {
    fn find(
        &mut self,
        method: &str,
        route: &str,
        status: u16,
    ) -> (&metrics::Counter, &metrics::Histogram) {
        if !self.by_route.contains_key(route) {
            self.by_route.insert(
                route.into(),
                RouteHandles {
                    duration: request_duration(route),
                    counters: Vec::new(),
                },
            );
        }
        let handles = self.by_route.get_mut(route).expect("inserted above");
        let index = match handles
            .counters
            .iter()
            .position(|(m, s, _)| **m == *method && *s == status)
        {
            Some(index) => index,
            None => {
                handles.counters.push((
                    method.into(),
                    status,
                    request_counter(method, route, status),
                ));
                handles.counters.len() - 1
            }
        };
        (&handles.counters[index].2, &handles.duration)
    }
}

/// One committed change of a link, by its event type.
pub fn link_transition(event_type: &'static str) {
    metrics::counter!(LINK_TRANSITIONS, "type" => event_type).increment(1);
}

/// Links expired together by the sweeper.
pub fn link_transitions(event_type: &'static str, count: usize) {
    metrics::counter!(LINK_TRANSITIONS, "type" => event_type).increment(count as u64);
}

/// One webhook attempt's outcome (`succeeded`, `retrying`, `failed`) and,
/// when it succeeded, how long after its event it arrived.
pub fn webhook_attempt(outcome: &'static str, lag_seconds: Option<f64>) {
    metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
    if let Some(lag) = lag_seconds {
        metrics::histogram!(WEBHOOK_LAG).record(lag);
    }
}

/// One group commit of the SQLite writer: how many operations it carried
/// and how many were still queued behind it.
pub fn store_write_batch(size: usize, queued: usize) {
    metrics::histogram!(WRITE_BATCH).record(size as f64);
    metrics::gauge!(WRITE_QUEUE).set(queued as f64);
}

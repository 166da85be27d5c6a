//! The dispatcher: a background task on every node that claims due
//! deliveries, sends them, and records each attempt with what comes next.
//!
//! Claiming leases a delivery in the database (see `Store::claim_deliveries`),
//! so with many nodes each delivery has one sender at a time; the HTTP call
//! happens with no transaction open; the attempts that finish together are
//! recorded in one transaction (a group commit: at 64 in flight, one sync
//! for many deliveries instead of one each). A node that dies mid-attempt,
//! or before its record commits, leaves a lease that runs out, and the
//! delivery is attempted again: at least once, never lost.
//!
//! Claiming, sending and recording overlap: the next claim runs while the
//! sends of the last one are in flight, and records commit beside both, so
//! a backlog flows without a pause at each batch's end.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::payload::PayloadRenderer;
use super::transport::{self, OutgoingWebhook, Transport};
use crate::domain::webhook::delivery::{
    AttemptRecord, ClaimedDelivery, LEASE, NextStep, SendOutcome, attempt_record,
};
use crate::domain::webhook::signing;
use crate::service::Service;

const CONTENDED_WAIT: Duration = Duration::from_millis(50);

/// How many sends' time a claimed delivery may wait behind others before
/// its own starts. Even if every delivery ahead of it times out, it then
/// starts within two timeouts (30 s) and ends within three (45 s), inside
/// its 60 s lease with room to record it: no other node can take it while
/// this one still holds it.
const WAVES_AHEAD: usize = 2;
const _: () = assert!(
    (WAVES_AHEAD as i64 + 2) * (transport::TIMEOUT.as_secs() as i64) <= LEASE.as_secs(),
    "a claimed delivery must be sent and recorded within its lease"
);

/// Records committing at once: the next batch is written while the last
/// one waits for its commit's flush. A delivery is attempted again only
/// after its record commits (until then its lease holds it), so two
/// records in flight carry different deliveries; were a record to outlive
/// the lease, the two would take the delivery's row lock in turn.
const RECORDS_IN_FLIGHT: usize = 2;

#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    /// Longest sleep between looks at the database when this node wrote
    /// nothing: how soon other nodes' events are picked up.
    pub poll_interval: Duration,
    /// Deliveries in flight at once on this node. At most
    /// `WAVES_AHEAD + 1` times as many are claimed and unfinished.
    pub concurrency: usize,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            concurrency: 64,
        }
    }
}

pub struct Dispatcher {
    service: Arc<Service>,
    transport: Arc<dyn Transport>,
    renderer: Arc<dyn PayloadRenderer>,
    settings: DispatcherSettings,
}

impl Dispatcher {
    pub fn new(
        service: Arc<Service>,
        transport: Arc<dyn Transport>,
        renderer: Arc<dyn PayloadRenderer>,
        settings: DispatcherSettings,
    ) -> Self {
        Self {
            service,
            transport,
            renderer,
            settings,
        }
    }

    /// Delivers until `shutdown`; then claims nothing more, and what it
    /// has claimed is attempted and recorded (each attempt is bounded by
    /// the 15 s timeout) so none is left half-done.
    pub async fn run(self, shutdown: CancellationToken) {
        let (finished, to_record) = mpsc::unbounded_channel();
        let (recorded, recorded_so_far) = watch::channel(0);
        tokio::join!(
            self.send_until(shutdown, finished, recorded_so_far),
            self.record_as_they_finish(to_record, recorded)
        );
    }

    /// Keeps up to `concurrency` attempts in flight, claiming more while
    /// they run whenever there is room for half a wave, and passes each
    /// finished attempt to the recorder. A delivery counts against the
    /// room from its claim until its attempt is recorded (or failed to
    /// be), so a slow recorder slows the claims instead of letting leases
    /// pile up unrecorded.
    async fn send_until(
        &self,
        shutdown: CancellationToken,
        finished: mpsc::UnboundedSender<AttemptRecord>,
        mut recorded_so_far: watch::Receiver<usize>,
    ) {
        let concurrency = self.settings.concurrency.max(1);
        let most_claimed = concurrency * (WAVES_AHEAD + 1);
        let mut claimed_so_far = 0;
        let mut queued: VecDeque<ClaimedDelivery> = VecDeque::new();
        let mut in_flight = FuturesUnordered::new();
        let mut claim = None;
        let mut look = Look::WhenDue;
        // Some: nothing to claim until then, or until a write wakes us.
        let mut idle_until: Option<Instant> = None;
        let mut stopping = false;
        loop {
            while in_flight.len() < concurrency
                && let Some(delivery) = queued.pop_front()
            {
                in_flight.push(self.attempt(delivery));
            }
            let recorded = *recorded_so_far.borrow_and_update();
            let unrecorded = claimed_so_far - recorded;
            let room = most_claimed.saturating_sub(unrecorded);
            // A look at when the next delivery is due waits until this
            // node's attempts are recorded: each record sets its delivery's
            // next time, which the look must see. Claims straight after a
            // full claim (a backlog) overlap the sends and records.
            if claim.is_none()
                && !stopping
                && idle_until.is_none()
                && room >= concurrency.div_ceil(2)
                && (look == Look::ClaimAtOnce || unrecorded == 0)
            {
                claim = Some(Box::pin(self.look_and_claim(look, room)));
            }
            if stopping && claim.is_none() && queued.is_empty() && in_flight.is_empty() {
                // `finished` drops here: the recorder ends once it has drained.
                return;
            }
            tokio::select! {
                Some(record) = in_flight.next(), if !in_flight.is_empty() => {
                    let _ = finished.send(record);
                }
                claimed = async {
                    match claim.as_mut() {
                        Some(claiming) => claiming.await,
                        None => std::future::pending().await,
                    }
                }, if claim.is_some() =>
                {
                    claim = None;
                    (look, idle_until) = match claimed {
                        Ok(Claim::Claimed { deliveries, all_asked }) => {
                            claimed_so_far += deliveries.len();
                            queued.extend(deliveries);
                            // All it asked for: more are likely claimable
                            // already. Fewer: ask when the next is due.
                            let next = if all_asked { Look::ClaimAtOnce } else { Look::WhenDue };
                            (next, None)
                        }
                        Ok(Claim::NoneLeft) => (Look::WhenDue, None),
                        Ok(Claim::Wait(wait)) => (Look::WhenDue, Some(Instant::now() + wait)),
                        Err(error) => {
                            tracing::warn!(%error, "webhook dispatch failed; retrying");
                            (Look::WhenDue, Some(Instant::now() + self.settings.poll_interval))
                        }
                    };
                }
                // The recorder made room, and may have set a retry sooner
                // than the wait: look again.
                _ = recorded_so_far.changed() => idle_until = None,
                () = shutdown.cancelled(), if !stopping => stopping = true,
                () = sleep_until_some(idle_until) => idle_until = None,
                () = self.service.deliveries_waiting(), if idle_until.is_some() => {
                    idle_until = None;
                }
            }
        }
    }

    /// Records whatever has finished as soon as fewer than
    /// `RECORDS_IN_FLIGHT` records are committing: the first attempt alone,
    /// then those that finished meanwhile. Never pauses the sends.
    async fn record_as_they_finish(
        &self,
        mut to_record: mpsc::UnboundedReceiver<AttemptRecord>,
        recorded: watch::Sender<usize>,
    ) {
        let most = self.settings.concurrency.max(1);
        let mut records = Vec::with_capacity(most);
        let mut committing = FuturesUnordered::new();
        let mut open = true;
        while open || !committing.is_empty() {
            tokio::select! {
                received = to_record.recv_many(&mut records, most),
                    if open && committing.len() < RECORDS_IN_FLIGHT =>
                {
                    if received == 0 {
                        open = false;
                    } else {
                        let batch = std::mem::take(&mut records);
                        let count = batch.len();
                        committing.push(async move {
                            self.record(batch).await;
                            count
                        });
                    }
                }
                Some(count) = committing.next(), if !committing.is_empty() => {
                    recorded.send_modify(|so_far| *so_far += count);
                }
            }
        }
    }

    /// Claims up to `limit` deliveries; with `Look::WhenDue`, only if one
    /// is due (a read, where claiming is a write: cheap to ask first when
    /// most looks find nothing due, as after a write whose deliveries
    /// another node claimed first).
    async fn look_and_claim(
        &self,
        look: Look,
        limit: usize,
    ) -> crate::service::ServiceResult<Claim> {
        if look == Look::WhenDue {
            let now = self.service.now();
            let due = self.service.next_delivery_due(now).await?;
            if due.is_none_or(|due| due > now) {
                let until_due = due
                    .and_then(|due| Duration::try_from(due.duration_since(now)).ok())
                    // Wake just after, not just before, the delivery is due.
                    .map(|wait| wait + Duration::from_millis(1));
                return Ok(Claim::Wait(
                    until_due.map_or(self.settings.poll_interval, |wait| {
                        wait.min(self.settings.poll_interval)
                    }),
                ));
            }
        }
        let deliveries = self.service.claim_deliveries(limit).await?;
        if deliveries.is_empty() {
            if look == Look::ClaimAtOnce {
                return Ok(Claim::NoneLeft);
            }
            // Due, but another node claimed it first: its lease shows soon.
            return Ok(Claim::Wait(self.settings.poll_interval.min(CONTENDED_WAIT)));
        }
        Ok(Claim::Claimed {
            all_asked: deliveries.len() == limit,
            deliveries,
        })
    }

    async fn record(&self, records: Vec<AttemptRecord>) {
        let count = records.len();
        if let Err(error) = self.service.record_attempts(records).await {
            // The leases run out and the deliveries are attempted again.
            tracing::warn!(%error, count, "could not record webhook attempts");
        }
    }

    /// Sends one delivery and says what to record.
    async fn attempt(&self, claimed: ClaimedDelivery) -> AttemptRecord {
        let now = self.service.now();
        let body = self
            .renderer
            .render(claimed.endpoint.format, &claimed.event);
        let started = tokio::time::Instant::now();
        let outcome = match signing::sign(
            &claimed.endpoint.signing_secrets(now),
            &claimed.event.id,
            now.as_second(),
            &body,
        ) {
            Ok(headers) => {
                self.transport
                    .send(OutgoingWebhook {
                        url: claimed.endpoint.url.clone(),
                        headers,
                        body,
                    })
                    .await
            }
            Err(error) => SendOutcome::NoResponse {
                error: format!("not sent: {error}"),
            },
        };
        let attempt = attempt_record(&outcome, now, started.elapsed());
        let next = NextStep::after(&outcome, claimed.attempts_made + 1, self.service.now());
        let outcome = match next {
            NextStep::Succeeded => "succeeded",
            NextStep::RetryAt(_) => "retrying",
            NextStep::Failed | NextStep::EndpointGone => "failed",
        };
        let lag = (next == NextStep::Succeeded)
            .then(|| now.duration_since(claimed.event.created_at).as_secs_f64());
        crate::telemetry::webhook_attempt(outcome, lag);
        match &attempt.error {
            // An operator looks for these: which event, which endpoint, why.
            Some(error) => tracing::warn!(
                event = %claimed.event.id,
                endpoint = %claimed.endpoint.id,
                status = ?attempt.status_code,
                %error,
                ?next,
                "webhook attempt failed"
            ),
            None => tracing::debug!(
                event = %claimed.event.id,
                endpoint = %claimed.endpoint.id,
                status = ?attempt.status_code,
                ?next,
                "webhook attempt"
            ),
        }
        AttemptRecord {
            event_id: claimed.event.id,
            endpoint_id: claimed.endpoint.id,
            attempt,
            next,
        }
    }
}

/// How a claim starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Look {
    /// Ask when the next delivery is due, and claim only if one is.
    WhenDue,
    /// Claim straight away (the last claim got all it asked for).
    ClaimAtOnce,
}

/// How a claim ended.
enum Claim {
    Claimed {
        deliveries: Vec<ClaimedDelivery>,
        /// As many as were asked for.
        all_asked: bool,
    },
    /// Claimed at once after a full claim, and found none.
    NoneLeft,
    /// Nothing to claim for this long (or until woken).
    Wait(Duration),
}

/// Resolves at `until`, or never if there is none.
async fn sleep_until_some(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    //! The retry schedule end to end — real SQLite store, real service and
    //! dispatcher — in tokio's paused time: 28 hours of retries run in
    //! moments, and each attempt's moment is exact, not a sleep's guess.

    use std::time::Duration;

    use async_trait::async_trait;
    use jiff::{SignedDuration, Timestamp};
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    use super::*;
    use crate::clock::{Clock, truncate_to_micros};
    use crate::domain::webhook::delivery::DeliveryStatus;
    use crate::domain::webhook::schedule::RETRY_DELAYS;
    use crate::service::test_shop::{
        add_endpoint_wanting_cancellations, cancel_link, create_link, shop,
    };
    use crate::store::sqlite::SqliteStore;

    /// "Now" that moves with tokio's (paused) clock.
    struct TokioClock {
        base: Timestamp,
        start: Instant,
    }

    impl Clock for TokioClock {
        fn now(&self) -> Timestamp {
            let elapsed = SignedDuration::try_from(self.start.elapsed()).expect("elapsed fits");
            truncate_to_micros(self.base + elapsed)
        }
    }

    /// A receiver that always answers 503, reporting when it was called.
    struct AlwaysUnavailable(mpsc::UnboundedSender<(String, Instant)>);

    #[async_trait]
    impl Transport for AlwaysUnavailable {
        async fn send(&self, webhook: OutgoingWebhook) -> SendOutcome {
            let _ = self.0.send((webhook.headers.webhook_id, Instant::now()));
            SendOutcome::Answered {
                status: 503,
                retry_after: None,
            }
        }
    }

    /// Bodies are not what this test is about.
    struct EventIdOnly;

    impl PayloadRenderer for EventIdOnly {
        fn render(
            &self,
            _: crate::domain::webhook::endpoint::PayloadFormat,
            event: &crate::domain::LinkEvent,
        ) -> Vec<u8> {
            event.id.clone().into_bytes()
        }
    }

    async fn schedule_in_paused_time() -> (Vec<Duration>, Vec<String>, String, DeliveryStatus, usize)
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paylink.db");
        let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
        let clock = Arc::new(TokioClock {
            base: Timestamp::now(),
            start: Instant::now(),
        });
        let (service, caller) = shop(Arc::new(store), clock).await;
        let service = Arc::new(service);
        add_endpoint_wanting_cancellations(&service, &caller).await;
        let link = create_link(&service, &caller).await;
        cancel_link(&service, &caller, &link).await;

        let (sent, mut attempts) = mpsc::unbounded_channel();
        let dispatcher = Dispatcher::new(
            Arc::clone(&service),
            Arc::new(AlwaysUnavailable(sent)),
            Arc::new(EventIdOnly),
            DispatcherSettings {
                poll_interval: Duration::from_secs(3600),
                ..DispatcherSettings::default()
            },
        );
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(dispatcher.run(shutdown.clone()));
        let start = Instant::now();
        let mut moments = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..RETRY_DELAYS.len() + 1 {
            let (id, at) = attempts.recv().await.expect("an attempt");
            moments.push(at - start);
            ids.push(id);
        }
        // No timer runs while this spins, so paused time stands still
        // until the last attempt is recorded.
        let cancelled = service.link_events(&caller, &link).await.unwrap()[1].clone();
        let status = loop {
            let (_, deliveries) = service.get_event(&caller, &cancelled.id).await.unwrap();
            if deliveries[0].status != DeliveryStatus::Pending {
                break deliveries[0].status;
            }
            tokio::task::yield_now().await;
        };
        // Two more days: nothing else is attempted.
        tokio::time::sleep(Duration::from_secs(2 * 86400)).await;
        let mut later = 0;
        while attempts.try_recv().is_ok() {
            later += 1;
        }
        shutdown.cancel();
        task.await.unwrap();
        (moments, ids, cancelled.id, status, later)
    }

    #[test]
    fn retries_follow_the_schedule_then_fail() {
        // Run on a thread of its own so a hang fails the test in real time.
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap();
            let _ = done.send(runtime.block_on(schedule_in_paused_time()));
        });
        let (moments, ids, event_id, status, later) = result
            .recv_timeout(Duration::from_secs(120))
            .expect("the paused-time schedule finishes");

        assert!(moments[0] < Duration::from_secs(1), "first attempt at once");
        for (i, expected) in RETRY_DELAYS.iter().enumerate() {
            let gap = moments[i + 1] - moments[i];
            assert!(
                gap >= *expected && gap < *expected + Duration::from_secs(1),
                "attempt {} came {gap:?} after the previous one, expected {expected:?}",
                i + 2
            );
        }
        assert!(
            ids.iter().all(|id| *id == event_id),
            "one webhook-id throughout"
        );
        assert_eq!(
            status,
            DeliveryStatus::Failed,
            "failed after the last attempt"
        );
        assert_eq!(later, 0, "nothing attempted after failure");
    }
}

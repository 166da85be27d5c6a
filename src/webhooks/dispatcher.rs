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

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::payload::PayloadRenderer;
use super::transport::{OutgoingWebhook, Transport};
use crate::domain::webhook::delivery::{
    AttemptRecord, ClaimedDelivery, NextStep, SendOutcome, attempt_record,
};
use crate::domain::webhook::signing;
use crate::service::Service;

const CONTENDED_WAIT: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    /// Longest sleep between looks at the database when this node wrote
    /// nothing: how soon other nodes' events are picked up.
    pub poll_interval: Duration,
    /// Deliveries claimed per round trip.
    pub batch: usize,
    /// Deliveries in flight at once on this node.
    pub concurrency: usize,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            batch: 256,
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

    /// Delivers until `shutdown`; attempts in flight then finish (each is
    /// bounded by the 15 s timeout) so none is left half-recorded.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut look = Look::WhenDue;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let wait = match self.deliver(look).await {
                // A full batch: more are likely claimable already.
                Ok(Round::Full) => {
                    look = Look::ClaimAtOnce;
                    continue;
                }
                Ok(Round::Partial) => {
                    look = Look::WhenDue;
                    continue;
                }
                Ok(Round::Wait(wait)) => wait,
                Err(error) => {
                    tracing::warn!(%error, "webhook dispatch failed; retrying");
                    self.settings.poll_interval
                }
            };
            look = Look::WhenDue;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = self.service.deliveries_waiting() => {}
            }
        }
    }

    /// One round: claims a batch (with `Look::WhenDue`, only if one is
    /// due), attempts it, records the attempts.
    async fn deliver(&self, look: Look) -> crate::service::ServiceResult<Round> {
        if look == Look::WhenDue {
            // A read, where claiming is a write: cheap to ask first when
            // most looks find nothing due (a node writing with no
            // endpoints is woken after every write).
            let now = self.service.now();
            let due = self.service.next_delivery_due().await?;
            if due.is_none_or(|due| due > now) {
                let until_due = due
                    .and_then(|due| Duration::try_from(due.duration_since(now)).ok())
                    // Wake just after, not just before, the delivery is due.
                    .map(|wait| wait + Duration::from_millis(1));
                return Ok(Round::Wait(
                    until_due.map_or(self.settings.poll_interval, |wait| {
                        wait.min(self.settings.poll_interval)
                    }),
                ));
            }
        }
        let claimed = self.service.claim_deliveries(self.settings.batch).await?;
        if claimed.is_empty() {
            if look == Look::ClaimAtOnce {
                return Ok(Round::Partial);
            }
            // Due, but another node claimed it first: its lease shows soon.
            return Ok(Round::Wait(self.settings.poll_interval.min(CONTENDED_WAIT)));
        }
        let full = claimed.len() == self.settings.batch;
        let concurrency = self.settings.concurrency;
        let (finished, mut to_record) = tokio::sync::mpsc::unbounded_channel();
        let sends = async move {
            futures::stream::iter(claimed)
                .for_each_concurrent(concurrency, |delivery| {
                    let finished = &finished;
                    async move {
                        let _ = finished.send(self.attempt(delivery).await);
                    }
                })
                .await;
            // `finished` drops here: the recorder ends once it has drained.
        };
        // Beside the sends, never pausing them: records whatever has
        // finished whenever it is free, the first attempt alone, then
        // those that finished while that one committed.
        let recorder = async {
            let mut records = Vec::with_capacity(concurrency);
            while to_record.recv_many(&mut records, concurrency).await > 0 {
                self.record(std::mem::take(&mut records)).await;
            }
        };
        tokio::join!(sends, recorder);
        Ok(if full { Round::Full } else { Round::Partial })
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

/// How a round starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Look {
    /// Ask when the next delivery is due, and claim only if one is.
    WhenDue,
    /// Claim straight away (the last round claimed a full batch).
    ClaimAtOnce,
}

/// How a round ended.
enum Round {
    /// Claimed a full batch.
    Full,
    /// Claimed fewer, or none after a full batch.
    Partial,
    /// Nothing to do for this long (or until woken).
    Wait(Duration),
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
    use crate::domain::{CancelPolicy, NewLink};
    use crate::service::{NewEndpoint, ServiceSettings};
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
        let service = Arc::new(Service::new(
            Arc::new(store),
            clock,
            ServiceSettings {
                webhook_allow_private: true,
                ..ServiceSettings::default()
            },
        ));
        let key = service.create_api_key("shop", false).await.unwrap();
        let caller = service.authenticate(&key.secret).await.unwrap();
        service
            .create_webhook_endpoint(
                &caller,
                NewEndpoint {
                    url: "http://127.0.0.1:9/never-contacted".into(),
                    events: Some(vec!["payment_link.cancelled".into()]),
                    ..NewEndpoint::default()
                },
            )
            .await
            .unwrap();
        let link = service
            .create_link(
                &caller,
                NewLink {
                    amount: Some(1200),
                    currency: Some("EUR".into()),
                    ..NewLink::default()
                },
            )
            .await
            .unwrap();
        service
            .cancel_link(&caller, &link.id, None, None, &CancelPolicy::NATIVE)
            .await
            .unwrap();

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
        let cancelled = service.link_events(&caller, &link.id).await.unwrap()[1].clone();
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

//! Transitions that are only a link's change and its event (a cancel, an
//! update, an expiry without a payment or refund beside it) written many
//! requests at a time: one statement and one commit for a batch.
//!
//! On one PostgreSQL a commit costs a WAL flush and the server's own
//! per-statement work, and each request that runs its own statement pays
//! both. A few writer tasks take whatever transitions are waiting when they
//! come free (none waits for a batch to fill: an idle node writes each one
//! as it comes, with the single statement of
//! [`write_transition_at_once`]) and write them as one statement reading a
//! JSON array of rows.
//!
//! A request hands its transition over and awaits the answer; a client
//! that hangs up drops only the waiting, and the batch it joined commits
//! or fails whole, as one statement. Nothing is acknowledged before its
//! commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgPool, Row as _};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::domain::{Actor, Link, Transition};
use crate::store::{Applied, DeliveriesOwed, StoreError, StoreResult};

use super::rows::{DeliveryParams, deliveries_owed, write_transition_at_once};

/// The most transitions one statement writes.
const MOST_PER_BATCH: usize = 64;

/// Transitions waiting for a writer, beyond which a request waits to hand
/// its own over.
const QUEUE: usize = 1024;

struct Job {
    transition: Transition,
    answer: oneshot::Sender<StoreResult<Applied>>,
}

/// The hand-over point to this store's transition writers.
pub(super) struct TransitionWriters {
    queue: mpsc::Sender<Job>,
}

impl TransitionWriters {
    /// Starts `writers` tasks on the current runtime, each holding at most
    /// one of `pool`'s connections at a time. They end when this value is
    /// dropped and the queue is empty.
    pub(super) fn start(pool: &PgPool, writers: usize) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_batches(pool.clone(), Arc::clone(&waiting)));
        }
        Self { queue }
    }

    /// Writes `transition` in the next batch and answers as
    /// [`write_transition_at_once`] would.
    pub(super) async fn write(
        &self,
        pool: &PgPool,
        transition: Transition,
    ) -> StoreResult<Applied> {
        let (answer, answered) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = self.queue.send(Job { transition, answer }).await
        {
            // The writers are gone (their runtime ended): write it here.
            return write_transition_at_once(pool, &job.transition).await;
        }
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the transition's writer stopped before answering; its batch may or may not have committed"
                    .into(),
            ))
        })
    }
}

async fn write_batches(pool: PgPool, waiting: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let jobs = {
            let mut waiting = waiting.lock().await;
            let Some(first) = waiting.recv().await else {
                return;
            };
            let mut jobs = vec![first];
            while jobs.len() < MOST_PER_BATCH {
                match waiting.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            jobs
        };
        for round in rounds(jobs) {
            write_round(&pool, round).await;
        }
    }
}

/// Splits jobs into rounds in which no link appears twice: an UPDATE
/// joined to two rows for one link would write it once and store two
/// events. Each round is ordered by link id, so batches running at once
/// lock their links in one order and cannot deadlock each other.
fn rounds(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let mut rounds: Vec<(HashSet<String>, Vec<Job>)> = Vec::new();
    for job in jobs {
        let id = &job.transition.link.id;
        match rounds.iter_mut().find(|(ids, _)| !ids.contains(id)) {
            Some((ids, round)) => {
                ids.insert(id.clone());
                round.push(job);
            }
            None => rounds.push((HashSet::from([id.clone()]), vec![job])),
        }
    }
    rounds
        .into_iter()
        .map(|(_, mut round)| {
            round.sort_by(|a, b| a.transition.link.id.cmp(&b.transition.link.id));
            round
        })
        .collect()
}

async fn write_round(pool: &PgPool, round: Vec<Job>) {
    if round.len() > 1 {
        match write_together(pool, &round).await {
            Ok(answers) => {
                let mut answers = answers_by_link(&answers);
                for job in round {
                    let answer = match &mut answers {
                        Ok(by_link) => by_link.remove(&job.transition.link.id).ok_or_else(|| {
                            StoreError::Internal(format!(
                                "the batch answered nothing for link {}",
                                job.transition.link.id
                            ))
                        }),
                        Err(error) => Err(StoreError::Internal(error.to_string())),
                    };
                    // A requester that hung up has nobody to tell.
                    let _ = job.answer.send(answer);
                }
                return;
            }
            // The server refused the statement, so nothing of it was
            // written: one transition that fails fails them all. Each is
            // written alone, so the others still go through and the one
            // at fault gets its own error.
            Err(sqlx::Error::Database(error)) => {
                tracing::warn!(%error, transitions = round.len(), "a batch of transitions was refused; writing each alone");
            }
            // The connection failed: whether it committed is unknown, as
            // for a single statement; each requester hears so.
            Err(error) => {
                let error = StoreError::from(error);
                for job in round {
                    let _ = job.answer.send(Err(error.clone()));
                }
                return;
            }
        }
    }
    for job in round {
        let answer = write_transition_at_once(pool, &job.transition).await;
        let _ = job.answer.send(answer);
    }
}

/// One row of the batch: the link's new fields, the version it must
/// still have, and its event.
#[derive(Serialize)]
struct Row<'a> {
    id: &'a str,
    expected: i64,
    status: &'static str,
    description: &'a Option<String>,
    metadata: &'a std::collections::BTreeMap<String, String>,
    expires_at: Timestamp,
    updated_at: Timestamp,
    cancelled_at: Option<Timestamp>,
    cancellation_reason: &'a Option<String>,
    paid_at: Option<Timestamp>,
    payment_id: &'a Option<String>,
    version: i64,
    amount_refunded: i64,
    customer_message: &'a Option<String>,
    event_id: &'a str,
    account_id: &'a str,
    livemode: bool,
    event_type: &'static str,
    created_at: Timestamp,
    actor: &'a Actor,
    reason: &'a Option<String>,
    link: &'a Link,
    previous_attributes: &'a Option<serde_json::Value>,
}

impl<'a> Row<'a> {
    fn of(transition: &'a Transition) -> Self {
        let (link, event) = (&transition.link, &transition.event);
        Self {
            id: &link.id,
            expected: transition.expected_version,
            status: link.status.as_str(),
            description: &link.description,
            metadata: &link.metadata,
            expires_at: link.expires_at,
            updated_at: link.updated_at,
            cancelled_at: link.cancelled_at,
            cancellation_reason: &link.cancellation_reason,
            paid_at: link.paid_at,
            payment_id: &link.payment_id,
            version: link.version,
            amount_refunded: link.amount_refunded,
            customer_message: &link.customer_message,
            event_id: &event.id,
            account_id: &event.link.account_id,
            livemode: event.link.livemode,
            event_type: event.event_type.as_str(),
            created_at: event.created_at,
            actor: &event.actor,
            reason: &event.reason,
            link: &event.link,
            previous_attributes: &event.previous_attributes,
        }
    }
}

/// Writes a round (no link twice) as one statement: a row per transition
/// with its link id, whether it was written, and the deliveries owed.
async fn write_together(pool: &PgPool, round: &[Job]) -> sqlx::Result<Vec<PgRow>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "with batch as (
                select * from jsonb_to_recordset($1) as b(
                    id text, expected bigint, status text, description text, metadata jsonb,
                    expires_at timestamptz, updated_at timestamptz, cancelled_at timestamptz,
                    cancellation_reason text, paid_at timestamptz, payment_id text, version bigint,
                    amount_refunded bigint, customer_message text, event_id text, account_id text,
                    livemode boolean, event_type text, created_at timestamptz, actor jsonb,
                    reason text, link jsonb, previous_attributes jsonb)
             ), written as (
                update payment_links p set status = b.status, description = b.description,
                    metadata = b.metadata, expires_at = b.expires_at, updated_at = b.updated_at,
                    cancelled_at = b.cancelled_at, cancellation_reason = b.cancellation_reason,
                    paid_at = b.paid_at, payment_id = b.payment_id, version = b.version,
                    amount_refunded = b.amount_refunded, customer_message = b.customer_message
                from batch b where p.id = b.id and p.version = b.expected
                returning p.id
             ), event as (
                insert into events (id, link_id, account_id, livemode, type, created_at, actor, reason, link, previous_attributes, refund)
                select b.event_id, b.id, b.account_id, b.livemode, b.event_type, b.created_at, b.actor, b.reason, b.link, b.previous_attributes, null
                from batch b join written on written.id = b.id
                returning id, account_id, livemode, type, created_at
             ), deliveries as ({} returning event_id)
             select b.id,
                    exists (select 1 from written where written.id = b.id) as written,
                    (select count(*) from deliveries where deliveries.event_id = b.event_id) as deliveries
             from batch b",
            deliveries_owed(
                "event, ",
                &DeliveryParams {
                    event_id: "event.id",
                    account_id: "event.account_id",
                    livemode: "event.livemode",
                    at: "event.created_at",
                    event_type: "event.type",
                }
            )
        )
    });
    let rows: Vec<Row<'_>> = round.iter().map(|job| Row::of(&job.transition)).collect();
    sqlx::query(AssertSqlSafe(SQL.as_str()))
        .bind(Json(&rows))
        .fetch_all(pool)
        .await
}

fn answers_by_link(answers: &[PgRow]) -> sqlx::Result<HashMap<String, Applied>> {
    answers
        .iter()
        .map(|row| {
            let written: bool = row.try_get("written")?;
            let owed: i64 = row.try_get("deliveries")?;
            let applied = if written {
                Applied::Yes(DeliveriesOwed(u64::try_from(owed).unwrap_or(0)))
            } else {
                Applied::StaleVersion
            };
            Ok((row.try_get("id")?, applied))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::domain::{CancelPolicy, LinkStatus};
    use crate::service::test_shop::{add_endpoint_wanting_cancellations, create_link, shop};
    use crate::service::{Caller, Service};
    use crate::store::postgres::PostgresStore;
    use crate::store::postgres::scratch::{admin_url, scratch_store};

    /// Runs `test` with a shop whose account wants cancellations, on a
    /// scratch database, and the store itself.
    async fn with_shop(test: impl AsyncFnOnce(&PostgresStore, &Service, &Caller)) {
        let Some(admin_url) = admin_url() else { return };
        let (store, drop_database) = scratch_store(&admin_url).await;
        let store = Arc::new(store);
        let (service, caller) = shop(store.clone(), Arc::new(SystemClock)).await;
        add_endpoint_wanting_cancellations(&service, &caller).await;
        test(&store, &service, &caller).await;
        drop(service);
        drop_database().await;
    }

    async fn cancel_of(service: &Service, caller: &Caller, id: &str) -> Transition {
        let link = service.get_link(caller, id).await.unwrap();
        link.cancel(
            &CancelPolicy::NATIVE,
            None,
            None,
            Actor::System,
            SystemClock.now(),
        )
        .unwrap()
        .unwrap()
    }

    /// Writes `transitions` as the writers would if they all were waiting
    /// at once; their answers in order.
    async fn write_at_once(
        store: &PostgresStore,
        transitions: Vec<Transition>,
    ) -> Vec<StoreResult<Applied>> {
        let (jobs, answers): (Vec<Job>, Vec<_>) = transitions
            .into_iter()
            .map(|transition| {
                let (answer, answered) = oneshot::channel();
                (Job { transition, answer }, answered)
            })
            .unzip();
        for round in rounds(jobs) {
            write_round(&store.pool, round).await;
        }
        let mut out = Vec::new();
        for answered in answers {
            out.push(answered.await.unwrap());
        }
        out
    }

    async fn cancel_events(store: &PostgresStore, link_id: &str) -> Vec<String> {
        sqlx::query_scalar(
            "select id from events where link_id = $1 and type = 'payment_link.cancelled'",
        )
        .bind(link_id)
        .fetch_all(&store.pool)
        .await
        .unwrap()
    }

    async fn deliveries_of(store: &PostgresStore, event_id: &str) -> i64 {
        sqlx::query_scalar("select count(*) from webhook_deliveries where event_id = $1")
            .bind(event_id)
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn one_statement_writes_each_transition_with_its_event_and_deliveries_or_finds_it_stale()
    {
        with_shop(async |store, service, caller| {
            let mut ids = Vec::new();
            for _ in 0..5 {
                ids.push(create_link(service, caller).await);
            }
            let mut transitions = Vec::new();
            for id in &ids {
                transitions.push(cancel_of(service, caller, id).await);
            }
            // A cancel of the last link read before some other change.
            transitions[4].expected_version -= 1;
            // A second cancel of the first link, read at the same version.
            let second = cancel_of(service, caller, &ids[0]).await;
            let events: Vec<String> = transitions.iter().map(|t| t.event.id.clone()).collect();
            let round: Vec<Job> = transitions
                .into_iter()
                .map(|transition| Job {
                    transition,
                    answer: oneshot::channel().0,
                })
                .collect();

            // One statement for all five, not each alone.
            let answers =
                answers_by_link(&write_together(&store.pool, &round).await.unwrap()).unwrap();

            for (i, id) in ids.iter().enumerate().take(4) {
                assert_eq!(answers[id], Applied::Yes(DeliveriesOwed(1)), "link {i}");
                let link = service.get_link(caller, id).await.unwrap();
                assert_eq!(link.status, LinkStatus::Cancelled);
                assert_eq!(link.version, 2);
                assert_eq!(cancel_events(store, id).await, vec![events[i].clone()]);
                assert_eq!(deliveries_of(store, &events[i]).await, 1);
            }
            assert_eq!(answers[&ids[4]], Applied::StaleVersion);
            let untouched = service.get_link(caller, &ids[4]).await.unwrap();
            assert_eq!(untouched.status, LinkStatus::Active);
            assert!(cancel_events(store, &ids[4]).await.is_empty());

            // The second cancel of the first link loses to the first and
            // writes no second event.
            let second_event = second.event.id.clone();
            assert!(matches!(
                write_at_once(store, vec![second]).await[0],
                Ok(Applied::StaleVersion)
            ));
            assert_eq!(cancel_events(store, &ids[0]).await, vec![events[0].clone()]);
            assert_eq!(deliveries_of(store, &second_event).await, 0);
        })
        .await;
    }

    #[tokio::test]
    async fn a_transition_the_server_refuses_fails_alone_and_the_rest_of_its_batch_is_written() {
        with_shop(async |store, service, caller| {
            let mut ids = Vec::new();
            for _ in 0..3 {
                ids.push(create_link(service, caller).await);
            }
            let mut transitions = Vec::new();
            for id in &ids {
                transitions.push(cancel_of(service, caller, id).await);
            }
            // An event id that is taken already: the server refuses it.
            let taken: String = sqlx::query_scalar("select id from events where link_id = $1")
                .bind(&ids[1])
                .fetch_one(&store.pool)
                .await
                .unwrap();
            transitions[1].event.id = taken;

            let answers = write_at_once(store, transitions).await;

            assert!(
                matches!(answers[0], Ok(Applied::Yes(_))),
                "{:?}",
                answers[0]
            );
            assert!(answers[1].is_err(), "{:?}", answers[1]);
            assert!(
                matches!(answers[2], Ok(Applied::Yes(_))),
                "{:?}",
                answers[2]
            );
            for (id, status) in ids.iter().zip([
                LinkStatus::Cancelled,
                LinkStatus::Active,
                LinkStatus::Cancelled,
            ]) {
                assert_eq!(service.get_link(caller, id).await.unwrap().status, status);
            }
        })
        .await;
    }

    #[tokio::test]
    async fn cancels_racing_through_the_writers_each_get_their_own_answer() {
        with_shop(async |store, service, caller| {
            let mut ids = Vec::new();
            for _ in 0..40 {
                ids.push(create_link(service, caller).await);
            }
            // Each link twice, at the same version: one wins, one is stale.
            let mut transitions = Vec::new();
            for id in ids.iter().chain(ids.iter()) {
                transitions.push(cancel_of(service, caller, id).await);
            }
            let writes = transitions
                .into_iter()
                .map(|t| store.transitions.write(&store.pool, t));
            let answers = futures::future::join_all(writes).await;
            let won = answers
                .iter()
                .filter(|a| matches!(a, Ok(Applied::Yes(DeliveriesOwed(1)))))
                .count();
            let stale = answers
                .iter()
                .filter(|a| matches!(a, Ok(Applied::StaleVersion)))
                .count();
            assert_eq!((won, stale), (40, 40), "{answers:?}");
            for id in &ids {
                assert_eq!(cancel_events(store, id).await.len(), 1);
            }
        })
        .await;
    }
}

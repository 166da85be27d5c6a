//! Writes with nothing beside them (a new link and its event; a
//! transition that is only a link's change and its event: a cancel, an
//! update, an expiry) written many requests at a time: one statement and
//! one commit for a batch.
//!
//! On one PostgreSQL a commit costs a WAL flush and the server's own
//! per-statement work, and each request that runs its own statement pays
//! both. A few writer tasks take whatever writes are waiting when they
//! come free (none waits for a batch to fill: an idle node writes each one
//! as it comes, with the single statements of [`insert_link_at_once`] and
//! [`write_transition_at_once`]) and write them as one statement per kind,
//! reading a JSON array of rows.
//!
//! A request hands its write over and awaits the answer; a client that
//! hangs up drops only the waiting, and the batch it joined commits or
//! fails whole, as one statement. Nothing is acknowledged before its
//! commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Row as _};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::domain::{Actor, Link, LinkEvent, Transition};
use crate::store::{Applied, DeliveriesOwed, StoreError, StoreResult};

use super::rows::{
    DeliveryParams, LINK_COLUMNS, deliveries_owed, deliveries_owed_of, insert_link_at_once,
    write_transition_at_once,
};

/// The most writes one batch takes.
const MOST_PER_BATCH: usize = 64;

/// Writes waiting for a writer, beyond which a request waits to hand its
/// own over.
const QUEUE: usize = 1024;

struct Job {
    transition: Transition,
    answer: oneshot::Sender<StoreResult<Applied>>,
}

struct InsertJob {
    link: Link,
    event: LinkEvent,
    answer: oneshot::Sender<StoreResult<DeliveriesOwed>>,
}

/// Boxed: a queued write is a pointer, however large its link.
enum Write {
    Transition(Box<Job>),
    Insert(Box<InsertJob>),
}

/// The hand-over point to this store's batch writers.
pub(super) struct Writers {
    queue: mpsc::Sender<Write>,
}

impl Writers {
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
    pub(super) async fn transition(
        &self,
        pool: &PgPool,
        transition: Transition,
    ) -> StoreResult<Applied> {
        let (answer, answered) = oneshot::channel();
        let write = Write::Transition(Box::new(Job { transition, answer }));
        if let Err(mpsc::error::SendError(Write::Transition(job))) = self.queue.send(write).await {
            // The writers are gone (their runtime ended): write it here.
            return write_transition_at_once(&mut *pool.acquire().await?, &job.transition).await;
        }
        answered.await.unwrap_or_else(|_| Err(writer_stopped()))
    }

    /// Inserts `link` and its `event` in the next batch and answers as
    /// [`insert_link_at_once`] would.
    pub(super) async fn insert(
        &self,
        pool: &PgPool,
        link: Link,
        event: LinkEvent,
    ) -> StoreResult<DeliveriesOwed> {
        let (answer, answered) = oneshot::channel();
        let write = Write::Insert(Box::new(InsertJob {
            link,
            event,
            answer,
        }));
        if let Err(mpsc::error::SendError(Write::Insert(job))) = self.queue.send(write).await {
            return insert_link_at_once(&mut *pool.acquire().await?, &job.link, &job.event).await;
        }
        answered.await.unwrap_or_else(|_| Err(writer_stopped()))
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Unavailable(
        "the writer stopped before answering; its batch may or may not have committed".into(),
    )
}

impl Write {
    fn fail(self, error: StoreError) {
        match self {
            Write::Transition(job) => job.answer(Err(error)),
            Write::Insert(job) => job.answer(Err(error)),
        }
    }
}

async fn write_batches(pool: PgPool, waiting: Arc<Mutex<mpsc::Receiver<Write>>>) {
    // A writer keeps its connection while writes keep coming, rather than
    // queueing in the pool behind the requests' reads for each batch, and
    // gives it back when none waits. (Measured: no gain beyond the noise.
    // A batch's statement is often larger than one loopback segment, so it
    // relies on the connection sending without Nagle's algorithm, which
    // sqlx 0.9.0 left on: 40 ms a batch; see `engine::tests`.)
    let mut held: Option<PoolConnection<Postgres>> = None;
    loop {
        let writes = {
            // Another writer at the queue means this one is to wait, and
            // waits without a connection.
            let mut waiting = match waiting.try_lock() {
                Ok(waiting) => waiting,
                Err(_) => {
                    held = None;
                    waiting.lock().await
                }
            };
            if waiting.is_empty() {
                held = None;
            }
            let Some(first) = waiting.recv().await else {
                return;
            };
            let mut writes = vec![first];
            while writes.len() < MOST_PER_BATCH {
                match waiting.try_recv() {
                    Ok(write) => writes.push(write),
                    Err(_) => break,
                }
            }
            writes
        };
        let mut connection = match held.take() {
            Some(connection) => connection,
            None => match pool.acquire().await {
                Ok(connection) => connection,
                Err(error) => {
                    let error = StoreError::from(error);
                    for write in writes {
                        write.fail(error.clone());
                    }
                    continue;
                }
            },
        };
        let (mut transitions, mut inserts) = (Vec::new(), Vec::new());
        for write in writes {
            match write {
                Write::Transition(job) => transitions.push(*job),
                Write::Insert(job) => inserts.push(*job),
            }
        }
        let mut usable = true;
        if !inserts.is_empty() {
            usable &= write_batch(&mut connection, inserts).await;
        }
        for round in rounds(transitions) {
            usable &= write_batch(&mut connection, round).await;
        }
        // A connection that failed is not kept: the next batch takes
        // another from the pool.
        if usable {
            held = Some(connection);
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

/// A write a batch carries: which link it writes, how it is written
/// alone and together with others of its kind, and how its requester is
/// answered.
trait Batched: Sized {
    type Answer;
    /// What a batch of these is called in the log.
    const KIND: &'static str;
    fn link_id(&self) -> &str;
    fn answer(self, answer: StoreResult<Self::Answer>);
    async fn write_alone(&self, connection: &mut PgConnection) -> StoreResult<Self::Answer>;
    /// One statement for the batch: a row per write, with its link `id`.
    async fn write_together(
        connection: &mut PgConnection,
        batch: &[Self],
    ) -> sqlx::Result<Vec<PgRow>>;
    fn answer_of(row: &PgRow) -> sqlx::Result<Self::Answer>;
}

/// Writes a batch (no link twice) and answers each of its requesters;
/// false if the connection failed.
async fn write_batch<W: Batched>(connection: &mut PgConnection, batch: Vec<W>) -> bool {
    if batch.len() > 1 {
        match W::write_together(connection, &batch).await {
            Ok(rows) => {
                let mut answers = answers_by_link::<W>(&rows);
                for write in batch {
                    let answer = match &mut answers {
                        Ok(by_link) => by_link.remove(write.link_id()).ok_or_else(|| {
                            StoreError::Internal(format!(
                                "the batch answered nothing for link {}",
                                write.link_id()
                            ))
                        }),
                        Err(error) => Err(StoreError::Internal(error.to_string())),
                    };
                    // A requester that hung up has nobody to tell.
                    write.answer(answer);
                }
                return true;
            }
            // The server refused the statement, so nothing of it was
            // written: one write that fails fails them all. Each is
            // written alone, so the others still go through and the one
            // at fault gets its own error.
            Err(sqlx::Error::Database(error)) => {
                tracing::warn!(%error, writes = batch.len(), kind = W::KIND, "a batch was refused; writing each alone");
            }
            // The connection failed: whether it committed is unknown, as
            // for a single statement; each requester hears so.
            Err(error) => {
                let error = StoreError::from(error);
                for write in batch {
                    write.answer(Err(error.clone()));
                }
                return false;
            }
        }
    }
    let mut usable = true;
    for write in batch {
        let answer = write.write_alone(connection).await;
        usable &= !matches!(answer, Err(StoreError::Unavailable(_)));
        write.answer(answer);
    }
    usable
}

fn answers_by_link<W: Batched>(rows: &[PgRow]) -> sqlx::Result<HashMap<String, W::Answer>> {
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, W::answer_of(row)?)))
        .collect()
}

impl Batched for Job {
    type Answer = Applied;
    const KIND: &'static str = "transitions";

    fn link_id(&self) -> &str {
        &self.transition.link.id
    }

    fn answer(self, answer: StoreResult<Applied>) {
        let _ = self.answer.send(answer);
    }

    async fn write_alone(&self, connection: &mut PgConnection) -> StoreResult<Applied> {
        write_transition_at_once(connection, &self.transition).await
    }

    async fn write_together(
        connection: &mut PgConnection,
        batch: &[Self],
    ) -> sqlx::Result<Vec<PgRow>> {
        write_together(connection, batch).await
    }

    fn answer_of(row: &PgRow) -> sqlx::Result<Applied> {
        let written: bool = row.try_get("written")?;
        Ok(if written {
            Applied::Yes(deliveries_owed_of(row)?)
        } else {
            Applied::StaleVersion
        })
    }
}

impl Batched for InsertJob {
    type Answer = DeliveriesOwed;
    const KIND: &'static str = "new links";

    fn link_id(&self) -> &str {
        &self.link.id
    }

    fn answer(self, answer: StoreResult<DeliveriesOwed>) {
        let _ = self.answer.send(answer);
    }

    async fn write_alone(&self, connection: &mut PgConnection) -> StoreResult<DeliveriesOwed> {
        insert_link_at_once(connection, &self.link, &self.event).await
    }

    async fn write_together(
        connection: &mut PgConnection,
        batch: &[Self],
    ) -> sqlx::Result<Vec<PgRow>> {
        insert_together(connection, batch).await
    }

    fn answer_of(row: &PgRow) -> sqlx::Result<DeliveriesOwed> {
        deliveries_owed_of(row)
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
async fn write_together(connection: &mut PgConnection, round: &[Job]) -> sqlx::Result<Vec<PgRow>> {
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
        .fetch_all(connection)
        .await
}

/// One new link of a batch, and its event. The link's serialized fields
/// are its columns under their own names (status and payment type in
/// snake case, the currency as its code, as the columns hold them).
#[derive(Serialize)]
struct NewRow<'a> {
    #[serde(flatten)]
    link: &'a Link,
    event_id: &'a str,
    event_account_id: &'a str,
    event_livemode: bool,
    event_type: &'static str,
    event_at: Timestamp,
    actor: &'a Actor,
    reason: &'a Option<String>,
    snapshot: &'a Link,
    previous_attributes: &'a Option<serde_json::Value>,
}

/// Inserts the links as one statement: a row per link with its id and the
/// deliveries its event owes.
async fn insert_together(
    connection: &mut PgConnection,
    inserts: &[InsertJob],
) -> sqlx::Result<Vec<PgRow>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let from_batch = LINK_COLUMNS
            .split(',')
            .map(|column| format!("b.{}", column.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "with batch as (
                select * from jsonb_to_recordset($1) as b(
                    id text, account_id text, livemode boolean, slug text, amount bigint,
                    currency text, description text, payment_type text, customer jsonb,
                    line_items jsonb, order_reference text, metadata jsonb, success_url text,
                    cancel_url text, status text, expires_at timestamptz, created_at timestamptz,
                    updated_at timestamptz, cancelled_at timestamptz, cancellation_reason text,
                    paid_at timestamptz, payment_id text, version bigint, amount_refunded bigint,
                    customer_message text, event_id text, event_account_id text,
                    event_livemode boolean, event_type text, event_at timestamptz, actor jsonb,
                    reason text, snapshot jsonb, previous_attributes jsonb)
             ), written as (
                insert into payment_links ({LINK_COLUMNS}) select {from_batch} from batch b
                returning id
             ), event as (
                insert into events (id, link_id, account_id, livemode, type, created_at, actor, reason, link, previous_attributes, refund)
                select b.event_id, b.id, b.event_account_id, b.event_livemode, b.event_type, b.event_at, b.actor, b.reason, b.snapshot, b.previous_attributes, null
                from batch b join written on written.id = b.id
                returning id, account_id, livemode, type, created_at
             ), deliveries as ({} returning event_id)
             select b.id,
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
    let rows: Vec<NewRow<'_>> = inserts
        .iter()
        .map(|job| NewRow {
            link: &job.link,
            event_id: &job.event.id,
            event_account_id: &job.event.link.account_id,
            event_livemode: job.event.link.livemode,
            event_type: job.event.event_type.as_str(),
            event_at: job.event.created_at,
            actor: &job.event.actor,
            reason: &job.event.reason,
            snapshot: &job.event.link,
            previous_attributes: &job.event.previous_attributes,
        })
        .collect();
    sqlx::query(AssertSqlSafe(SQL.as_str()))
        .bind(Json(&rows))
        .fetch_all(connection)
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{Clock, SystemClock};
    use jiff::SignedDuration;

    use crate::domain::link::Creation;
    use crate::domain::{CancelPolicy, Customer, LineItem, LinkStatus, NewLink};
    use crate::service::test_shop::{add_endpoint_wanting_cancellations, create_link, shop};
    use crate::service::{Caller, NewEndpoint, Service};
    use crate::store::postgres::PostgresStore;
    use crate::store::postgres::scratch::{admin_url, scratch_store};
    use crate::store::{LinkStore, Scope};

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

    async fn links(service: &Service, caller: &Caller, count: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..count {
            ids.push(create_link(service, caller).await);
        }
        ids
    }

    /// A cancel of each link, read now.
    async fn cancels_of(service: &Service, caller: &Caller, ids: &[String]) -> Vec<Transition> {
        let mut transitions = Vec::new();
        for id in ids {
            transitions.push(cancel_of(service, caller, id).await);
        }
        transitions
    }

    async fn connection(store: &PostgresStore) -> PoolConnection<Postgres> {
        store
            .pool
            .acquire()
            .await
            .expect("a connection from the test's pool")
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
            write_batch(&mut *connection(store).await, round).await;
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
            let ids = links(service, caller, 5).await;
            let mut transitions = cancels_of(service, caller, &ids).await;
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
            let answers = answers_by_link::<Job>(
                &write_together(&mut *connection(store).await, &round)
                    .await
                    .unwrap(),
            )
            .unwrap();

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
            let ids = links(service, caller, 3).await;
            let mut transitions = cancels_of(service, caller, &ids).await;
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
            let ids = links(service, caller, 40).await;
            // Each link twice, at the same version: one wins, one is stale.
            let mut transitions = cancels_of(service, caller, &ids).await;
            transitions.extend(cancels_of(service, caller, &ids).await);
            let writes = transitions
                .into_iter()
                .map(|t| store.writers.transition(&store.pool, t));
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

    /// A new link of `amount` in the caller's scope and its event, as a
    /// create would make them; with every optional field when `full`.
    fn new_link(scope: &Scope, amount: i64, full: bool) -> (Link, LinkEvent) {
        let mut new = NewLink {
            amount: Some(amount),
            currency: Some("EUR".into()),
            ..NewLink::default()
        };
        if full {
            new.description = Some("Two mugs".into());
            new.customer = Some(Customer {
                email: Some("ada@example.com".into()),
                first_name: Some("Ada".into()),
                last_name: None,
            });
            new.line_items = Some(vec![LineItem {
                product_id: "mug".into(),
                name: "Mug".into(),
                quantity: 2,
                unit_amount: amount / 2,
            }]);
            new.order_reference = Some("ORD-7".into());
            new.metadata = Some([("channel".to_owned(), "shop: \"web\"".to_owned())].into());
            new.success_url = Some("https://shop.example/thanks".into());
            new.cancel_url = Some("https://shop.example/cart".into());
        }
        new.create(Creation {
            account_id: &scope.account_id,
            livemode: scope.livemode,
            actor: Actor::System,
            now: SystemClock.now(),
            default_lifetime: SignedDuration::from_hours(24),
        })
        .unwrap()
    }

    fn insert_jobs(
        links: Vec<(Link, LinkEvent)>,
    ) -> (
        Vec<InsertJob>,
        Vec<oneshot::Receiver<StoreResult<DeliveriesOwed>>>,
    ) {
        links
            .into_iter()
            .map(|(link, event)| {
                let (answer, answered) = oneshot::channel();
                (
                    InsertJob {
                        link,
                        event,
                        answer,
                    },
                    answered,
                )
            })
            .unzip()
    }

    #[tokio::test]
    async fn one_statement_inserts_each_link_as_given_with_its_event_and_deliveries() {
        with_shop(async |store, service, caller| {
            service
                .create_webhook_endpoint(
                    caller,
                    NewEndpoint {
                        url: "http://127.0.0.1:9/all-events".into(),
                        ..NewEndpoint::default()
                    },
                )
                .await
                .unwrap();
            let links = vec![
                new_link(&caller.scope, 1200, true),
                new_link(&caller.scope, 500, false),
                new_link(&caller.scope, 999, false),
            ];
            let (jobs, _) = insert_jobs(links.clone());

            let owed = answers_by_link::<InsertJob>(
                &insert_together(&mut *connection(store).await, &jobs)
                    .await
                    .unwrap(),
            )
            .unwrap();

            for (link, event) in &links {
                // The endpoint for all events; not the one for cancellations.
                assert_eq!(owed[&link.id], DeliveriesOwed(1));
                let stored = store.get_link(&caller.scope, &link.id).await.unwrap();
                assert_eq!(stored.as_ref(), Some(link));
                assert_eq!(
                    store.link_events(&link.id).await.unwrap(),
                    vec![event.clone()]
                );
                assert_eq!(deliveries_of(store, &event.id).await, 1);
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_new_link_the_server_refuses_fails_alone_and_the_rest_of_its_batch_is_written() {
        with_shop(async |store, _service, caller| {
            let mut links = vec![
                new_link(&caller.scope, 100, false),
                new_link(&caller.scope, 200, false),
                new_link(&caller.scope, 300, true),
            ];
            // A slug that is taken (by the first): the server refuses it.
            links[1].0.slug = links[0].0.slug.clone();
            links[1].1.link.slug = links[0].0.slug.clone();
            let (jobs, answered) = insert_jobs(links.clone());

            write_batch(&mut *connection(store).await, jobs).await;

            let mut answers = Vec::new();
            for answer in answered {
                answers.push(answer.await.unwrap());
            }
            assert!(
                matches!(answers[0], Ok(DeliveriesOwed(0))),
                "{:?}",
                answers[0]
            );
            assert!(answers[1].is_err(), "{:?}", answers[1]);
            assert!(
                matches!(answers[2], Ok(DeliveriesOwed(0))),
                "{:?}",
                answers[2]
            );
            for ((link, _), stored) in links.iter().zip([true, false, true]) {
                let found = store.get_link(&caller.scope, &link.id).await.unwrap();
                assert_eq!(found.is_some(), stored, "{}", link.id);
            }
        })
        .await;
    }
}

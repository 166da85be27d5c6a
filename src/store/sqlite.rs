//! The embedded SQLite store.
//!
//! One dedicated writer thread owns the only write connection. Writes queue
//! to it; it takes every job waiting, runs each in its own savepoint inside
//! one transaction and commits once (group commit), and only then answers
//! the callers, so an acknowledged write has been fsynced
//! (`synchronous=FULL`). Reads run on a small pool of read-only connections,
//! which WAL lets proceed beside the writer.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params, params_from_iter};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{
    Account, ApiKeyRecord, Applied, EventFilter, IdempotencyClaim, IdempotencyMark,
    IdempotencyWindow, LinkFilter, Page, ProcessorAccount, Scope, StatsRow, Store, StoreError,
    StoreResult, StoredResponse,
};
use crate::domain::webhook::delivery::{
    Attempt, ClaimedDelivery, Delivery, DeliveryStatus, GONE_REASON, LEASE, NextStep,
};
use crate::domain::webhook::endpoint::{PayloadFormat, WebhookEndpoint};
use crate::domain::{
    AttemptState, EventType, Link, LinkEvent, LinkStatus, PaymentAttempt, Refund, RefundState,
    Transition,
};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("sqlite/0001_init.sql")),
    (2, include_str!("sqlite/0002_idempotency.sql")),
    (3, include_str!("sqlite/0003_webhooks.sql")),
    (4, include_str!("sqlite/0004_durability.sql")),
    (5, include_str!("sqlite/0005_retired_secrets.sql")),
    (6, include_str!("sqlite/0006_refunds_and_processors.sql")),
];
const READERS: usize = 4;
/// Most operations one commit may carry.
const MAX_BATCH: usize = 512;

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Unavailable(error.to_string())
            }
            _ => StoreError::Internal(error.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        StoreError::Internal(format!("stored JSON: {error}"))
    }
}

/// One queued write: runs on the writer's connection inside a savepoint and
/// says whether it succeeded, plus how to answer once the commit is known.
type WriteJob = Box<dyn FnOnce(&Connection) -> JobOutcome + Send>;

struct JobOutcome {
    succeeded: bool,
    answer: Box<dyn FnOnce(Option<StoreError>) + Send>,
}

pub struct SqliteStore {
    writer: mpsc::Sender<WriteJob>,
    readers: Arc<ReaderPool>,
}

struct ReaderPool {
    connections: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl SqliteStore {
    /// Opens or creates the database at `path`, migrates it, and starts the writer.
    pub async fn open(path: &str) -> anyhow::Result<Self> {
        if path.is_empty() || path == ":memory:" {
            anyhow::bail!(
                "SQLite needs a file path (an in-memory database cannot be shared by the reader connections)"
            );
        }
        let path = path.to_owned();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (writer, jobs) = mpsc::channel::<WriteJob>(4096);
        let writer_path = path.clone();
        std::thread::Builder::new()
            .name("paylink-sqlite-writer".into())
            .spawn(move || {
                let connection = match open_writer(&writer_path) {
                    Ok(connection) => connection,
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                run_writer(connection, jobs);
            })?;
        ready_rx.await??;

        let readers = tokio::task::spawn_blocking(move || {
            (0..READERS)
                .map(|_| open_reader(&path))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .await??;
        Ok(Self {
            writer,
            readers: Arc::new(ReaderPool {
                connections: Mutex::new(readers),
                permits: Arc::new(Semaphore::new(READERS)),
            }),
        })
    }

    async fn write<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        let job: WriteJob = Box::new(move |connection| {
            let result = operation(connection);
            JobOutcome {
                succeeded: result.is_ok(),
                answer: Box::new(move |commit_error| {
                    let _ = reply.send(match commit_error {
                        Some(error) => Err(error),
                        None => result,
                    });
                }),
            }
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the write could not be committed".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        // The permit moves into the blocking task and is released only
        // after the connection is back in the pool, so a caller that gives
        // up (its request future dropped) never frees a permit whose
        // connection is still in use.
        let permit = Arc::clone(&self.readers.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("reader pool closed".into()))?;
        let pool = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let lease = ReaderLease::take(pool, permit)?;
            match &lease.connection {
                Some(connection) => query(connection),
                None => Err(StoreError::Internal(
                    "reader lease without a connection".into(),
                )),
            }
        })
        .await
        .map_err(|error| StoreError::Internal(format!("reader task failed: {error}")))?
    }

    /// Runs a no-op through the writer: answers only if the writer thread
    /// is alive and can open a transaction.
    async fn ping_writer(&self) -> StoreResult<()> {
        self.write(|c| {
            c.query_row("select 1", [], |row| row.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }
}

impl ReaderPool {
    /// The connection list holds no invariant a panic could break halfway,
    /// so a poisoned lock is taken as it is rather than failing every read.
    fn connections(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A reader connection out of the pool; it goes back on drop, on every
/// path (a query's error or panic included), before its permit is released.
struct ReaderLease {
    pool: Arc<ReaderPool>,
    connection: Option<Connection>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl ReaderLease {
    fn take(pool: Arc<ReaderPool>, permit: tokio::sync::OwnedSemaphorePermit) -> StoreResult<Self> {
        let connection = pool.connections().pop().ok_or_else(|| {
            StoreError::Internal("no reader connection free despite a permit".into())
        })?;
        Ok(Self {
            pool,
            connection: Some(connection),
            _permit: permit,
        })
    }
}

impl Drop for ReaderLease {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.pool.connections().push(connection);
        }
    }
}

fn open_writer(path: &str) -> anyhow::Result<Connection> {
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    let mut connection = Connection::open(path)?;
    // WAL lets readers run beside the writer; FULL syncs the WAL on every
    // commit so an acknowledged write survives power loss.
    connection.execute_batch(
        "pragma journal_mode = wal;
         pragma synchronous = full;
         pragma foreign_keys = on;
         pragma busy_timeout = 5000;",
    )?;
    migrate(&mut connection)?;
    Ok(connection)
}

fn open_reader(path: &str) -> anyhow::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    connection.execute_batch("pragma busy_timeout = 5000; pragma query_only = on;")?;
    Ok(connection)
}

fn migrate(connection: &mut Connection) -> anyhow::Result<()> {
    connection.execute_batch(
        "create table if not exists schema_migrations (version integer primary key, applied_at integer not null)",
    )?;
    for (version, sql) in MIGRATIONS {
        let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let applied: bool = tx.query_row(
            "select exists (select 1 from schema_migrations where version = ?1)",
            [version],
            |row| row.get(0),
        )?;
        if !applied {
            tx.execute_batch(sql)?;
            tx.execute(
                "insert into schema_migrations (version, applied_at) values (?1, ?2)",
                params![version, micros(Timestamp::now())],
            )?;
        }
        tx.commit()?;
    }
    Ok(())
}

fn run_writer(connection: Connection, mut jobs: mpsc::Receiver<WriteJob>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(error) = connection.execute_batch("begin immediate") {
            // Dropping the jobs unanswered tells each caller the write did not happen.
            tracing::error!(%error, "could not begin a write transaction");
            drop(batch);
            continue;
        }
        let mut answers = Vec::with_capacity(batch.len());
        for job in batch {
            // Each job gets its own savepoint so one failing operation
            // leaves the others of the batch intact.
            if let Err(error) = connection.execute_batch("savepoint job") {
                tracing::error!(%error, "could not open a savepoint");
                continue;
            }
            let outcome = job(&connection);
            let closed = if outcome.succeeded {
                connection.execute_batch("release job")
            } else {
                connection.execute_batch("rollback to job; release job")
            };
            if let Err(error) = closed {
                tracing::error!(%error, "could not close a savepoint");
            }
            answers.push(outcome.answer);
        }
        match connection.execute_batch("commit") {
            Ok(()) => answers.into_iter().for_each(|answer| answer(None)),
            Err(error) => {
                tracing::error!(%error, "group commit failed; every operation of the batch is rolled back");
                let _ = connection.execute_batch("rollback");
                let message = error.to_string();
                for answer in answers {
                    answer(Some(StoreError::Unavailable(message.clone())));
                }
            }
        }
    }
}

fn micros(at: Timestamp) -> i64 {
    at.as_microsecond()
}

fn from_micros(value: i64) -> rusqlite::Result<Timestamp> {
    Timestamp::from_microsecond(value).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Integer,
            Box::new(error),
        )
    })
}

fn opt_from_micros(value: Option<i64>) -> rusqlite::Result<Option<Timestamp>> {
    value.map(from_micros).transpose()
}

fn json_column<T: serde::de::DeserializeOwned>(
    text: Option<String>,
) -> rusqlite::Result<Option<T>> {
    text.map(|text| {
        serde_json::from_str(&text).map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                Box::new(error),
            )
        })
    })
    .transpose()
}

fn conversion_error(message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, message.into())
}

const LINK_COLUMNS: &str = "id, account_id, livemode, slug, amount, currency, description, payment_type, \
     customer, line_items, order_reference, metadata, success_url, cancel_url, status, expires_at, \
     created_at, updated_at, cancelled_at, cancellation_reason, paid_at, payment_id, version, amount_refunded";

fn link_from_row(row: &Row<'_>) -> rusqlite::Result<Link> {
    let currency: String = row.get("currency")?;
    let status: String = row.get("status")?;
    Ok(Link {
        id: row.get("id")?,
        account_id: row.get("account_id")?,
        livemode: row.get("livemode")?,
        slug: row.get("slug")?,
        amount: row.get("amount")?,
        currency: crate::domain::Currency::parse(&currency).map_err(conversion_error)?,
        description: row.get("description")?,
        payment_type: crate::domain::PaymentType::OneTime,
        customer: json_column(row.get("customer")?)?,
        line_items: json_column(row.get("line_items")?)?,
        order_reference: row.get("order_reference")?,
        metadata: json_column(row.get("metadata")?)?.unwrap_or_default(),
        success_url: row.get("success_url")?,
        cancel_url: row.get("cancel_url")?,
        status: LinkStatus::parse(&status)
            .ok_or_else(|| conversion_error(format!("unknown status {status}")))?,
        expires_at: from_micros(row.get("expires_at")?)?,
        created_at: from_micros(row.get("created_at")?)?,
        updated_at: from_micros(row.get("updated_at")?)?,
        cancelled_at: opt_from_micros(row.get("cancelled_at")?)?,
        cancellation_reason: row.get("cancellation_reason")?,
        paid_at: opt_from_micros(row.get("paid_at")?)?,
        payment_id: row.get("payment_id")?,
        amount_refunded: row.get("amount_refunded")?,
        version: row.get("version")?,
    })
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<LinkEvent> {
    let event_type: String = row.get("type")?;
    Ok(LinkEvent {
        id: row.get("id")?,
        event_type: crate::domain::EventType::parse(&event_type)
            .ok_or_else(|| conversion_error(format!("unknown event type {event_type}")))?,
        created_at: from_micros(row.get("created_at")?)?,
        actor: json_column(row.get("actor")?)?
            .ok_or_else(|| conversion_error("missing actor".into()))?,
        reason: row.get("reason")?,
        link: json_column(row.get("link")?)?
            .ok_or_else(|| conversion_error("missing link".into()))?,
        previous_attributes: json_column(row.get("previous_attributes")?)?,
        refund: json_column(row.get("refund")?)?,
    })
}

fn insert_event(connection: &Connection, event: &LinkEvent) -> StoreResult<()> {
    connection.execute(
        "insert into events (id, link_id, account_id, livemode, type, created_at, actor, reason, link, previous_attributes, refund)
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            event.id,
            event.link.id,
            event.link.account_id,
            event.link.livemode,
            event.event_type.as_str(),
            micros(event.created_at),
            serde_json::to_string(&event.actor)?,
            event.reason,
            serde_json::to_string(&event.link)?,
            event.previous_attributes.as_ref().map(serde_json::Value::to_string),
            optional_json(&event.refund)?,
        ],
    )?;
    // The event's deliveries, in the same transaction: an event is never
    // stored without the deliveries it owes.
    connection
        .prepare_cached(
            "insert into webhook_deliveries (event_id, endpoint_id, status, attempt_count, next_attempt_at, created_at, updated_at)
             select ?1, w.id, 'pending', 0, ?4, ?4, ?4 from webhook_endpoints w
             where w.account_id = ?2 and w.livemode = ?3 and w.enabled = 1 and w.deleted_at is null
               and (w.events is null or exists (select 1 from json_each(w.events) where value = ?5))",
        )?
        .execute(params![
            event.id,
            event.link.account_id,
            event.link.livemode,
            micros(event.created_at),
            event.event_type.as_str(),
        ])?;
    Ok(())
}

const ENDPOINT_COLUMNS: &str = "id, account_id, livemode, url, description, events, format, enabled, \
     disabled_reason, secret, retired_secrets, created_at, updated_at";

fn endpoint_from_row(row: &Row<'_>) -> rusqlite::Result<WebhookEndpoint> {
    let format: String = row.get("format")?;
    let events: Option<Vec<String>> = json_column(row.get("events")?)?;
    Ok(WebhookEndpoint {
        id: row.get("id")?,
        account_id: row.get("account_id")?,
        livemode: row.get("livemode")?,
        url: row.get("url")?,
        description: row.get("description")?,
        events: events
            .map(|names| {
                names
                    .iter()
                    .map(|name| {
                        EventType::parse(name)
                            .ok_or_else(|| conversion_error(format!("unknown event type {name}")))
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .transpose()?,
        format: PayloadFormat::parse(&format)
            .ok_or_else(|| conversion_error(format!("unknown format {format}")))?,
        enabled: row.get("enabled")?,
        disabled_reason: row.get("disabled_reason")?,
        secret: row.get("secret")?,
        retired_secrets: json_column(row.get("retired_secrets")?)?.unwrap_or_default(),
        created_at: from_micros(row.get("created_at")?)?,
        updated_at: from_micros(row.get("updated_at")?)?,
    })
}

fn event_types_json(endpoint: &WebhookEndpoint) -> StoreResult<Option<String>> {
    optional_json(
        &endpoint
            .events
            .as_ref()
            .map(|types| types.iter().map(|t| t.as_str()).collect::<Vec<_>>()),
    )
}

const EVENT_COLUMNS: &str =
    "id, type, created_at, actor, reason, link, previous_attributes, refund";

fn optional_json<T: serde::Serialize>(value: &Option<T>) -> StoreResult<Option<String>> {
    Ok(value.as_ref().map(serde_json::to_string).transpose()?)
}

/// Appends the filter's conditions (on table alias `l`) to `sql` and `args`.
fn push_filter(sql: &mut String, args: &mut Vec<Value>, filter: &LinkFilter, now: Timestamp) {
    if let Some(status) = filter.status {
        match status {
            LinkStatus::Active => {
                args.push(Value::Integer(micros(now)));
                sql.push_str(&format!(
                    " and l.status = 'active' and l.expires_at > ?{}",
                    args.len()
                ));
            }
            LinkStatus::Expired => {
                args.push(Value::Integer(micros(now)));
                sql.push_str(&format!(
                    " and (l.status = 'expired' or (l.status = 'active' and l.expires_at <= ?{}))",
                    args.len()
                ));
            }
            LinkStatus::Processing | LinkStatus::Paid | LinkStatus::Cancelled => {
                args.push(Value::Text(status.as_str().into()));
                sql.push_str(&format!(" and l.status = ?{}", args.len()));
            }
        }
    }
    if let Some(after) = filter.created_after {
        args.push(Value::Integer(micros(after)));
        sql.push_str(&format!(" and l.created_at > ?{}", args.len()));
    }
    if let Some(before) = filter.created_before {
        args.push(Value::Integer(micros(before)));
        sql.push_str(&format!(" and l.created_at < ?{}", args.len()));
    }
    if let Some(reference) = &filter.order_reference {
        args.push(Value::Text(reference.clone()));
        sql.push_str(&format!(" and l.order_reference = ?{}", args.len()));
    }
    if let Some(payment_id) = &filter.payment_id {
        args.push(Value::Text(payment_id.clone()));
        sql.push_str(&format!(" and l.payment_id = ?{}", args.len()));
    }
    if let Some(product_id) = &filter.product_id {
        args.push(Value::Text(product_id.clone()));
        sql.push_str(&format!(
            " and exists (select 1 from json_each(l.line_items) as item \
               where json_extract(item.value, '$.product_id') = ?{})",
            args.len()
        ));
    }
    for (key, value) in &filter.metadata {
        args.push(Value::Text(key.clone()));
        args.push(Value::Text(value.clone()));
        sql.push_str(&format!(
            " and exists (select 1 from json_each(l.metadata) as entry \
               where entry.key = ?{} and entry.type = 'text' and entry.value = ?{})",
            args.len() - 1,
            args.len()
        ));
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn count_accounts(&self) -> StoreResult<i64> {
        self.read(|c| Ok(c.query_row("select count(*) from accounts", [], |row| row.get(0))?))
            .await
    }

    async fn ensure_account(&self, account: Account) -> StoreResult<Account> {
        self.write(move |c| {
            c.execute(
                "insert into accounts (id, name, suspended, created_at) values (?1, ?2, ?3, ?4)
                 on conflict (name) do nothing",
                params![
                    account.id,
                    account.name,
                    account.suspended,
                    micros(account.created_at)
                ],
            )?;
            let stored = c.query_row(
                "select id, name, suspended, created_at from accounts where name = ?1",
                [&account.name],
                account_from_row,
            )?;
            Ok(stored)
        })
        .await
    }

    async fn set_account_suspended(&self, name: &str, suspended: bool) -> StoreResult<bool> {
        let name = name.to_owned();
        self.write(move |c| {
            Ok(c.execute(
                "update accounts set suspended = ?1 where name = ?2",
                params![suspended, name],
            )? == 1)
        })
        .await
    }

    async fn insert_api_key(&self, key: ApiKeyRecord) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                "insert into api_keys (id, account_id, livemode, key_hash, key_prefix, created_at)
                 values (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key.id,
                    key.account_id,
                    key.livemode,
                    key.key_hash,
                    key.key_prefix,
                    micros(key.created_at)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_account(&self, id: &str) -> StoreResult<Option<Account>> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "select id, name, suspended, created_at from accounts where id = ?1",
                [id],
                account_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<(ApiKeyRecord, Account)>> {
        let key_hash = key_hash.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "select k.id, k.account_id, k.livemode, k.key_hash, k.key_prefix, k.created_at,
                        a.id, a.name, a.suspended, a.created_at
                 from api_keys k join accounts a on a.id = k.account_id
                 where k.key_hash = ?1",
                [key_hash],
                |row| {
                    let key = ApiKeyRecord {
                        id: row.get(0)?,
                        account_id: row.get(1)?,
                        livemode: row.get(2)?,
                        key_hash: row.get(3)?,
                        key_prefix: row.get(4)?,
                        created_at: from_micros(row.get(5)?)?,
                    };
                    let account = Account {
                        id: row.get(6)?,
                        name: row.get(7)?,
                        suspended: row.get(8)?,
                        created_at: from_micros(row.get(9)?)?,
                    };
                    Ok((key, account))
                },
            )
            .optional()?)
        })
        .await
    }

    async fn insert_link(
        &self,
        link: Link,
        event: LinkEvent,
        mark: Option<IdempotencyMark>,
    ) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                &format!("insert into payment_links ({LINK_COLUMNS}) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"),
                params![
                    link.id,
                    link.account_id,
                    link.livemode,
                    link.slug,
                    link.amount,
                    link.currency.code(),
                    link.description,
                    "one_time",
                    optional_json(&link.customer)?,
                    optional_json(&link.line_items)?,
                    link.order_reference,
                    serde_json::to_string(&link.metadata)?,
                    link.success_url,
                    link.cancel_url,
                    link.status.as_str(),
                    micros(link.expires_at),
                    micros(link.created_at),
                    micros(link.updated_at),
                    link.cancelled_at.map(micros),
                    link.cancellation_reason,
                    link.paid_at.map(micros),
                    link.payment_id,
                    link.version,
                    link.amount_refunded,
                ],
            )?;
            insert_event(c, &event)?;
            mark_idempotency_key(c, mark.as_ref(), &event.id)
        })
        .await
    }

    async fn get_link(&self, scope: &Scope, id: &str) -> StoreResult<Option<Link>> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.read(move |c| {
            Ok(c.query_row(
                &format!("select {LINK_COLUMNS} from payment_links where id = ?1 and account_id = ?2 and livemode = ?3"),
                params![id, scope.account_id, scope.livemode],
                link_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn get_link_by_slug(&self, slug: &str) -> StoreResult<Option<Link>> {
        let slug = slug.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("select {LINK_COLUMNS} from payment_links where slug = ?1"),
                [slug],
                link_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn list_links(
        &self,
        scope: &Scope,
        filter: &LinkFilter,
        page: &Page,
        now: Timestamp,
    ) -> StoreResult<Vec<Link>> {
        let mut sql = format!(
            "select {LINK_COLUMNS} from payment_links l where l.account_id = ?1 and l.livemode = ?2"
        );
        let mut args = vec![
            Value::Text(scope.account_id.clone()),
            Value::Integer(i64::from(scope.livemode)),
        ];
        push_filter(&mut sql, &mut args, filter, now);
        if let Some((created_at, id)) = &page.starting_after {
            args.push(Value::Integer(micros(*created_at)));
            args.push(Value::Text(id.clone()));
            let (at, id) = (args.len() - 1, args.len());
            sql.push_str(&format!(
                " and (l.created_at < ?{at} or (l.created_at = ?{at} and l.id < ?{id}))"
            ));
        }
        args.push(Value::Integer(
            i64::try_from(page.limit).unwrap_or(i64::MAX),
        ));
        sql.push_str(&format!(
            " order by l.created_at desc, l.id desc limit ?{}",
            args.len()
        ));
        self.read(move |c| {
            let mut statement = c.prepare_cached(&sql)?;
            let links = statement
                .query_map(params_from_iter(args), link_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(links)
        })
        .await
    }

    async fn apply_transition(
        &self,
        transition: Transition,
        mark: Option<IdempotencyMark>,
    ) -> StoreResult<Applied> {
        self.write(move |c| {
            let applied = write_transition(c, &transition)?;
            if applied == Applied::Yes {
                mark_idempotency_key(c, mark.as_ref(), &transition.event.id)?;
            }
            Ok(applied)
        })
        .await
    }

    async fn event_by_id(&self, id: &str) -> StoreResult<Option<LinkEvent>> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("select {EVENT_COLUMNS} from events where id = ?1"),
                [id],
                event_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn link_events(&self, link_id: &str) -> StoreResult<Vec<LinkEvent>> {
        let link_id = link_id.to_owned();
        self.read(move |c| {
            let mut statement = c.prepare_cached(&format!(
                "select {EVENT_COLUMNS} from events where link_id = ?1 order by seq"
            ))?;
            let events = statement
                .query_map([link_id], event_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(events)
        })
        .await
    }

    async fn stats(
        &self,
        scope: &Scope,
        filter: &LinkFilter,
        now: Timestamp,
    ) -> StoreResult<Vec<StatsRow>> {
        let mut args = vec![
            Value::Text(scope.account_id.clone()),
            Value::Integer(i64::from(scope.livemode)),
            Value::Integer(micros(now)),
        ];
        let mut sql = String::from(
            "select case when l.status = 'active' and l.expires_at <= ?3 then 'expired' else l.status end as effective,
                    l.currency, count(*), sum(l.amount)
             from payment_links l where l.account_id = ?1 and l.livemode = ?2",
        );
        push_filter(&mut sql, &mut args, filter, now);
        sql.push_str(" group by effective, l.currency order by effective, l.currency");
        self.read(move |c| {
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement
                .query_map(params_from_iter(args), |row| {
                    let status: String = row.get(0)?;
                    Ok(StatsRow {
                        status: LinkStatus::parse(&status)
                            .ok_or_else(|| conversion_error(format!("unknown status {status}")))?,
                        currency: row.get(1)?,
                        count: row.get(2)?,
                        amount: row.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn expire_due(&self, now: Timestamp, limit: usize) -> StoreResult<usize> {
        // One write job: nothing else writes between the select and the
        // updates, so the single writer is its own claim.
        self.write(move |c| {
            let due = {
                let mut statement = c.prepare_cached(&format!(
                    "select {LINK_COLUMNS} from payment_links
                     where status = 'active' and expires_at <= ?1 order by expires_at limit ?2"
                ))?;
                statement
                    .query_map(
                        params![micros(now), i64::try_from(limit).unwrap_or(i64::MAX)],
                        link_from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            };
            let mut expired = 0;
            for transition in due.iter().filter_map(|link| link.expire_if_due(now)) {
                if write_transition(c, &transition)? == Applied::Yes {
                    expired += 1;
                }
            }
            Ok(expired)
        })
        .await
    }

    async fn claim_idempotency_key(
        &self,
        scope: &Scope,
        key: &str,
        fingerprint: &str,
        window: IdempotencyWindow,
    ) -> StoreResult<IdempotencyClaim> {
        let (scope, key, fingerprint) = (scope.clone(), key.to_owned(), fingerprint.to_owned());
        self.write(move |c| {
            c.execute(
                "delete from idempotency_keys where account_id = ?1 and livemode = ?2 and key = ?3 and created_at < ?4",
                params![scope.account_id, scope.livemode, key, micros(window.expired_before)],
            )?;
            let inserted = c.execute(
                "insert into idempotency_keys (account_id, livemode, key, fingerprint, created_at, claimed_at)
                 values (?1, ?2, ?3, ?4, ?5, ?5) on conflict do nothing",
                params![scope.account_id, scope.livemode, key, fingerprint, micros(window.now)],
            )?;
            if inserted == 1 {
                return Ok(IdempotencyClaim::Claimed { committed_event: None });
            }
            let (stored_fingerprint, status, headers, body, claimed_at, committed_event) = c.query_row(
                "select fingerprint, response_status, response_headers, response_body, claimed_at, committed_event
                 from idempotency_keys where account_id = ?1 and livemode = ?2 and key = ?3",
                params![scope.account_id, scope.livemode, key],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Option<u16>>(1)?,
                        row.get::<_, Option<String>>(2)?,
                        row.get::<_, Option<Vec<u8>>>(3)?,
                        row.get::<_, Option<i64>>(4)?,
                        row.get::<_, Option<String>>(5)?,
                    ))
                },
            )?;
            let abandoned = status.is_none()
                && claimed_at.is_none_or(|at| at < micros(window.abandoned_before));
            if abandoned && (stored_fingerprint == fingerprint || committed_event.is_none()) {
                // Taken over: the same request carries on (recalling a
                // committed change), or a new one replaces a claim that
                // changed nothing.
                c.execute(
                    "update idempotency_keys set fingerprint = ?4, claimed_at = ?5
                     where account_id = ?1 and livemode = ?2 and key = ?3",
                    params![scope.account_id, scope.livemode, key, fingerprint, micros(window.now)],
                )?;
                return Ok(IdempotencyClaim::Claimed { committed_event });
            }
            let response = match status {
                Some(status) => Some(StoredResponse {
                    status,
                    headers: json_column(headers)?.unwrap_or_default(),
                    body: body.unwrap_or_default(),
                }),
                None => None,
            };
            Ok(IdempotencyClaim::Existing { fingerprint: stored_fingerprint, response })
        })
        .await
    }

    async fn complete_idempotency_key(
        &self,
        scope: &Scope,
        key: &str,
        response: StoredResponse,
    ) -> StoreResult<()> {
        let (scope, key) = (scope.clone(), key.to_owned());
        self.write(move |c| {
            c.execute(
                "update idempotency_keys set response_status = ?1, response_headers = ?2, response_body = ?3
                 where account_id = ?4 and livemode = ?5 and key = ?6",
                params![
                    response.status,
                    serde_json::to_string(&response.headers)?,
                    response.body,
                    scope.account_id,
                    scope.livemode,
                    key
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn release_idempotency_key(&self, scope: &Scope, key: &str) -> StoreResult<()> {
        let (scope, key) = (scope.clone(), key.to_owned());
        self.write(move |c| {
            c.execute(
                "delete from idempotency_keys where account_id = ?1 and livemode = ?2 and key = ?3
                   and response_status is null and committed_event is null",
                params![scope.account_id, scope.livemode, key],
            )?;
            // A committed change keeps its key; the next retry recalls it.
            c.execute(
                "update idempotency_keys set claimed_at = null where account_id = ?1 and livemode = ?2 and key = ?3
                   and response_status is null",
                params![scope.account_id, scope.livemode, key],
            )?;
            Ok(())
        })
        .await
    }

    async fn abandon_idempotency_claims(&self) -> StoreResult<u64> {
        self.write(|c| {
            Ok(c.execute(
                "update idempotency_keys set claimed_at = null where response_status is null",
                [],
            )? as u64)
        })
        .await
    }

    async fn link_attempts(&self, link_id: &str) -> StoreResult<Vec<PaymentAttempt>> {
        let link_id = link_id.to_owned();
        self.read(move |c| {
            let mut statement = c.prepare_cached(&format!(
                "select {ATTEMPT_COLUMNS} from payment_attempts where link_id = ?1 order by created_at, id"
            ))?;
            let attempts = statement
                .query_map([link_id], attempt_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(attempts)
        })
        .await
    }

    async fn pending_attempts(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<PaymentAttempt>> {
        self.read(move |c| {
            let mut statement = c.prepare_cached(&format!(
                "select {ATTEMPT_COLUMNS} from payment_attempts
                 where state = 'pending' and created_at < ?1 order by created_at limit ?2"
            ))?;
            let attempts = statement
                .query_map(
                    params![micros(before), i64::try_from(limit).unwrap_or(i64::MAX)],
                    attempt_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(attempts)
        })
        .await
    }

    async fn record_test_outcome(
        &self,
        key: &str,
        outcome: serde_json::Value,
        now: Timestamp,
    ) -> StoreResult<serde_json::Value> {
        let key = key.to_owned();
        let outcome = outcome.to_string();
        self.write(move |c| {
            c.execute(
                "insert into test_processor_charges (attempt_id, outcome, created_at) values (?1, ?2, ?3)
                 on conflict do nothing",
                params![key, outcome, micros(now)],
            )?;
            let recorded: String = c.query_row(
                "select outcome from test_processor_charges where attempt_id = ?1",
                [key],
                |row| row.get(0),
            )?;
            Ok(serde_json::from_str(&recorded)?)
        })
        .await
    }

    async fn set_attempt_reference(&self, attempt_id: &str, reference: &str) -> StoreResult<bool> {
        let (attempt_id, reference) = (attempt_id.to_owned(), reference.to_owned());
        self.write(move |c| {
            Ok(c.execute(
                "update payment_attempts set processor_reference = ?2 where id = ?1 and state = 'pending'",
                params![attempt_id, reference],
            )? == 1)
        })
        .await
    }

    async fn get_attempt(&self, attempt_id: &str) -> StoreResult<Option<PaymentAttempt>> {
        let attempt_id = attempt_id.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("select {ATTEMPT_COLUMNS} from payment_attempts where id = ?1"),
                [attempt_id],
                attempt_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn link_refunds(&self, link_id: &str) -> StoreResult<Vec<Refund>> {
        let link_id = link_id.to_owned();
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "select body from refunds where link_id = ?1 order by created_at, id",
            )?;
            let refunds = statement
                .query_map([link_id], refund_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(refunds)
        })
        .await
    }

    async fn pending_refunds(&self, before: Timestamp, limit: usize) -> StoreResult<Vec<Refund>> {
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "select body from refunds where state = ?1 and created_at < ?2
                 order by created_at limit ?3",
            )?;
            let refunds = statement
                .query_map(
                    params![
                        RefundState::Pending.as_str(),
                        micros(before),
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    refund_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(refunds)
        })
        .await
    }

    async fn processor_account(
        &self,
        account_id: &str,
        livemode: bool,
    ) -> StoreResult<Option<ProcessorAccount>> {
        let account_id = account_id.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "select processor, sealed_config, updated_at from processor_accounts
                 where account_id = ?1 and livemode = ?2",
                params![account_id, livemode],
                |row| {
                    Ok(ProcessorAccount {
                        processor: row.get(0)?,
                        sealed_config: row.get(1)?,
                        updated_at: from_micros(row.get(2)?)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn set_processor_account(
        &self,
        account_id: &str,
        livemode: bool,
        processor: Option<ProcessorAccount>,
    ) -> StoreResult<()> {
        let account_id = account_id.to_owned();
        self.write(move |c| {
            match processor {
                Some(p) => c.execute(
                    "insert into processor_accounts (account_id, livemode, processor, sealed_config, updated_at)
                     values (?1, ?2, ?3, ?4, ?5)
                     on conflict (account_id, livemode) do update set processor = excluded.processor,
                         sealed_config = excluded.sealed_config, updated_at = excluded.updated_at",
                    params![account_id, livemode, p.processor, p.sealed_config, micros(p.updated_at)],
                )?,
                None => c.execute(
                    "delete from processor_accounts where account_id = ?1 and livemode = ?2",
                    params![account_id, livemode],
                )?,
            };
            Ok(())
        })
        .await
    }

    async fn record_processor_event(
        &self,
        processor: &str,
        event_id: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (processor, event_id) = (processor.to_owned(), event_id.to_owned());
        self.write(move |c| {
            Ok(c.execute(
                "insert into processor_events (processor, event_id, received_at) values (?1, ?2, ?3)
                 on conflict do nothing",
                params![processor, event_id, micros(now)],
            )? == 1)
        })
        .await
    }

    async fn processor_event_seen(&self, processor: &str, event_id: &str) -> StoreResult<bool> {
        let (processor, event_id) = (processor.to_owned(), event_id.to_owned());
        self.read(move |c| {
            Ok(c.query_row(
                "select exists (select 1 from processor_events where processor = ?1 and event_id = ?2)",
                params![processor, event_id],
                |row| row.get(0),
            )?)
        })
        .await
    }

    async fn account_by_name(&self, name: &str) -> StoreResult<Option<Account>> {
        let name = name.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "select id, name, suspended, created_at from accounts where name = ?1",
                [name],
                account_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn server_secret(&self, name: &str, candidate: &str) -> StoreResult<String> {
        let (name, candidate) = (name.to_owned(), candidate.to_owned());
        self.write(move |c| {
            c.execute(
                "insert into server_secrets (name, value) values (?1, ?2) on conflict do nothing",
                params![name, candidate],
            )?;
            Ok(c.query_row(
                "select value from server_secrets where name = ?1",
                [name],
                |row| row.get(0),
            )?)
        })
        .await
    }

    fn single_process(&self) -> bool {
        true
    }

    async fn purge_idempotency_keys(&self, before: Timestamp) -> StoreResult<u64> {
        self.write(move |c| {
            Ok(c.execute(
                "delete from idempotency_keys where created_at < ?1",
                [micros(before)],
            )? as u64)
        })
        .await
    }

    async fn insert_webhook_endpoint(&self, endpoint: WebhookEndpoint) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                &format!(
                    "insert into webhook_endpoints ({ENDPOINT_COLUMNS})
                     values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ),
                params![
                    endpoint.id,
                    endpoint.account_id,
                    endpoint.livemode,
                    endpoint.url,
                    endpoint.description,
                    event_types_json(&endpoint)?,
                    endpoint.format.as_str(),
                    endpoint.enabled,
                    endpoint.disabled_reason,
                    endpoint.secret,
                    serde_json::to_string(&endpoint.retired_secrets)?,
                    micros(endpoint.created_at),
                    micros(endpoint.updated_at),
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_webhook_endpoint(
        &self,
        scope: &Scope,
        id: &str,
    ) -> StoreResult<Option<WebhookEndpoint>> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.read(move |c| {
            Ok(c.query_row(
                &format!(
                    "select {ENDPOINT_COLUMNS} from webhook_endpoints
                     where id = ?1 and account_id = ?2 and livemode = ?3 and deleted_at is null"
                ),
                params![id, scope.account_id, scope.livemode],
                endpoint_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn list_webhook_endpoints(&self, scope: &Scope) -> StoreResult<Vec<WebhookEndpoint>> {
        let scope = scope.clone();
        self.read(move |c| {
            let mut statement = c.prepare_cached(&format!(
                "select {ENDPOINT_COLUMNS} from webhook_endpoints
                 where account_id = ?1 and livemode = ?2 and deleted_at is null
                 order by created_at, id"
            ))?;
            let endpoints = statement
                .query_map(params![scope.account_id, scope.livemode], endpoint_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(endpoints)
        })
        .await
    }

    async fn all_webhook_endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        self.read(move |c| {
            let mut statement = c.prepare(&format!(
                "select {ENDPOINT_COLUMNS} from webhook_endpoints where deleted_at is null order by created_at, id"
            ))?;
            let endpoints = statement
                .query_map([], endpoint_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(endpoints)
        })
        .await
    }

    async fn update_webhook_endpoint(&self, endpoint: WebhookEndpoint) -> StoreResult<bool> {
        self.write(move |c| {
            Ok(c.execute(
                "update webhook_endpoints set url = ?1, description = ?2, events = ?3, format = ?4,
                    enabled = ?5, disabled_reason = ?6, secret = ?7, retired_secrets = ?8,
                    updated_at = ?9
                 where id = ?10 and deleted_at is null",
                params![
                    endpoint.url,
                    endpoint.description,
                    event_types_json(&endpoint)?,
                    endpoint.format.as_str(),
                    endpoint.enabled,
                    endpoint.disabled_reason,
                    endpoint.secret,
                    serde_json::to_string(&endpoint.retired_secrets)?,
                    micros(endpoint.updated_at),
                    endpoint.id,
                ],
            )? == 1)
        })
        .await
    }

    async fn delete_webhook_endpoint(
        &self,
        scope: &Scope,
        id: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.write(move |c| {
            let deleted = c.execute(
                "update webhook_endpoints set deleted_at = ?1, enabled = 0, updated_at = ?1
                 where id = ?2 and account_id = ?3 and livemode = ?4 and deleted_at is null",
                params![micros(now), id, scope.account_id, scope.livemode],
            )? == 1;
            if deleted {
                c.execute(
                    "update webhook_deliveries set status = 'failed', next_attempt_at = null, updated_at = ?1
                     where endpoint_id = ?2 and status = 'pending'",
                    params![micros(now), id],
                )?;
            }
            Ok(deleted)
        })
        .await
    }

    async fn list_events(
        &self,
        scope: &Scope,
        filter: &EventFilter,
        limit: usize,
        starting_after: Option<&str>,
    ) -> StoreResult<Vec<LinkEvent>> {
        let mut sql =
            format!("select {EVENT_COLUMNS} from events where account_id = ?1 and livemode = ?2");
        let mut args = vec![
            Value::Text(scope.account_id.clone()),
            Value::Integer(i64::from(scope.livemode)),
        ];
        if let Some(event_type) = filter.event_type {
            args.push(Value::Text(event_type.as_str().into()));
            sql.push_str(&format!(" and type = ?{}", args.len()));
        }
        if let Some(link_id) = &filter.link_id {
            args.push(Value::Text(link_id.clone()));
            sql.push_str(&format!(" and link_id = ?{}", args.len()));
        }
        if let Some(after) = starting_after {
            args.push(Value::Text(after.to_owned()));
            sql.push_str(&format!(
                " and seq < (select seq from events where id = ?{})",
                args.len()
            ));
        }
        args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" order by seq desc limit ?{}", args.len()));
        self.read(move |c| {
            let mut statement = c.prepare_cached(&sql)?;
            let events = statement
                .query_map(params_from_iter(args), event_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(events)
        })
        .await
    }

    async fn get_event(&self, scope: &Scope, id: &str) -> StoreResult<Option<LinkEvent>> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.read(move |c| {
            Ok(c.query_row(
                &format!(
                    "select {EVENT_COLUMNS} from events where id = ?1 and account_id = ?2 and livemode = ?3"
                ),
                params![id, scope.account_id, scope.livemode],
                event_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn event_deliveries(&self, event_id: &str) -> StoreResult<Vec<Delivery>> {
        let event_id = event_id.to_owned();
        self.read(move |c| {
            // One snapshot for both queries: attempts match their deliveries.
            let snapshot = c.unchecked_transaction()?;
            let c = &*snapshot;
            let mut deliveries = c
                .prepare_cached(
                    "select d.event_id, d.endpoint_id, d.status, d.next_attempt_at, d.created_at
                     from webhook_deliveries d join webhook_endpoints w on w.id = d.endpoint_id
                     where d.event_id = ?1 order by w.created_at, w.id",
                )?
                .query_map([&event_id], |row| {
                    let status: String = row.get(2)?;
                    Ok(Delivery {
                        event_id: row.get(0)?,
                        endpoint_id: row.get(1)?,
                        status: DeliveryStatus::parse(&status)
                            .ok_or_else(|| conversion_error(format!("unknown status {status}")))?,
                        next_attempt_at: opt_from_micros(row.get(3)?)?,
                        attempts: Vec::new(),
                        created_at: from_micros(row.get(4)?)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut attempts = c.prepare_cached(
                "select endpoint_id, attempted_at, status_code, latency_ms, error
                 from webhook_attempts where event_id = ?1 order by id",
            )?;
            let rows = attempts.query_map([&event_id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    Attempt {
                        attempted_at: from_micros(row.get(1)?)?,
                        status_code: row.get(2)?,
                        latency_ms: row.get(3)?,
                        error: row.get(4)?,
                    },
                ))
            })?;
            for row in rows {
                let (endpoint_id, attempt) = row?;
                if let Some(delivery) = deliveries.iter_mut().find(|d| d.endpoint_id == endpoint_id)
                {
                    delivery.attempts.push(attempt);
                }
            }
            drop(attempts);
            snapshot.commit()?;
            Ok(deliveries)
        })
        .await
    }

    async fn schedule_redelivery(
        &self,
        event_id: &str,
        endpoint_ids: &[String],
        now: Timestamp,
    ) -> StoreResult<()> {
        let (event_id, endpoint_ids) = (event_id.to_owned(), endpoint_ids.to_vec());
        self.write(move |c| {
            let mut statement = c.prepare_cached(
                "insert into webhook_deliveries (event_id, endpoint_id, status, attempt_count, next_attempt_at, created_at, updated_at)
                 values (?1, ?2, 'pending', 0, ?3, ?3, ?3)
                 on conflict (event_id, endpoint_id) do update set
                    status = 'pending', attempt_count = 0, next_attempt_at = ?3, updated_at = ?3",
            )?;
            for endpoint_id in endpoint_ids {
                statement.execute(params![event_id, endpoint_id, micros(now)])?;
            }
            Ok(())
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        // One write job: the single writer makes select-then-lease atomic.
        self.write(move |c| {
            let due: Vec<(String, String, u32)> = c
                .prepare_cached(
                    "select d.event_id, d.endpoint_id, d.attempt_count
                     from webhook_deliveries d join webhook_endpoints w on w.id = d.endpoint_id
                     where d.status = 'pending' and d.next_attempt_at <= ?1
                       and (d.lease_expires_at is null or d.lease_expires_at <= ?1)
                       and w.enabled = 1 and w.deleted_at is null
                     order by d.next_attempt_at limit ?2",
                )?
                .query_map(
                    params![micros(now), i64::try_from(limit).unwrap_or(i64::MAX)],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut claimed = Vec::with_capacity(due.len());
            for (event_id, endpoint_id, attempts_made) in due {
                c.prepare_cached(
                    "update webhook_deliveries set lease_expires_at = ?1
                     where event_id = ?2 and endpoint_id = ?3",
                )?
                .execute(params![micros(now + LEASE), event_id, endpoint_id])?;
                let event = c
                    .prepare_cached(&format!("select {EVENT_COLUMNS} from events where id = ?1"))?
                    .query_row([&event_id], event_from_row)?;
                let endpoint = c
                    .prepare_cached(&format!(
                        "select {ENDPOINT_COLUMNS} from webhook_endpoints where id = ?1"
                    ))?
                    .query_row([&endpoint_id], endpoint_from_row)?;
                claimed.push(ClaimedDelivery {
                    event,
                    endpoint,
                    attempts_made,
                });
            }
            Ok(claimed)
        })
        .await
    }

    async fn record_attempt(
        &self,
        event_id: &str,
        endpoint_id: &str,
        attempt: Attempt,
        next: NextStep,
    ) -> StoreResult<()> {
        let (event_id, endpoint_id) = (event_id.to_owned(), endpoint_id.to_owned());
        self.write(move |c| {
            let now = micros(attempt.attempted_at);
            c.prepare_cached(
                "insert into webhook_attempts (event_id, endpoint_id, attempted_at, status_code, latency_ms, error)
                 values (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                event_id,
                endpoint_id,
                now,
                attempt.status_code,
                attempt.latency_ms,
                attempt.error
            ])?;
            let (status, next_attempt_at) = match next {
                NextStep::Succeeded => (DeliveryStatus::Succeeded, None),
                NextStep::RetryAt(at) => (DeliveryStatus::Pending, Some(micros(at))),
                NextStep::Failed | NextStep::EndpointGone => (DeliveryStatus::Failed, None),
            };
            c.prepare_cached(
                "update webhook_deliveries set status = ?1, attempt_count = attempt_count + 1,
                    next_attempt_at = ?2, lease_expires_at = null, updated_at = ?3
                 where event_id = ?4 and endpoint_id = ?5 and status = 'pending'",
            )?
            .execute(params![
                status.as_str(),
                next_attempt_at,
                now,
                event_id,
                endpoint_id
            ])?;
            if next == NextStep::EndpointGone {
                c.execute(
                    "update webhook_endpoints set enabled = 0, disabled_reason = ?1, updated_at = ?2
                     where id = ?3",
                    params![GONE_REASON, now, endpoint_id],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn next_delivery_due(&self) -> StoreResult<Option<Timestamp>> {
        self.read(|c| {
            let due: Option<i64> = c.query_row(
                "select min(max(d.next_attempt_at, coalesce(d.lease_expires_at, 0)))
                 from webhook_deliveries d join webhook_endpoints w on w.id = d.endpoint_id
                 where d.status = 'pending' and w.enabled = 1 and w.deleted_at is null",
                [],
                |row| row.get(0),
            )?;
            Ok(opt_from_micros(due)?)
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| {
            Ok(c.query_row("select 1", [], |row| row.get::<_, i64>(0))
                .map(|_| ())?)
        })
        .await?;
        self.ping_writer().await
    }
}

/// The conditional update of a transition plus its event row; the caller's
/// transaction makes the two one.
fn write_transition(c: &Connection, transition: &Transition) -> StoreResult<Applied> {
    // Its own savepoint: a stale attempt found after the link's update
    // must undo that update, not leave it in the caller's transaction.
    c.execute_batch("savepoint transition")?;
    let applied = write_transition_rows(c, transition);
    match applied {
        Ok(Applied::Yes) => c.execute_batch("release transition")?,
        _ => c.execute_batch("rollback to transition; release transition")?,
    }
    applied
}

fn write_transition_rows(c: &Connection, transition: &Transition) -> StoreResult<Applied> {
    let link = &transition.link;
    let changed = c.execute(
        "update payment_links set status = ?1, description = ?2, metadata = ?3, expires_at = ?4,
            updated_at = ?5, cancelled_at = ?6, cancellation_reason = ?7, paid_at = ?8,
            payment_id = ?9, version = ?10, amount_refunded = ?13
         where id = ?11 and version = ?12",
        params![
            link.status.as_str(),
            link.description,
            serde_json::to_string(&link.metadata)?,
            micros(link.expires_at),
            micros(link.updated_at),
            link.cancelled_at.map(micros),
            link.cancellation_reason,
            link.paid_at.map(micros),
            link.payment_id,
            link.version,
            link.id,
            transition.expected_version,
            link.amount_refunded,
        ],
    )?;
    if changed == 0 {
        return Ok(Applied::StaleVersion);
    }
    if let Some(attempt) = &transition.attempt
        && write_attempt(c, attempt)? == 0
    {
        return Ok(Applied::StaleVersion);
    }
    if let Some(refund) = &transition.refund
        && write_refund(c, refund)? == 0
    {
        return Ok(Applied::StaleVersion);
    }
    insert_event(c, &transition.event)?;
    Ok(Applied::Yes)
}

/// Inserts a new pending attempt, or settles a stored one that is still
/// pending; returns the rows written (0: it was settled already).
fn write_attempt(c: &Connection, attempt: &PaymentAttempt) -> StoreResult<usize> {
    Ok(c.prepare_cached(&format!(
        "insert into payment_attempts ({ATTEMPT_COLUMNS}) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         on conflict (id) do update set state = excluded.state, payment_id = excluded.payment_id,
             failure_message = excluded.failure_message, updated_at = excluded.updated_at,
             processor_reference = coalesce(excluded.processor_reference, payment_attempts.processor_reference)
         where payment_attempts.state = 'pending'
            or (payment_attempts.state = 'failed' and excluded.state = 'succeeded')"
    ))?
    .execute(params![
        attempt.id,
        attempt.link_id,
        attempt.account_id,
        attempt.livemode,
        attempt.amount,
        attempt.currency.code(),
        attempt.processor,
        attempt.state.as_str(),
        attempt.payment_id,
        attempt.failure_message,
        attempt.card_brand,
        attempt.card_last4,
        micros(attempt.created_at),
        micros(attempt.updated_at),
        attempt.processor_reference,
    ])?)
}

/// Inserts a new pending refund, or settles a stored one that is still
/// pending; returns the rows written (0: it was settled already).
fn write_refund(c: &Connection, refund: &Refund) -> StoreResult<usize> {
    Ok(c.prepare_cached(
        "insert into refunds (id, link_id, state, created_at, body) values (?1, ?2, ?3, ?4, ?5)
         on conflict (id) do update set state = excluded.state, body = excluded.body
         where refunds.state = 'pending'",
    )?
    .execute(params![
        refund.id,
        refund.link_id,
        refund.state.as_str(),
        micros(refund.created_at),
        serde_json::to_string(refund)?,
    ])?)
}

fn refund_from_row(row: &Row<'_>) -> rusqlite::Result<Refund> {
    json_column(row.get("body")?)?.ok_or_else(|| conversion_error("missing refund".into()))
}

const ATTEMPT_COLUMNS: &str = "id, link_id, account_id, livemode, amount, currency, processor, state, \
     payment_id, failure_message, card_brand, card_last4, created_at, updated_at, processor_reference";

fn attempt_from_row(row: &Row<'_>) -> rusqlite::Result<PaymentAttempt> {
    let currency: String = row.get("currency")?;
    let state: String = row.get("state")?;
    Ok(PaymentAttempt {
        id: row.get("id")?,
        link_id: row.get("link_id")?,
        account_id: row.get("account_id")?,
        livemode: row.get("livemode")?,
        amount: row.get("amount")?,
        currency: crate::domain::Currency::parse(&currency).map_err(conversion_error)?,
        processor: row.get("processor")?,
        state: AttemptState::parse(&state)
            .ok_or_else(|| conversion_error(format!("unknown attempt state {state}")))?,
        payment_id: row.get("payment_id")?,
        processor_reference: row.get("processor_reference")?,
        failure_message: row.get("failure_message")?,
        card_brand: row.get("card_brand")?,
        card_last4: row.get("card_last4")?,
        created_at: from_micros(row.get("created_at")?)?,
        updated_at: from_micros(row.get("updated_at")?)?,
    })
}

/// Marks the idempotency key a change was made under with its event, in
/// the change's transaction.
fn mark_idempotency_key(
    c: &Connection,
    mark: Option<&IdempotencyMark>,
    event_id: &str,
) -> StoreResult<()> {
    if let Some(mark) = mark {
        c.prepare_cached(
            "update idempotency_keys set committed_event = ?4
             where account_id = ?1 and livemode = ?2 and key = ?3 and response_status is null",
        )?
        .execute(params![
            mark.scope.account_id,
            mark.scope.livemode,
            mark.key,
            event_id
        ])?;
    }
    Ok(())
}

fn account_from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        name: row.get(1)?,
        suspended: row.get(2)?,
        created_at: from_micros(row.get(3)?)?,
    })
}

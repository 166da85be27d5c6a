//! The connection engine: opening, migrations, and how queries reach the database.

use std::path::Path;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::rows::micros;
use crate::store::{StoreError, StoreResult};

pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_idempotency.sql")),
    (3, include_str!("migrations/0003_webhooks.sql")),
    (4, include_str!("migrations/0004_durability.sql")),
    (5, include_str!("migrations/0005_retired_secrets.sql")),
    (
        6,
        include_str!("migrations/0006_refunds_and_processors.sql"),
    ),
    (7, include_str!("migrations/0007_customer_message.sql")),
    (8, include_str!("migrations/0008_key_lifecycle.sql")),
    (9, include_str!("migrations/0009_branding.sql")),
    (10, include_str!("migrations/0010_delivery_retention.sql")),
];
pub(super) const READERS: usize = 4;
/// Most operations one commit may carry.
pub(super) const MAX_BATCH: usize = 512;

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
pub(super) type WriteJob = Box<dyn FnOnce(&Connection) -> JobOutcome + Send>;

pub(super) struct JobOutcome {
    succeeded: bool,
    answer: Box<dyn FnOnce(Option<StoreError>) + Send>,
}

pub struct SqliteStore {
    pub(super) writer: mpsc::Sender<WriteJob>,
    pub(super) readers: Arc<ReaderPool>,
}

pub(super) struct ReaderPool {
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

    pub(super) async fn write<T: Send + 'static>(
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

    pub(super) async fn read<T: Send + 'static>(
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
    pub(super) async fn ping_writer(&self) -> StoreResult<()> {
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
pub(super) struct ReaderLease {
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

pub(super) fn open_writer(path: &str) -> anyhow::Result<Connection> {
    // The database file is created; its directory never is: a mistyped
    // path must fail, not start an empty shop somewhere unexpected.
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        anyhow::bail!(
            "the directory `{}` of the SQLite database does not exist; create it first, or fix the path",
            parent.display()
        );
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

pub(super) fn open_reader(path: &str) -> anyhow::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    connection.execute_batch("pragma busy_timeout = 5000; pragma query_only = on;")?;
    Ok(connection)
}

pub(super) fn migrate(connection: &mut Connection) -> anyhow::Result<()> {
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

pub(super) fn run_writer(connection: Connection, mut jobs: mpsc::Receiver<WriteJob>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        crate::telemetry::store_write_batch(batch.len(), jobs.len());
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

/// A consistent copy of the database at `path` into `destination` (which
/// must not exist), taken with SQLite's online backup while writers go on:
/// a page changed during the copy restarts it from the changed page, so
/// the copy is one committed state. Pages go over in steps with a pause
/// between them, so a busy writer is never held for long.
pub fn backup(path: &str, destination: &Path) -> anyhow::Result<()> {
    if !Path::new(path).is_file() {
        anyhow::bail!("no SQLite database at `{path}`");
    }
    if destination.exists() {
        anyhow::bail!(
            "`{}` exists already; a backup is written to a new file",
            destination.display()
        );
    }
    // Read-write but never created: a WAL database is read through its
    // shared-memory index, which a read-only connection may not set up.
    let source = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    source.busy_timeout(std::time::Duration::from_secs(5))?;
    let mut copy = Connection::open(destination)?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut copy)?;
        backup.run_to_completion(256, std::time::Duration::from_millis(5), None)?;
    }
    // The copy stands alone: no WAL beside it, its pages checked.
    copy.execute_batch("pragma journal_mode = delete;")?;
    let verdict: String = copy.query_row("pragma integrity_check", [], |row| row.get(0))?;
    if verdict != "ok" {
        anyhow::bail!("the copy failed its integrity check: {verdict}");
    }
    Ok(())
}

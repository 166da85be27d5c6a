//! The connection engine: opening, migrations, and how queries reach the database.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::rows::{micros, run_cached};
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
    (11, include_str!("migrations/0011_list_indexes.sql")),
    (12, include_str!("migrations/0012_ascending_keys.sql")),
];
pub(super) const READERS: usize = 4;
/// Prepared statements each connection keeps (every statement on a
/// request's path is prepared once per connection, not per request).
const STATEMENT_CACHE: usize = 64;
/// Most operations one commit may carry.
pub(super) const MAX_BATCH: usize = 512;
/// How often the checkpointer copies committed WAL pages back into the
/// database file, when something was committed since its last look.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL frames (pages) past which the writer checkpoints the WAL's tail
/// itself, so the WAL starts over (16 MiB of 4 KiB pages).
const WAL_RESTART_FRAMES: u32 = 4096;

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
        let commits = Arc::new(AtomicU64::new(0));
        let checkpointer_commits = Arc::downgrade(&commits);
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
                run_writer(connection, jobs, &commits);
            })?;
        ready_rx.await??;
        let checkpointer = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || open_checkpointer(&path)).await??
        };
        std::thread::Builder::new()
            .name("paylink-sqlite-checkpointer".into())
            .spawn(move || run_checkpointer(checkpointer, checkpointer_commits))?;

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

    /// A read of one row by a key (one index descent, a few microseconds
    /// when its pages are cached), run right here on the calling task's
    /// thread: handing it to a blocking thread and back would cost more
    /// than the read. Reads of unbounded size (lists, counts) go through
    /// [`Self::read`] instead, off the async workers.
    ///
    /// The query runs with no `.await` in it, so a caller that gives up
    /// cannot drop it halfway; the lease returns the connection either way.
    pub(super) async fn read_row<T>(
        &self,
        query: impl FnOnce(&Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let permit = Arc::clone(&self.readers.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("reader pool closed".into()))?;
        let lease = ReaderLease::take(Arc::clone(&self.readers), permit)?;
        match &lease.connection {
            Some(connection) => query(connection),
            None => Err(StoreError::Internal(
                "reader lease without a connection".into(),
            )),
        }
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
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // WAL lets readers run beside the writer; FULL syncs the WAL on every
    // commit so an acknowledged write survives power loss.
    connection.execute_batch(
        "pragma journal_mode = wal;
         pragma synchronous = full;
         pragma foreign_keys = on;
         pragma busy_timeout = 5000;
         pragma temp_store = memory;",
    )?;
    migrate(&mut connection)?;
    // The checkpointer thread copies the WAL back (see `run_checkpointer`),
    // not the writer's commit: SQLite's default, a checkpoint inside the
    // commit of whichever batch crossed 1000 pages, copies all of them
    // and fsyncs the database file while every queued request waits.
    // But SQLite starts the WAL over only when a write begins after a
    // checkpoint has copied all of it, which the checkpointer, copying
    // while the writer commits, never sees under steady writes: the WAL
    // then grows without end (a gigabyte in twenty seconds of creates,
    // every frame appended to an ever longer file; tests/sqlite_wal.rs).
    // So the writer still checkpoints once the WAL passes
    // WAL_RESTART_FRAMES: by then the checkpointer has copied all but its
    // last 100 ms, the writer copies that tail, and its next transaction
    // starts the WAL over.
    connection.execute_batch(&format!(
        "pragma wal_autocheckpoint = {WAL_RESTART_FRAMES};"
    ))?;
    Ok(connection)
}

/// The connection that checkpoints; it never writes rows.
fn open_checkpointer(path: &str) -> anyhow::Result<Connection> {
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    connection.execute_batch("pragma synchronous = full; pragma busy_timeout = 5000;")?;
    Ok(connection)
}

/// Every [`CHECKPOINT_EVERY`], if the writer committed since the last
/// look, a passive checkpoint: it copies the committed WAL pages no reader
/// still needs into the database file and syncs it, beside the writer and
/// the readers, never waiting for either. What it has copied, the writer's
/// own checkpoint at [`WAL_RESTART_FRAMES`] need not. Ends when the writer
/// has (its commit counter is gone).
fn run_checkpointer(connection: Connection, commits: Weak<AtomicU64>) {
    let mut checkpointed = 0;
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let Some(commits) = commits.upgrade() else {
            return;
        };
        let committed = commits.load(Ordering::Relaxed);
        drop(commits);
        if committed == checkpointed {
            continue;
        }
        match connection.query_row("pragma wal_checkpoint(passive)", [], |_| Ok(())) {
            Ok(()) => checkpointed = committed,
            Err(error) => tracing::warn!(%error, "WAL checkpoint failed; retrying"),
        }
    }
}

pub(super) fn open_reader(path: &str) -> anyhow::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
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

/// Runs queued writes in batches, one transaction (one WAL fsync) per
/// batch, until every sender is gone; counts its commits in `commits` for
/// the checkpointer.
pub(super) fn run_writer(
    connection: Connection,
    mut jobs: mpsc::Receiver<WriteJob>,
    commits: &AtomicU64,
) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        crate::telemetry::store_write_batch(batch.len(), jobs.len());
        if let Err(error) = run_cached(&connection, "begin immediate") {
            // Dropping the jobs unanswered tells each caller the write did not happen.
            tracing::error!(%error, "could not begin a write transaction");
            drop(batch);
            continue;
        }
        let mut answers = Vec::with_capacity(batch.len());
        let mut jobs_run = batch.into_iter();
        // The first job runs without a savepoint (opening and releasing
        // one journals every page it touches, 6 % of a lone create's
        // instructions): until it is done the transaction holds nothing
        // else, so if it fails the transaction is rolled back and begun
        // again.
        if let Some(first) = jobs_run.next() {
            let outcome = first(&connection);
            let restarted = if outcome.succeeded {
                Ok(())
            } else {
                // SQLite may have rolled back already (some errors do).
                let _ = run_cached(&connection, "rollback");
                run_cached(&connection, "begin immediate")
            };
            answers.push(outcome.answer);
            if let Err(error) = restarted {
                // The failed job is answered with its own error; the rest
                // of the batch is dropped unanswered (not written).
                tracing::error!(%error, "could not begin a write transaction again");
                let _ = connection.execute_batch("rollback");
                answers.into_iter().for_each(|answer| answer(None));
                continue;
            }
        }
        for job in jobs_run {
            // Each later job gets its own savepoint so one failing
            // operation leaves the others of the batch intact.
            if let Err(error) = run_cached(&connection, "savepoint job") {
                tracing::error!(%error, "could not open a savepoint");
                continue;
            }
            let outcome = job(&connection);
            let closed = if outcome.succeeded {
                run_cached(&connection, "release job")
            } else {
                run_cached(&connection, "rollback to job")
                    .and_then(|()| run_cached(&connection, "release job"))
            };
            if let Err(error) = closed {
                tracing::error!(%error, "could not close a savepoint");
            }
            answers.push(outcome.answer);
        }
        match run_cached(&connection, "commit") {
            Ok(()) => {
                commits.fetch_add(1, Ordering::Relaxed);
                answers.into_iter().for_each(|answer| answer(None));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn insert_link(c: &Connection, id: &str, created_at: i64, metadata: &str, line_items: &str) {
        c.execute(
            "insert into payment_links (id, account_id, livemode, slug, amount, currency, payment_type,
                 line_items, metadata, status, expires_at, created_at, updated_at, version)
             values (?1, 'acct_1', 0, ?1, 100, 'USD', 'one_time', ?2, ?3, 'active', 9, ?4, ?4, 1)",
            params![id, line_items, metadata, created_at],
        )
        .unwrap();
    }

    fn pairs(c: &Connection) -> Vec<(String, String, String)> {
        c.prepare(
            "select key, value, link_id from link_metadata
             union all select 'product', product_id, link_id from link_products
             order by 1, 2, 3",
        )
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    /// A job for the writer that inserts `value` into `t` and then fails
    /// if `fails`; the receiver gets its answer.
    fn job(value: i64, fails: bool) -> (WriteJob, oneshot::Receiver<StoreResult<()>>) {
        let (reply, answer) = oneshot::channel();
        let job: WriteJob = Box::new(move |c| {
            let result = c
                .execute("insert into t (v) values (?1)", [value])
                .map_err(StoreError::from)
                .and_then(|_| match fails {
                    true => Err(StoreError::Internal(format!("job {value} fails"))),
                    false => Ok(()),
                });
            JobOutcome {
                succeeded: result.is_ok(),
                answer: Box::new(move |commit_error| {
                    let _ = reply.send(commit_error.map_or(result, Err));
                }),
            }
        });
        (job, answer)
    }

    /// One batch, one commit: a job that fails leaves nothing of itself
    /// and nothing of it is lost by the others, whether it ran first (no
    /// savepoint: the transaction is begun again) or later (its own).
    #[test]
    fn a_failed_job_undoes_only_itself_in_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let connection = open_writer(path.to_str().unwrap()).unwrap();
        connection
            .execute_batch("create table t (v integer)")
            .unwrap();
        let (sender, receiver) = mpsc::channel(16);
        let mut answers = Vec::new();
        for (value, fails) in [(1, true), (2, false), (3, true), (4, false)] {
            let (job, answer) = job(value, fails);
            sender.try_send(job).map_err(|_| "queue full").unwrap();
            answers.push(answer);
        }
        drop(sender);
        let commits = AtomicU64::new(0);
        // Every job is queued before the writer starts: one batch.
        run_writer(connection, receiver, &commits);
        assert_eq!(commits.load(Ordering::Relaxed), 1);
        let outcomes: Vec<bool> = answers
            .into_iter()
            .map(|answer| answer.blocking_recv().unwrap().is_ok())
            .collect();
        assert_eq!(outcomes, [false, true, false, true]);
        let reader = Connection::open(&path).unwrap();
        let values: Vec<i64> = reader
            .prepare("select v from t order by v")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(values, [2, 4]);
    }

    /// 0012 rebuilds the pair tables ascending: the pairs of links made
    /// before it are carried over, and the triggers it recreates keep them
    /// for links made and updated after it.
    #[test]
    fn ascending_keys_migration_keeps_the_pairs_and_their_triggers() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("m.db")).unwrap();
        c.execute_batch(
            "create table schema_migrations (version integer primary key, applied_at integer not null)",
        )
        .unwrap();
        for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version < 12) {
            c.execute_batch(sql).unwrap();
            c.execute(
                "insert into schema_migrations (version, applied_at) values (?1, 0)",
                [version],
            )
            .unwrap();
        }
        c.execute(
            "insert into accounts (id, name, created_at) values ('acct_1', 'a', 0)",
            [],
        )
        .unwrap();
        insert_link(
            &c,
            "plink_old",
            1,
            r#"{"k":"v"}"#,
            r#"[{"product_id":"mug"}]"#,
        );
        let before = pairs(&c);
        assert_eq!(before.len(), 2);

        migrate(&mut c).unwrap();
        assert_eq!(pairs(&c), before);
        insert_link(
            &c,
            "plink_new",
            2,
            r#"{"k":"v"}"#,
            r#"[{"product_id":"cup"}]"#,
        );
        c.execute(
            r#"update payment_links set metadata = '{"k":"w"}' where id = 'plink_old'"#,
            [],
        )
        .unwrap();
        let pair = |key: &str, value: &str, link: &str| (key.into(), value.into(), link.into());
        assert_eq!(
            pairs(&c),
            vec![
                pair("k", "v", "plink_new"),
                pair("k", "w", "plink_old"),
                pair("product", "cup", "plink_new"),
                pair("product", "mug", "plink_old"),
            ]
        );
        let key: String = c
            .query_row(
                "select group_concat(name || ':' || desc, ',') from pragma_index_xinfo('sqlite_autoindex_link_metadata_1') where key",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(
            key,
            "account_id:0,livemode:0,key:0,value:0,created_at:0,link_id:0"
        );
    }
}

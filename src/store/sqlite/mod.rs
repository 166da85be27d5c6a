//! The embedded SQLite store.
//!
//! One dedicated writer thread owns the only write connection. Writes queue
//! to it; it takes every job waiting, runs them in one transaction, each
//! after the first in its own savepoint (a failed first job restarts the
//! transaction), commits once (group commit), and only then answers
//! the callers, so an acknowledged write has been fsynced
//! (`synchronous=FULL`). Reads run on a small pool of read-only connections,
//! which WAL lets proceed beside the writer.

/// A statement's text made from the shared column lists (`format!` on
/// constants only) once per process rather than on every call: it is the
/// key the connection's statement cache is looked up by.
macro_rules! sql_once {
    ($($format:tt)*) => {{
        static TEXT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| format!($($format)*));
        TEXT.as_str()
    }};
}

mod accounts;
mod engine;
mod idempotency;
mod links;
mod payments;
mod rows;
mod webhooks;

use async_trait::async_trait;

use crate::store::{Store, StoreResult};

pub use engine::{SqliteStore, backup};

#[async_trait]
impl Store for SqliteStore {
    fn single_process(&self) -> bool {
        true
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

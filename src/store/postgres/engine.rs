//! The connection engine: opening, migrations, and how queries reach the database.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::store::StoreError;

use super::batches::Writers;

pub(super) static MIGRATOR: sqlx::migrate::Migrator =
    sqlx::migrate!("src/store/postgres/migrations");

/// How long a request waits for a pooled connection before answering 503.
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        let unavailable = match &error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // Class 08: connection exceptions; 57P0x: the server is shutting
            // down or starting; 53300: too many connections.
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08") || code.starts_with("57P") || code == "53300"
            }),
            _ => false,
        };
        if unavailable {
            StoreError::Unavailable(error.to_string())
        } else {
            StoreError::Internal(error.to_string())
        }
    }
}

pub struct PostgresStore {
    pub(super) pool: PgPool,
    /// Where new links and transitions with nothing beside them are
    /// written in batches.
    pub(super) writers: Writers,
}

impl PostgresStore {
    pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        // sqlx takes an advisory lock, so nodes starting together migrate once.
        MIGRATOR.run(&pool).await?;
        // Half the pool writes batches at most, so reads always find
        // connections left.
        let writers = Writers::start(&pool, max_connections as usize / 2);
        Ok(Self { pool, writers })
    }
}

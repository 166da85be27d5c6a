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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    //! Runs on the PostgreSQL server `PAYLINK_TEST_POSTGRES_URL` names.

    use std::os::fd::BorrowedFd;

    use sqlx::Row;

    use crate::store::postgres::scratch::{admin_url, scratch_store};

    /// Every statement is a write and a read on its connection, and a batch
    /// writer's statement carries a JSON array larger than one loopback
    /// segment (64 KiB): with Nagle's algorithm on, its last segment waits
    /// for the server's delayed acknowledgement, 40 ms a statement (sqlx
    /// 0.9.0 left it on; 0.9.1 turns it off again). The pool's connections
    /// must send at once.
    #[tokio::test]
    async fn pooled_connections_send_without_waiting_for_acknowledgements() -> anyhow::Result<()> {
        let Some(admin_url) = admin_url() else {
            return Ok(());
        };
        let server_port = url::Url::parse(&admin_url).unwrap().port().unwrap_or(5432);
        let (store, drop_database) = scratch_store(&admin_url).await;
        let mut connection = store.pool.acquire().await?;
        let client_port: Option<i32> = sqlx::query("select inet_client_port()")
            .fetch_one(&mut *connection)
            .await?
            .get(0);
        let Some(client_port) = client_port else {
            eprintln!("SKIPPED: the test server is reached through a Unix socket, not TCP");
            drop(connection);
            drop_database().await;
            return Ok(());
        };

        let mut found = None;
        for entry in std::fs::read_dir("/proc/self/fd")? {
            let Ok(fd) = entry?.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            // SAFETY: only getsockname, getpeername and getsockopt are called,
            // none of which changes or closes the descriptor; the one that
            // matters belongs to `connection`, which stays open meanwhile.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let socket = socket2::SockRef::from(&fd);
            let ports = socket
                .local_addr()
                .ok()
                .and_then(|local| local.as_socket())
                .zip(socket.peer_addr().ok().and_then(|peer| peer.as_socket()));
            if let Some((local, peer)) = ports
                && i32::from(local.port()) == client_port
                && peer.port() == server_port
            {
                found = Some(socket.tcp_nodelay().unwrap());
            }
        }
        assert_eq!(
            found,
            Some(true),
            "the pooled connection's socket (None: not found) must have TCP_NODELAY"
        );
        drop(connection);
        drop_database().await;
        Ok(())
    }
}

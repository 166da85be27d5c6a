//! Scratch databases for unit tests on the PostgreSQL server that
//! `PAYLINK_TEST_POSTGRES_URL` names (CI sets it): each test gets a fresh,
//! migrated database of its own, dropped at its end.

use sqlx::{AssertSqlSafe, Connection, Executor};

use super::PostgresStore;

/// A fresh, migrated database, dropped at the end.
pub(crate) async fn scratch_store(admin_url: &str) -> (PostgresStore, impl AsyncFnOnce()) {
    let name = format!(
        "paylink_unit_{}",
        crate::domain::ids::random_base62(12).to_lowercase()
    );
    let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
    admin
        .execute(AssertSqlSafe(format!("create database {name}")))
        .await
        .unwrap();
    let mut url = url::Url::parse(admin_url).unwrap();
    url.set_path(&name);
    let store = PostgresStore::open(url.as_str(), 2).await.unwrap();
    let pool = store.pool.clone();
    let drop_it = async move || {
        pool.close().await;
        admin
            .execute(AssertSqlSafe(format!("drop database {name} with (force)")))
            .await
            .unwrap();
    };
    (store, drop_it)
}

/// The server's URL, or `None` (saying the test skipped) when unset;
/// under `CI=true` an unset URL fails the test instead.
pub(crate) fn admin_url() -> Option<String> {
    let url = std::env::var("PAYLINK_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty());
    if url.is_none() {
        assert!(
            !std::env::var("CI").is_ok_and(|ci| ci == "true"),
            "CI=true requires PAYLINK_TEST_POSTGRES_URL"
        );
        eprintln!("SKIPPED: set PAYLINK_TEST_POSTGRES_URL to run this PostgreSQL test");
    }
    url
}

//! Integration tests: a real server on a real port over a real database.

/// Each test runs twice, as `<name>::sqlite` and `<name>::postgres`; the
/// PostgreSQL run says it skipped when `PAYLINK_TEST_POSTGRES_URL` is unset.
macro_rules! backend_tests {
    ($($(#[$meta:meta])* async fn $name:ident() $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body() $body

            #[tokio::test]
            async fn sqlite() {
                crate::helpers::on_sqlite(body()).await;
            }

            #[tokio::test]
            async fn postgres() {
                crate::helpers::on_postgres(body()).await;
            }
        }
    )*};
}

#[path = "../common/mod.rs"]
mod common;
mod helpers;
mod receiver;

mod auth;
mod browser;
mod bulk_and_stats;
mod cancel;
mod checkout;
mod cli;
mod dialects;
mod durability;
mod expiry;
mod idempotency;
mod list;
mod multi_node;
mod node_examples;
mod protocol;
mod rate_limits;
mod refunds;
mod snapshots;
mod stripe;
mod update;
mod validation;
mod webhooks;

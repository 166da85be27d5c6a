//! The PostgreSQL store: many stateless paylink nodes on one database.
//!
//! Every transition is a conditional `update ... where version = $expected`
//! plus its event row in one transaction, so racing nodes cannot both win.
//! The expiry sweep claims rows with `for update skip locked`, so several
//! sweepers share the due links instead of fighting over them.

mod accounts;
mod batches;
mod engine;
mod idempotency;
mod links;
mod payments;
mod rows;
#[cfg(test)]
pub(crate) mod scratch;
mod webhooks;

use async_trait::async_trait;

use crate::store::{Store, StoreResult};

pub use engine::PostgresStore;

#[async_trait]
impl Store for PostgresStore {
    fn single_process(&self) -> bool {
        false
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }
}

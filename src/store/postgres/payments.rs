//! Payment attempts, refunds and processors' events.

use async_trait::async_trait;
use jiff::Timestamp;
use jiff_sqlx::ToSqlx;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Row};

use crate::domain::{PaymentAttempt, Refund, RefundState};
use crate::store::{PaymentStore, StoreResult};

use super::engine::*;
use super::rows::*;

#[async_trait]
impl PaymentStore for PostgresStore {
    async fn link_attempts(&self, link_id: &str) -> StoreResult<Vec<PaymentAttempt>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "select {ATTEMPT_COLUMNS} from payment_attempts where link_id = $1 order by created_at, id"
        )))
        .bind(link_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(attempt_from_row)
            .collect::<sqlx::Result<Vec<_>>>()?)
    }

    async fn pending_attempts(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<PaymentAttempt>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "select {ATTEMPT_COLUMNS} from payment_attempts
             where state = 'pending' and created_at < $1 order by created_at limit $2"
        )))
        .bind(before.to_sqlx())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(attempt_from_row)
            .collect::<sqlx::Result<Vec<_>>>()?)
    }

    async fn record_test_outcome(
        &self,
        key: &str,
        outcome: serde_json::Value,
        now: Timestamp,
    ) -> StoreResult<serde_json::Value> {
        let row = sqlx::query(
            "with inserted as (
                 insert into test_processor_charges (attempt_id, outcome, created_at) values ($1, $2, $3)
                 on conflict do nothing returning outcome)
             select outcome from inserted
             union all select outcome from test_processor_charges where attempt_id = $1
             limit 1",
        )
        .bind(key)
        .bind(Json(&outcome))
        .bind(now.to_sqlx())
        .fetch_optional(&self.pool)
        .await?;
        // None: a concurrent insert committed after this statement's
        // snapshot; a new statement sees it.
        let row = match row {
            Some(row) => row,
            None => {
                sqlx::query("select outcome from test_processor_charges where attempt_id = $1")
                    .bind(key)
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        Ok(row.try_get::<Json<serde_json::Value>, _>("outcome")?.0)
    }

    async fn set_attempt_reference(&self, attempt_id: &str, reference: &str) -> StoreResult<bool> {
        Ok(sqlx::query(
            "update payment_attempts set processor_reference = $2 where id = $1 and state = 'pending'",
        )
        .bind(attempt_id)
        .bind(reference)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    async fn get_attempt(&self, attempt_id: &str) -> StoreResult<Option<PaymentAttempt>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "select {ATTEMPT_COLUMNS} from payment_attempts where id = $1"
        )))
        .bind(attempt_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(attempt_from_row).transpose()?)
    }

    async fn link_refunds(&self, link_id: &str) -> StoreResult<Vec<Refund>> {
        let rows =
            sqlx::query("select body from refunds where link_id = $1 order by created_at, id")
                .bind(link_id)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .iter()
            .map(refund_from_row)
            .collect::<sqlx::Result<Vec<_>>>()?)
    }

    async fn pending_refunds(&self, before: Timestamp, limit: usize) -> StoreResult<Vec<Refund>> {
        let rows = sqlx::query(
            "select body from refunds where state = $1 and created_at < $2
             order by created_at limit $3",
        )
        .bind(RefundState::Pending.as_str())
        .bind(before.to_sqlx())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(refund_from_row)
            .collect::<sqlx::Result<Vec<_>>>()?)
    }

    async fn record_processor_event(
        &self,
        processor: &str,
        event_id: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        Ok(sqlx::query(
            "insert into processor_events (processor, event_id, received_at) values ($1, $2, $3)
             on conflict do nothing",
        )
        .bind(processor)
        .bind(event_id)
        .bind(now.to_sqlx())
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    async fn processor_event_seen(&self, processor: &str, event_id: &str) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "select exists (select 1 from processor_events where processor = $1 and event_id = $2)",
        )
        .bind(processor)
        .bind(event_id)
        .fetch_one(&self.pool)
        .await?)
    }
}

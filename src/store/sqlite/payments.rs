//! Payment attempts, refunds and processors' events.

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use crate::domain::{PaymentAttempt, Refund, RefundState};
use crate::store::{PaymentStore, StoreResult};

use super::engine::*;
use super::rows::*;

#[async_trait]
impl PaymentStore for SqliteStore {
    async fn link_attempts(&self, link_id: &str) -> StoreResult<Vec<PaymentAttempt>> {
        let link_id = link_id.to_owned();
        self.read(move |c| {
            let mut statement = c.prepare_cached(sql_once!(
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
            let mut statement = c.prepare_cached(sql_once!(
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
}

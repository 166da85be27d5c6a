//! The event log, webhook endpoints and deliveries.

use async_trait::async_trait;
use jiff::Timestamp;
use jiff_sqlx::ToSqlx;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Row};

use crate::domain::LinkEvent;
use crate::domain::webhook::delivery::{
    Attempt, AttemptRecord, ClaimedDelivery, Delivery, DeliveryStatus, GONE_REASON, LEASE, NextStep,
};
use crate::domain::webhook::endpoint::WebhookEndpoint;
use crate::store::{EventFilter, Scope, StoreError, StoreResult, WebhookStore};

use super::engine::*;
use super::rows::*;

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn purge_finished_deliveries(
        &self,
        finished_before: Timestamp,
        limit: usize,
    ) -> StoreResult<usize> {
        // One statement: the attempts and their deliveries go together
        // (the foreign key is checked at its end).
        let result = sqlx::query(
            "with old as (
                 select event_id, endpoint_id from webhook_deliveries
                 where status <> 'pending' and updated_at < $1
                 limit $2 for update skip locked
             ), attempts as (
                 delete from webhook_attempts a using old
                 where a.event_id = old.event_id and a.endpoint_id = old.endpoint_id
             )
             delete from webhook_deliveries d using old
             where d.event_id = old.event_id and d.endpoint_id = old.endpoint_id",
        )
        .bind(finished_before.to_sqlx())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(usize::try_from(result.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn insert_webhook_endpoint(&self, endpoint: WebhookEndpoint) -> StoreResult<()> {
        sqlx::query(AssertSqlSafe(format!(
            "insert into webhook_endpoints ({ENDPOINT_COLUMNS})
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        )))
        .bind(&endpoint.id)
        .bind(&endpoint.account_id)
        .bind(endpoint.livemode)
        .bind(&endpoint.url)
        .bind(&endpoint.description)
        .bind(event_type_names(&endpoint))
        .bind(endpoint.format.as_str())
        .bind(endpoint.enabled)
        .bind(&endpoint.disabled_reason)
        .bind(&endpoint.secret)
        .bind(Json(&endpoint.retired_secrets))
        .bind(endpoint.created_at.to_sqlx())
        .bind(endpoint.updated_at.to_sqlx())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_webhook_endpoint(
        &self,
        scope: &Scope,
        id: &str,
    ) -> StoreResult<Option<WebhookEndpoint>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "select {ENDPOINT_COLUMNS} from webhook_endpoints
             where id = $1 and account_id = $2 and livemode = $3 and deleted_at is null"
        )))
        .bind(id)
        .bind(&scope.account_id)
        .bind(scope.livemode)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(endpoint_from_row).transpose()?)
    }

    async fn list_webhook_endpoints(&self, scope: &Scope) -> StoreResult<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "select {ENDPOINT_COLUMNS} from webhook_endpoints
             where account_id = $1 and livemode = $2 and deleted_at is null
             order by created_at, id"
        )))
        .bind(&scope.account_id)
        .bind(scope.livemode)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(endpoint_from_row)
            .collect::<sqlx::Result<Vec<_>>>()?)
    }

    async fn all_webhook_endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "select {ENDPOINT_COLUMNS} from webhook_endpoints where deleted_at is null order by created_at, id"
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(endpoint_from_row)
            .collect::<sqlx::Result<Vec<_>>>()?)
    }

    async fn update_webhook_endpoint(&self, endpoint: WebhookEndpoint) -> StoreResult<bool> {
        let changed = sqlx::query(
            "update webhook_endpoints set url = $1, description = $2, events = $3, format = $4,
                enabled = $5, disabled_reason = $6, secret = $7, retired_secrets = $8,
                updated_at = $9
             where id = $10 and deleted_at is null",
        )
        .bind(&endpoint.url)
        .bind(&endpoint.description)
        .bind(event_type_names(&endpoint))
        .bind(endpoint.format.as_str())
        .bind(endpoint.enabled)
        .bind(&endpoint.disabled_reason)
        .bind(&endpoint.secret)
        .bind(Json(&endpoint.retired_secrets))
        .bind(endpoint.updated_at.to_sqlx())
        .bind(&endpoint.id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    async fn delete_webhook_endpoint(
        &self,
        scope: &Scope,
        id: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query(
            "update webhook_endpoints set deleted_at = $1, enabled = false, updated_at = $1
             where id = $2 and account_id = $3 and livemode = $4 and deleted_at is null",
        )
        .bind(now.to_sqlx())
        .bind(id)
        .bind(&scope.account_id)
        .bind(scope.livemode)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if deleted {
            sqlx::query(
                "update webhook_deliveries set status = 'failed', next_attempt_at = null, updated_at = $1
                 where endpoint_id = $2 and status = 'pending'",
            )
            .bind(now.to_sqlx())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn list_events(
        &self,
        scope: &Scope,
        filter: &EventFilter,
        limit: usize,
        starting_after: Option<&str>,
    ) -> StoreResult<Vec<LinkEvent>> {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "select {EVENT_COLUMNS} from events where account_id = "
        ));
        query
            .push_bind(scope.account_id.clone())
            .push(" and livemode = ")
            .push_bind(scope.livemode);
        if let Some(event_type) = filter.event_type {
            query.push(" and type = ").push_bind(event_type.as_str());
        }
        if let Some(link_id) = &filter.link_id {
            query.push(" and link_id = ").push_bind(link_id.clone());
        }
        if let Some(after) = starting_after {
            query
                .push(" and seq < (select seq from events where id = ")
                .push_bind(after.to_owned())
                .push(")");
        }
        query
            .push(" order by seq desc limit ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = query.build().fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(event_from_row)
            .collect::<sqlx::Result<Vec<_>>>()?)
    }

    async fn get_event(&self, scope: &Scope, id: &str) -> StoreResult<Option<LinkEvent>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "select {EVENT_COLUMNS} from events where id = $1 and account_id = $2 and livemode = $3"
        )))
        .bind(id)
        .bind(&scope.account_id)
        .bind(scope.livemode)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(event_from_row).transpose()?)
    }

    async fn event_deliveries(&self, event_id: &str) -> StoreResult<Vec<Delivery>> {
        // One snapshot for both queries: attempts match their deliveries.
        let mut tx = self.pool.begin().await?;
        sqlx::query("set transaction isolation level repeatable read, read only")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "select d.event_id, d.endpoint_id, d.status, d.next_attempt_at, d.created_at
             from webhook_deliveries d join webhook_endpoints w on w.id = d.endpoint_id
             where d.event_id = $1 order by w.created_at, w.id",
        )
        .bind(event_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut deliveries = rows
            .iter()
            .map(|row| {
                let status: String = row.try_get("status")?;
                Ok(Delivery {
                    event_id: row.try_get("event_id")?,
                    endpoint_id: row.try_get("endpoint_id")?,
                    status: decode("status", &status, DeliveryStatus::parse).map_err(internal)?,
                    next_attempt_at: opt_ts(row, "next_attempt_at")?,
                    attempts: Vec::new(),
                    created_at: ts(row, "created_at")?,
                })
            })
            .collect::<sqlx::Result<Vec<_>>>()?;
        let attempts = sqlx::query(
            "select endpoint_id, attempted_at, status_code, latency_ms, error
             from webhook_attempts where event_id = $1 order by id",
        )
        .bind(event_id)
        .fetch_all(&mut *tx)
        .await?;
        for row in &attempts {
            let endpoint_id: String = row.try_get("endpoint_id")?;
            let status_code: Option<i32> = row.try_get("status_code")?;
            let attempt = Attempt {
                attempted_at: ts(row, "attempted_at")?,
                status_code: status_code.and_then(|code| u16::try_from(code).ok()),
                latency_ms: row.try_get("latency_ms")?,
                error: row.try_get("error")?,
            };
            if let Some(delivery) = deliveries.iter_mut().find(|d| d.endpoint_id == endpoint_id) {
                delivery.attempts.push(attempt);
            }
        }
        tx.commit().await?;
        Ok(deliveries)
    }

    async fn schedule_redelivery(
        &self,
        event_id: &str,
        endpoint_ids: &[String],
        now: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "insert into webhook_deliveries (event_id, endpoint_id, status, attempt_count, next_attempt_at, created_at, updated_at)
             select $1, endpoint_id, 'pending', 0, $3, $3, $3 from unnest($2::text[]) as endpoint_id
             on conflict (event_id, endpoint_id) do update set
                status = 'pending', attempt_count = 0, next_attempt_at = $3, updated_at = $3",
        )
        .bind(event_id)
        .bind(endpoint_ids)
        .bind(now.to_sqlx())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        // Rows another node is claiming right now are skipped, not waited
        // for; a row it claimed a moment ago fails the lease condition when
        // re-checked after its lock is released. Either way, one owner.
        let claimed = sqlx::query(
            "with due as (
                select d.event_id, d.endpoint_id
                from webhook_deliveries d join webhook_endpoints w on w.id = d.endpoint_id
                where d.status = 'pending' and d.next_attempt_at <= $1
                  and (d.lease_expires_at is null or d.lease_expires_at <= $1)
                  and w.enabled and w.deleted_at is null
                order by d.next_attempt_at
                limit $3
                for update of d skip locked
             )
             update webhook_deliveries d set lease_expires_at = $2
             from due where d.event_id = due.event_id and d.endpoint_id = due.endpoint_id
             returning d.event_id, d.endpoint_id, d.attempt_count",
        )
        .bind(now.to_sqlx())
        .bind((now + LEASE).to_sqlx())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let mut event_ids = Vec::with_capacity(claimed.len());
        let mut endpoint_ids = Vec::with_capacity(claimed.len());
        for row in &claimed {
            event_ids.push(row.try_get::<String, _>("event_id")?);
            endpoint_ids.push(row.try_get::<String, _>("endpoint_id")?);
        }
        let events = sqlx::query(AssertSqlSafe(format!(
            "select {EVENT_COLUMNS} from events where id = any($1)"
        )))
        .bind(&event_ids)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(event_from_row)
        .collect::<sqlx::Result<Vec<_>>>()?;
        let endpoints = sqlx::query(AssertSqlSafe(format!(
            "select {ENDPOINT_COLUMNS} from webhook_endpoints where id = any($1)"
        )))
        .bind(&endpoint_ids)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(endpoint_from_row)
        .collect::<sqlx::Result<Vec<_>>>()?;
        let mut deliveries = Vec::with_capacity(claimed.len());
        for (row, (event_id, endpoint_id)) in
            claimed.iter().zip(event_ids.iter().zip(&endpoint_ids))
        {
            let attempts_made: i32 = row.try_get("attempt_count")?;
            let event = events.iter().find(|e| &e.id == event_id);
            let endpoint = endpoints.iter().find(|e| &e.id == endpoint_id);
            let (Some(event), Some(endpoint)) = (event, endpoint) else {
                return Err(StoreError::Internal(format!(
                    "delivery of {event_id} to {endpoint_id} has no event or endpoint"
                )));
            };
            deliveries.push(ClaimedDelivery {
                event: event.clone(),
                endpoint: endpoint.clone(),
                attempts_made: u32::try_from(attempts_made).unwrap_or(0),
            });
        }
        Ok(deliveries)
    }

    async fn record_attempts(&self, records: Vec<AttemptRecord>) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        // One statement, so one transaction and one commit for the batch,
        // with the records passed as parallel arrays.
        let count = records.len();
        let mut event_ids = Vec::with_capacity(count);
        let mut endpoint_ids = Vec::with_capacity(count);
        let mut attempted_at = Vec::with_capacity(count);
        let mut status_codes = Vec::with_capacity(count);
        let mut latencies = Vec::with_capacity(count);
        let mut errors = Vec::with_capacity(count);
        let mut statuses = Vec::with_capacity(count);
        let mut next_attempts = Vec::with_capacity(count);
        let mut gone = Vec::with_capacity(count);
        for record in records {
            let (status, next_attempt_at) = record.next.delivery_state();
            event_ids.push(record.event_id);
            endpoint_ids.push(record.endpoint_id);
            attempted_at.push(record.attempt.attempted_at.to_sqlx());
            status_codes.push(record.attempt.status_code.map(i32::from));
            latencies.push(record.attempt.latency_ms);
            errors.push(record.attempt.error);
            statuses.push(status.as_str());
            next_attempts.push(next_attempt_at.map(|at| at.to_sqlx()));
            gone.push(record.next == NextStep::EndpointGone);
        }
        sqlx::query(
            "with batch as (
                select * from unnest($1::text[], $2::text[], $3::timestamptz[], $4::int4[],
                                     $5::int8[], $6::text[], $7::text[], $8::timestamptz[], $9::bool[])
                  as b(event_id, endpoint_id, attempted_at, status_code, latency_ms, error,
                       status, next_attempt_at, gone)
             ),
             attempts as (
                insert into webhook_attempts (event_id, endpoint_id, attempted_at, status_code, latency_ms, error)
                select event_id, endpoint_id, attempted_at, status_code, latency_ms, error from batch
             ),
             moved as (
                update webhook_deliveries d set status = b.status, attempt_count = d.attempt_count + 1,
                    next_attempt_at = b.next_attempt_at, lease_expires_at = null, updated_at = b.attempted_at
                from batch b
                where d.event_id = b.event_id and d.endpoint_id = b.endpoint_id and d.status = 'pending'
             )
             update webhook_endpoints w set enabled = false, disabled_reason = $10, updated_at = b.attempted_at
             from batch b where b.gone and w.id = b.endpoint_id",
        )
        .bind(event_ids)
        .bind(endpoint_ids)
        .bind(attempted_at)
        .bind(status_codes)
        .bind(latencies)
        .bind(errors)
        .bind(statuses)
        .bind(next_attempts)
        .bind(gone)
        .bind(GONE_REASON)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn next_delivery_due(&self) -> StoreResult<Option<Timestamp>> {
        let row = sqlx::query(
            "select min(greatest(d.next_attempt_at, d.lease_expires_at)) as due
             from webhook_deliveries d join webhook_endpoints w on w.id = d.endpoint_id
             where d.status = 'pending' and w.enabled and w.deleted_at is null",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(opt_ts(&row, "due")?)
    }
}

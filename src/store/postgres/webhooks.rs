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

/// Claims up to $3 deliveries due by $1 for this node, leasing them until
/// $2, each with its event (the event's columns, beside the claim's
/// `endpoint_id` and `attempt_count`). The function (migrations 0012 and
/// 0014) walks the due order from its front, so it reads the deliveries in
/// flight and the ones it takes, never the backlog behind them.
const CLAIM_DUE: &str = "select * from claim_due_deliveries($1, $2, $3)";

/// When the earliest delivery no node holds at $1 falls due: the same walk,
/// stopping at the first (migration 0012).
const NEXT_DUE: &str = "select next_delivery_due($1) as due";

/// Records a batch of attempts, passed as parallel arrays ($1 to $9, one
/// element per attempt; $10 the reason an endpoint that answered 410 is
/// disabled with): each attempt's row, its delivery's next state, and the
/// endpoint's disabling.
///
/// Every delivery of the batch that still exists is updated, and so
/// locked until the commit: a pending one moves on; one already finished
/// (by another node, after this node's lease ran out) keeps its state. The
/// attempts are inserted for the deliveries the update found, so an
/// attempt is kept in its delivery's history either way, and one whose
/// delivery was purged meanwhile is dropped instead of failing the batch
/// (migration 0013: no foreign key checks this any more).
///
/// Each delivery is found by its whole key, whatever the planner believes
/// about the backlog: with `status = 'pending'` in the condition, the
/// partial indexes of pending deliveries qualify, and with statistics
/// gathered before a backlog built up (autovacuum looks again only after a
/// tenth of the table has changed) they look empty, so the planner walked
/// the whole backlog once per record. Without it, probing the primary key
/// is the one plan.
const RECORD_ATTEMPTS: &str = "with batch as (
        select * from unnest($1::text[], $2::text[], $3::timestamptz[], $4::int4[],
                             $5::int8[], $6::text[], $7::text[], $8::timestamptz[], $9::bool[])
          as b(event_id, endpoint_id, attempted_at, status_code, latency_ms, error,
               status, next_attempt_at, gone)
     ),
     found as (
        update webhook_deliveries d set
            status = case when d.status = 'pending' then b.status else d.status end,
            attempt_count = case when d.status = 'pending' then d.attempt_count + 1 else d.attempt_count end,
            next_attempt_at = case when d.status = 'pending' then b.next_attempt_at else d.next_attempt_at end,
            lease_expires_at = case when d.status = 'pending' then null else d.lease_expires_at end,
            updated_at = case when d.status = 'pending' then b.attempted_at else d.updated_at end
        from batch b
        where d.event_id = b.event_id and d.endpoint_id = b.endpoint_id
        returning d.event_id, d.endpoint_id
     ),
     attempts as (
        insert into webhook_attempts (event_id, endpoint_id, attempted_at, status_code, latency_ms, error)
        select b.event_id, b.endpoint_id, b.attempted_at, b.status_code, b.latency_ms, b.error
        from batch b join found f on f.event_id = b.event_id and f.endpoint_id = b.endpoint_id
     )
     update webhook_endpoints w set enabled = false, disabled_reason = $10, updated_at = b.attempted_at
     from batch b where b.gone and w.id = b.endpoint_id";

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn purge_finished_deliveries(
        &self,
        finished_before: Timestamp,
        limit: usize,
    ) -> StoreResult<usize> {
        // One statement: the attempts and their deliveries go together.
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
        let claimed = sqlx::query(CLAIM_DUE)
            .bind(now.to_sqlx())
            .bind((now + LEASE).to_sqlx())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let mut endpoint_ids: Vec<String> = Vec::new();
        let mut events = Vec::with_capacity(claimed.len());
        for row in &claimed {
            let endpoint_id: String = row.try_get("endpoint_id")?;
            let attempts_made: i32 = row.try_get("attempt_count")?;
            if !endpoint_ids.contains(&endpoint_id) {
                endpoint_ids.push(endpoint_id.clone());
            }
            events.push((event_from_row(row)?, endpoint_id, attempts_made));
        }
        let endpoints = sqlx::query(AssertSqlSafe(format!(
            "select {ENDPOINT_COLUMNS} from webhook_endpoints where id = any($1)"
        )))
        .bind(&endpoint_ids)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(endpoint_from_row)
        .collect::<sqlx::Result<Vec<_>>>()?;
        let mut deliveries = Vec::with_capacity(events.len());
        for (event, endpoint_id, attempts_made) in events {
            let Some(endpoint) = endpoints.iter().find(|e| e.id == endpoint_id) else {
                return Err(StoreError::Internal(format!(
                    "delivery of {} to {endpoint_id} has no endpoint",
                    event.id
                )));
            };
            deliveries.push(ClaimedDelivery {
                event,
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
        sqlx::query(RECORD_ATTEMPTS)
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

    async fn next_delivery_due(&self, now: Timestamp) -> StoreResult<Option<Timestamp>> {
        let row = sqlx::query(NEXT_DUE)
            .bind(now.to_sqlx())
            .fetch_one(&self.pool)
            .await?;
        Ok(opt_ts(&row, "due")?)
    }
}

#[cfg(test)]
mod tests {
    //! Runs on the PostgreSQL server `PAYLINK_TEST_POSTGRES_URL` names (CI
    //! sets it), in a database of its own; says it skipped when unset.

    use sqlx::Executor;

    use super::*;
    use crate::store::postgres::scratch::{admin_url, scratch_store};

    /// The backlog every test here reads: 4,000 deliveries pending to one
    /// endpoint, the first 200 of them leased (in flight), behind 20,000
    /// finished ones. Set up without the foreign keys' checks (no event
    /// rows): only the deliveries' indexes matter. The statistics are from
    /// before the backlog, as when one builds up between two of
    /// autovacuum's looks: they show pending deliveries as rare.
    async fn stale_backlog(conn: &mut sqlx::PgConnection) {
        conn.execute(
            "set session_replication_role = replica;
             insert into webhook_endpoints (id, account_id, livemode, url, format, enabled, secret, created_at, updated_at)
             values ('we_one', 'acct', false, 'https://example.com/hook', 'native', true, 'whsec', now(), now());
             insert into webhook_deliveries (event_id, endpoint_id, status, attempt_count, next_attempt_at, created_at, updated_at)
             select 'old_' || i, 'we_one', 'succeeded', 2, null, now(), now()
             from generate_series(1, 20000) i;
             analyze webhook_deliveries;
             insert into webhook_deliveries (event_id, endpoint_id, status, attempt_count, next_attempt_at, lease_expires_at, created_at, updated_at)
             select 'evt_' || lpad(i::text, 6, '0'), 'we_one', 'pending', 0,
                    now() - interval '1 hour' + i * interval '1 ms',
                    case when i <= 200 then now() + interval '1 minute' end, now(), now()
             from generate_series(1, 4000) i;",
        )
        .await
        .unwrap();
    }

    /// Runs `statement` with its parameters bound, in a transaction of
    /// its own, and counts the rows of `webhook_deliveries` it read: index
    /// entries and rows of sequential scans, by the transaction's own
    /// statistics (which count a function's statements too).
    async fn rows_read<'q>(
        conn: &mut sqlx::PgConnection,
        statement: &'q str,
        bind: impl FnOnce(
            sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
        ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> i64 {
        conn.execute("begin").await.unwrap();
        bind(sqlx::query(AssertSqlSafe(statement)))
            .execute(&mut *conn)
            .await
            .unwrap();
        let read = sqlx::query_scalar(
            "select (select sum(pg_stat_get_xact_tuples_returned(indexrelid)) from pg_index
                     where indrelid = 'webhook_deliveries'::regclass)::bigint
                  + pg_stat_get_xact_tuples_returned('webhook_deliveries'::regclass)",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        conn.execute("commit").await.unwrap();
        read
    }

    async fn count(conn: &mut sqlx::PgConnection, query: &'static str) -> i64 {
        sqlx::query_scalar(query)
            .fetch_one(&mut *conn)
            .await
            .unwrap()
    }

    /// Claiming looks at the deliveries in flight and the ones it takes,
    /// not the backlog behind them: with a backlog of 4,000, a claim of
    /// 64 read every pending delivery and sorted them.
    #[tokio::test]
    async fn claiming_does_not_read_the_backlog() {
        let Some(admin_url) = admin_url() else { return };
        let (store, drop_database) = scratch_store(&admin_url).await;
        let mut conn = store.pool.acquire().await.unwrap();
        stale_backlog(&mut conn).await;
        let now = Timestamp::now();
        let read = rows_read(&mut conn, CLAIM_DUE, |q| {
            q.bind(now.to_sqlx())
                .bind((now + LEASE).to_sqlx())
                .bind(64_i64)
        })
        .await;
        let leased = count(
            &mut conn,
            "select count(*) from webhook_deliveries where lease_expires_at is not null",
        )
        .await;
        drop(conn);
        drop_database().await;

        assert_eq!(leased, 264, "the claim took 64 more");
        // 200 in flight passed over, 64 taken, then each updated by key.
        assert!(
            read <= 200 + 2 * 64,
            "a claim of 64 read {read} deliveries: it read the backlog of 4,000"
        );
    }

    /// The dispatcher asks when the next delivery is due after every write:
    /// the answer comes from the front of the due order, not from all of
    /// the backlog.
    #[tokio::test]
    async fn asking_when_the_next_delivery_is_due_does_not_read_the_backlog() {
        let Some(admin_url) = admin_url() else { return };
        let (store, drop_database) = scratch_store(&admin_url).await;
        let mut conn = store.pool.acquire().await.unwrap();
        stale_backlog(&mut conn).await;
        let now = Timestamp::now();
        let read = rows_read(&mut conn, NEXT_DUE, |q| q.bind(now.to_sqlx())).await;
        drop(conn);
        let due = store.next_delivery_due(now).await.unwrap().unwrap();
        let first_free: Timestamp = sqlx::query_scalar::<_, jiff_sqlx::Timestamp>(
            "select next_attempt_at from webhook_deliveries where event_id = 'evt_000201'",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap()
        .to_jiff();
        drop_database().await;

        assert_eq!(due, first_free, "the earliest delivery not in flight");
        assert!(
            read <= 200 + 1,
            "finding the next due delivery read {read} deliveries: it read the backlog of 4,000"
        );
    }

    /// A dispatcher records attempts while a backlog drains: recording 64
    /// of them finds each by its key, whatever the backlog (the planner
    /// walked all of it, once per record or once per delivery).
    #[tokio::test]
    async fn recording_attempts_does_not_read_the_backlog() {
        let Some(admin_url) = admin_url() else { return };
        let (store, drop_database) = scratch_store(&admin_url).await;
        let mut conn = store.pool.acquire().await.unwrap();
        stale_backlog(&mut conn).await;
        let n = 64;
        let event_ids: Vec<String> = (1..=n).map(|i| format!("evt_{:06}", i * 50)).collect();
        let now = Timestamp::now().to_sqlx();
        let read = rows_read(&mut conn, RECORD_ATTEMPTS, |q| {
            q.bind(event_ids)
                .bind(vec!["we_one"; n])
                .bind(vec![now; n])
                .bind(vec![Some(200_i32); n])
                .bind(vec![3_i64; n])
                .bind(vec![None::<String>; n])
                .bind(vec!["succeeded"; n])
                .bind(vec![None::<jiff_sqlx::Timestamp>; n])
                .bind(vec![false; n])
                .bind(GONE_REASON)
        })
        .await;
        let moved = count(
            &mut conn,
            "select count(*) from webhook_deliveries where status = 'succeeded' and attempt_count = 1",
        )
        .await;
        drop(conn);
        drop_database().await;

        assert_eq!(moved, 64, "every recorded delivery moved on");
        // Found by key: one row looked at per delivery, whatever the backlog.
        assert!(
            read <= 64,
            "finding 64 deliveries read {read} rows of webhook_deliveries: \
             they were searched for among the backlog of 4,000"
        );
    }
}

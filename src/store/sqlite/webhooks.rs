//! The event log, webhook endpoints and deliveries.

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};

use crate::domain::LinkEvent;
use crate::domain::webhook::delivery::{
    Attempt, AttemptRecord, ClaimedDelivery, Delivery, DeliveryStatus, GONE_REASON, LEASE, NextStep,
};
use crate::domain::webhook::endpoint::WebhookEndpoint;
use crate::store::{EventFilter, Scope, StoreResult, WebhookStore};

use super::engine::*;
use super::rows::*;

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn purge_finished_deliveries(
        &self,
        finished_before: Timestamp,
        limit: usize,
    ) -> StoreResult<usize> {
        self.write(move |c| {
            let old: Vec<(String, String)> = c
                .prepare(
                    "select event_id, endpoint_id from webhook_deliveries
                     where status <> 'pending' and updated_at < ?1 limit ?2",
                )?
                .query_map(params![micros(finished_before), limit as i64], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect::<Result<_, _>>()?;
            for (event_id, endpoint_id) in &old {
                c.execute(
                    "delete from webhook_attempts where event_id = ?1 and endpoint_id = ?2",
                    params![event_id, endpoint_id],
                )?;
                c.execute(
                    "delete from webhook_deliveries where event_id = ?1 and endpoint_id = ?2",
                    params![event_id, endpoint_id],
                )?;
            }
            Ok(old.len())
        })
        .await
    }

    async fn insert_webhook_endpoint(&self, endpoint: WebhookEndpoint) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                &format!(
                    "insert into webhook_endpoints ({ENDPOINT_COLUMNS})
                     values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ),
                params![
                    endpoint.id,
                    endpoint.account_id,
                    endpoint.livemode,
                    endpoint.url,
                    endpoint.description,
                    event_types_json(&endpoint)?,
                    endpoint.format.as_str(),
                    endpoint.enabled,
                    endpoint.disabled_reason,
                    endpoint.secret,
                    serde_json::to_string(&endpoint.retired_secrets)?,
                    micros(endpoint.created_at),
                    micros(endpoint.updated_at),
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_webhook_endpoint(
        &self,
        scope: &Scope,
        id: &str,
    ) -> StoreResult<Option<WebhookEndpoint>> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.read(move |c| {
            Ok(c.query_row(
                &format!(
                    "select {ENDPOINT_COLUMNS} from webhook_endpoints
                     where id = ?1 and account_id = ?2 and livemode = ?3 and deleted_at is null"
                ),
                params![id, scope.account_id, scope.livemode],
                endpoint_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn list_webhook_endpoints(&self, scope: &Scope) -> StoreResult<Vec<WebhookEndpoint>> {
        let scope = scope.clone();
        self.read(move |c| {
            let mut statement = c.prepare_cached(sql_once!(
                "select {ENDPOINT_COLUMNS} from webhook_endpoints
                 where account_id = ?1 and livemode = ?2 and deleted_at is null
                 order by created_at, id"
            ))?;
            let endpoints = statement
                .query_map(params![scope.account_id, scope.livemode], endpoint_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(endpoints)
        })
        .await
    }

    async fn all_webhook_endpoints(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        self.read(move |c| {
            let mut statement = c.prepare(&format!(
                "select {ENDPOINT_COLUMNS} from webhook_endpoints where deleted_at is null order by created_at, id"
            ))?;
            let endpoints = statement
                .query_map([], endpoint_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(endpoints)
        })
        .await
    }

    async fn update_webhook_endpoint(&self, endpoint: WebhookEndpoint) -> StoreResult<bool> {
        self.write(move |c| {
            Ok(c.execute(
                "update webhook_endpoints set url = ?1, description = ?2, events = ?3, format = ?4,
                    enabled = ?5, disabled_reason = ?6, secret = ?7, retired_secrets = ?8,
                    updated_at = ?9
                 where id = ?10 and deleted_at is null",
                params![
                    endpoint.url,
                    endpoint.description,
                    event_types_json(&endpoint)?,
                    endpoint.format.as_str(),
                    endpoint.enabled,
                    endpoint.disabled_reason,
                    endpoint.secret,
                    serde_json::to_string(&endpoint.retired_secrets)?,
                    micros(endpoint.updated_at),
                    endpoint.id,
                ],
            )? == 1)
        })
        .await
    }

    async fn delete_webhook_endpoint(
        &self,
        scope: &Scope,
        id: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.write(move |c| {
            let deleted = c.execute(
                "update webhook_endpoints set deleted_at = ?1, enabled = 0, updated_at = ?1
                 where id = ?2 and account_id = ?3 and livemode = ?4 and deleted_at is null",
                params![micros(now), id, scope.account_id, scope.livemode],
            )? == 1;
            if deleted {
                c.execute(
                    "update webhook_deliveries set status = 'failed', next_attempt_at = null, updated_at = ?1
                     where endpoint_id = ?2 and status = 'pending'",
                    params![micros(now), id],
                )?;
            }
            Ok(deleted)
        })
        .await
    }

    async fn list_events(
        &self,
        scope: &Scope,
        filter: &EventFilter,
        limit: usize,
        starting_after: Option<&str>,
    ) -> StoreResult<Vec<LinkEvent>> {
        let mut sql =
            format!("select {EVENT_COLUMNS} from events where account_id = ?1 and livemode = ?2");
        let mut args = vec![
            Value::Text(scope.account_id.clone()),
            Value::Integer(i64::from(scope.livemode)),
        ];
        if let Some(event_type) = filter.event_type {
            args.push(Value::Text(event_type.as_str().into()));
            sql.push_str(&format!(" and type = ?{}", args.len()));
        }
        if let Some(link_id) = &filter.link_id {
            args.push(Value::Text(link_id.clone()));
            sql.push_str(&format!(" and link_id = ?{}", args.len()));
        }
        if let Some(after) = starting_after {
            args.push(Value::Text(after.to_owned()));
            sql.push_str(&format!(
                " and seq < (select seq from events where id = ?{})",
                args.len()
            ));
        }
        args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" order by seq desc limit ?{}", args.len()));
        self.read(move |c| {
            let mut statement = c.prepare_cached(&sql)?;
            let events = statement
                .query_map(params_from_iter(args), event_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(events)
        })
        .await
    }

    async fn get_event(&self, scope: &Scope, id: &str) -> StoreResult<Option<LinkEvent>> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.read(move |c| {
            Ok(c.query_row(
                &format!(
                    "select {EVENT_COLUMNS} from events where id = ?1 and account_id = ?2 and livemode = ?3"
                ),
                params![id, scope.account_id, scope.livemode],
                event_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn event_deliveries(&self, event_id: &str) -> StoreResult<Vec<Delivery>> {
        let event_id = event_id.to_owned();
        self.read(move |c| {
            // One snapshot for both queries: attempts match their deliveries.
            let snapshot = c.unchecked_transaction()?;
            let c = &*snapshot;
            let mut deliveries = c
                .prepare_cached(
                    "select d.event_id, d.endpoint_id, d.status, d.next_attempt_at, d.created_at
                     from webhook_deliveries d join webhook_endpoints w on w.id = d.endpoint_id
                     where d.event_id = ?1 order by w.created_at, w.id",
                )?
                .query_map([&event_id], |row| {
                    let status: String = row.get(2)?;
                    Ok(Delivery {
                        event_id: row.get(0)?,
                        endpoint_id: row.get(1)?,
                        status: decode("status", &status, DeliveryStatus::parse)
                            .map_err(conversion_error)?,
                        next_attempt_at: opt_from_micros(row.get(3)?)?,
                        attempts: Vec::new(),
                        created_at: from_micros(row.get(4)?)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut attempts = c.prepare_cached(
                "select endpoint_id, attempted_at, status_code, latency_ms, error
                 from webhook_attempts where event_id = ?1 order by id",
            )?;
            let rows = attempts.query_map([&event_id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    Attempt {
                        attempted_at: from_micros(row.get(1)?)?,
                        status_code: row.get(2)?,
                        latency_ms: row.get(3)?,
                        error: row.get(4)?,
                    },
                ))
            })?;
            for row in rows {
                let (endpoint_id, attempt) = row?;
                if let Some(delivery) = deliveries.iter_mut().find(|d| d.endpoint_id == endpoint_id)
                {
                    delivery.attempts.push(attempt);
                }
            }
            drop(attempts);
            snapshot.commit()?;
            Ok(deliveries)
        })
        .await
    }

    async fn schedule_redelivery(
        &self,
        event_id: &str,
        endpoint_ids: &[String],
        now: Timestamp,
    ) -> StoreResult<()> {
        let (event_id, endpoint_ids) = (event_id.to_owned(), endpoint_ids.to_vec());
        self.write(move |c| {
            let mut statement = c.prepare_cached(
                "insert into webhook_deliveries (event_id, endpoint_id, status, attempt_count, next_attempt_at, created_at, updated_at)
                 values (?1, ?2, 'pending', 0, ?3, ?3, ?3)
                 on conflict (event_id, endpoint_id) do update set
                    status = 'pending', attempt_count = 0, next_attempt_at = ?3, updated_at = ?3",
            )?;
            for endpoint_id in endpoint_ids {
                statement.execute(params![event_id, endpoint_id, micros(now)])?;
            }
            Ok(())
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        // One write job: the single writer makes select-then-lease atomic.
        self.write(move |c| {
            let due: Vec<(String, String, u32)> = c
                .prepare_cached(
                    "select d.event_id, d.endpoint_id, d.attempt_count
                     from webhook_deliveries d join webhook_endpoints w on w.id = d.endpoint_id
                     where d.status = 'pending' and d.next_attempt_at <= ?1
                       and (d.lease_expires_at is null or d.lease_expires_at <= ?1)
                       and w.enabled = 1 and w.deleted_at is null
                     order by d.next_attempt_at limit ?2",
                )?
                .query_map(
                    params![micros(now), i64::try_from(limit).unwrap_or(i64::MAX)],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut claimed = Vec::with_capacity(due.len());
            for (event_id, endpoint_id, attempts_made) in due {
                c.prepare_cached(
                    "update webhook_deliveries set lease_expires_at = ?1
                     where event_id = ?2 and endpoint_id = ?3",
                )?
                .execute(params![micros(now + LEASE), event_id, endpoint_id])?;
                let event = c
                    .prepare_cached(sql_once!(
                        "select {EVENT_COLUMNS} from events where id = ?1"
                    ))?
                    .query_row([&event_id], event_from_row)?;
                let endpoint = c
                    .prepare_cached(sql_once!(
                        "select {ENDPOINT_COLUMNS} from webhook_endpoints where id = ?1"
                    ))?
                    .query_row([&endpoint_id], endpoint_from_row)?;
                claimed.push(ClaimedDelivery {
                    event,
                    endpoint,
                    attempts_made,
                });
            }
            Ok(claimed)
        })
        .await
    }

    async fn record_attempts(&self, records: Vec<AttemptRecord>) -> StoreResult<()> {
        // One write job: the batch commits together or not at all.
        self.write(move |c| {
            for AttemptRecord {
                event_id,
                endpoint_id,
                attempt,
                next,
            } in records
            {
                let now = micros(attempt.attempted_at);
                // Kept in the history of a delivery already finished (by
                // another node, after this one's lease ran out); dropped,
                // not failing the batch, when the delivery was purged.
                c.prepare_cached(
                    "insert into webhook_attempts (event_id, endpoint_id, attempted_at, status_code, latency_ms, error)
                     select ?1, ?2, ?3, ?4, ?5, ?6
                     where exists (select 1 from webhook_deliveries where event_id = ?1 and endpoint_id = ?2)",
                )?
                .execute(params![
                    event_id,
                    endpoint_id,
                    now,
                    attempt.status_code,
                    attempt.latency_ms,
                    attempt.error
                ])?;
                let (status, next_attempt_at) = next.delivery_state();
                let next_attempt_at = next_attempt_at.map(micros);
                c.prepare_cached(
                    "update webhook_deliveries set status = ?1, attempt_count = attempt_count + 1,
                        next_attempt_at = ?2, lease_expires_at = null, updated_at = ?3
                     where event_id = ?4 and endpoint_id = ?5 and status = 'pending'",
                )?
                .execute(params![
                    status.as_str(),
                    next_attempt_at,
                    now,
                    event_id,
                    endpoint_id
                ])?;
                if next == NextStep::EndpointGone {
                    c.execute(
                        "update webhook_endpoints set enabled = 0, disabled_reason = ?1, updated_at = ?2
                         where id = ?3",
                        params![GONE_REASON, now, endpoint_id],
                    )?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn next_delivery_due(&self, now: Timestamp) -> StoreResult<Option<Timestamp>> {
        // Asked after every write (the dispatcher is woken by each): kept
        // prepared, not planned again each time. The walk of
        // `webhook_deliveries_due` from its front stops at the first
        // delivery no node holds.
        self.read(move |c| {
            let due: Option<i64> = c
                .prepare_cached(
                    "select d.next_attempt_at
                     from webhook_deliveries d join webhook_endpoints w on w.id = d.endpoint_id
                     where d.status = 'pending' and (d.lease_expires_at is null or d.lease_expires_at <= ?1)
                       and w.enabled = 1 and w.deleted_at is null
                     order by d.next_attempt_at
                     limit 1",
                )?
                .query_row([micros(now)], |row| row.get(0))
                .optional()?;
            Ok(opt_from_micros(due)?)
        })
        .await
    }
}

//! Idempotency keys: claims, answers, recovery and purging.

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::params;

use crate::store::{
    IdempotencyClaim, IdempotencyStore, IdempotencyWindow, Scope, StoreResult, StoredResponse,
};

use super::engine::*;
use super::rows::*;

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim_idempotency_key(
        &self,
        scope: &Scope,
        key: &str,
        fingerprint: &str,
        window: IdempotencyWindow,
    ) -> StoreResult<IdempotencyClaim> {
        let (scope, key, fingerprint) = (scope.clone(), key.to_owned(), fingerprint.to_owned());
        self.write(move |c| {
            c.execute(
                "delete from idempotency_keys where account_id = ?1 and livemode = ?2 and key = ?3 and created_at < ?4",
                params![scope.account_id, scope.livemode, key, micros(window.expired_before)],
            )?;
            let inserted = c.execute(
                "insert into idempotency_keys (account_id, livemode, key, fingerprint, created_at, claimed_at)
                 values (?1, ?2, ?3, ?4, ?5, ?5) on conflict do nothing",
                params![scope.account_id, scope.livemode, key, fingerprint, micros(window.now)],
            )?;
            if inserted == 1 {
                return Ok(IdempotencyClaim::Claimed { committed_event: None });
            }
            let (stored_fingerprint, status, headers, body, claimed_at, committed_event) = c.query_row(
                "select fingerprint, response_status, response_headers, response_body, claimed_at, committed_event
                 from idempotency_keys where account_id = ?1 and livemode = ?2 and key = ?3",
                params![scope.account_id, scope.livemode, key],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Option<u16>>(1)?,
                        row.get::<_, Option<String>>(2)?,
                        row.get::<_, Option<Vec<u8>>>(3)?,
                        row.get::<_, Option<i64>>(4)?,
                        row.get::<_, Option<String>>(5)?,
                    ))
                },
            )?;
            let abandoned = status.is_none()
                && claimed_at.is_none_or(|at| at < micros(window.abandoned_before));
            if abandoned && (stored_fingerprint == fingerprint || committed_event.is_none()) {
                // Taken over: the same request carries on (recalling a
                // committed change), or a new one replaces a claim that
                // changed nothing.
                c.execute(
                    "update idempotency_keys set fingerprint = ?4, claimed_at = ?5
                     where account_id = ?1 and livemode = ?2 and key = ?3",
                    params![scope.account_id, scope.livemode, key, fingerprint, micros(window.now)],
                )?;
                return Ok(IdempotencyClaim::Claimed { committed_event });
            }
            let response = match status {
                Some(status) => Some(StoredResponse {
                    status,
                    headers: json_column(headers)?.unwrap_or_default(),
                    body: body.unwrap_or_default(),
                }),
                None => None,
            };
            Ok(IdempotencyClaim::Existing { fingerprint: stored_fingerprint, response })
        })
        .await
    }

    async fn complete_idempotency_key(
        &self,
        scope: &Scope,
        key: &str,
        response: StoredResponse,
    ) -> StoreResult<()> {
        let (scope, key) = (scope.clone(), key.to_owned());
        self.write(move |c| {
            c.execute(
                "update idempotency_keys set response_status = ?1, response_headers = ?2, response_body = ?3
                 where account_id = ?4 and livemode = ?5 and key = ?6",
                params![
                    response.status,
                    serde_json::to_string(&response.headers)?,
                    response.body,
                    scope.account_id,
                    scope.livemode,
                    key
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn release_idempotency_key(&self, scope: &Scope, key: &str) -> StoreResult<()> {
        let (scope, key) = (scope.clone(), key.to_owned());
        self.write(move |c| {
            c.execute(
                "delete from idempotency_keys where account_id = ?1 and livemode = ?2 and key = ?3
                   and response_status is null and committed_event is null",
                params![scope.account_id, scope.livemode, key],
            )?;
            // A committed change keeps its key; the next retry recalls it.
            c.execute(
                "update idempotency_keys set claimed_at = null where account_id = ?1 and livemode = ?2 and key = ?3
                   and response_status is null",
                params![scope.account_id, scope.livemode, key],
            )?;
            Ok(())
        })
        .await
    }

    async fn abandon_idempotency_claims(&self) -> StoreResult<u64> {
        self.write(|c| {
            Ok(c.execute(
                "update idempotency_keys set claimed_at = null where response_status is null",
                [],
            )? as u64)
        })
        .await
    }

    async fn purge_idempotency_keys(&self, before: Timestamp) -> StoreResult<u64> {
        self.write(move |c| {
            Ok(c.execute(
                "delete from idempotency_keys where created_at < ?1",
                [micros(before)],
            )? as u64)
        })
        .await
    }
}

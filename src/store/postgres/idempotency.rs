//! Idempotency keys: claims, answers, recovery and purging.

use async_trait::async_trait;
use jiff::Timestamp;
use jiff_sqlx::ToSqlx;
use sqlx::Row;
use sqlx::types::Json;

use crate::store::{
    IdempotencyClaim, IdempotencyStore, IdempotencyWindow, Scope, StoreError, StoreResult,
    StoredResponse,
};

use super::engine::*;

#[async_trait]
impl IdempotencyStore for PostgresStore {
    async fn claim_idempotency_key(
        &self,
        scope: &Scope,
        key: &str,
        fingerprint: &str,
        window: IdempotencyWindow,
    ) -> StoreResult<IdempotencyClaim> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "delete from idempotency_keys where account_id = $1 and livemode = $2 and key = $3 and created_at < $4",
        )
        .bind(&scope.account_id)
        .bind(scope.livemode)
        .bind(key)
        .bind(window.expired_before.to_sqlx())
        .execute(&mut *tx)
        .await?;
        // A concurrent claim of the same key waits here for the other
        // transaction, then inserts nothing and reads the winner's row.
        let inserted = sqlx::query(
            "insert into idempotency_keys (account_id, livemode, key, fingerprint, created_at, claimed_at)
             values ($1, $2, $3, $4, $5, $5) on conflict do nothing",
        )
        .bind(&scope.account_id)
        .bind(scope.livemode)
        .bind(key)
        .bind(fingerprint)
        .bind(window.now.to_sqlx())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let claim = if inserted == 1 {
            IdempotencyClaim::Claimed {
                committed_event: None,
            }
        } else {
            // `for update`: two takeovers of one abandoned claim cannot both win.
            let row = sqlx::query(
                "select fingerprint, response_status, response_headers, response_body, claimed_at, committed_event
                 from idempotency_keys where account_id = $1 and livemode = $2 and key = $3 for update",
            )
            .bind(&scope.account_id)
            .bind(scope.livemode)
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
            let status: Option<i32> = row.try_get("response_status")?;
            let stored_fingerprint: String = row.try_get("fingerprint")?;
            let committed_event: Option<String> = row.try_get("committed_event")?;
            let claimed_at = row
                .try_get::<Option<jiff_sqlx::Timestamp>, _>("claimed_at")?
                .map(|t| t.to_jiff());
            let abandoned =
                status.is_none() && claimed_at.is_none_or(|at| at < window.abandoned_before);
            if abandoned && (stored_fingerprint == fingerprint || committed_event.is_none()) {
                sqlx::query(
                    "update idempotency_keys set fingerprint = $4, claimed_at = $5
                     where account_id = $1 and livemode = $2 and key = $3",
                )
                .bind(&scope.account_id)
                .bind(scope.livemode)
                .bind(key)
                .bind(fingerprint)
                .bind(window.now.to_sqlx())
                .execute(&mut *tx)
                .await?;
                IdempotencyClaim::Claimed { committed_event }
            } else {
                let response = match status {
                    Some(status) => Some(StoredResponse {
                        status: u16::try_from(status).map_err(|_| {
                            StoreError::Internal("stored status out of range".into())
                        })?,
                        headers: row
                            .try_get::<Option<Json<Vec<(String, String)>>>, _>("response_headers")?
                            .map(|j| j.0)
                            .unwrap_or_default(),
                        body: row
                            .try_get::<Option<Vec<u8>>, _>("response_body")?
                            .unwrap_or_default(),
                    }),
                    None => None,
                };
                IdempotencyClaim::Existing {
                    fingerprint: stored_fingerprint,
                    response,
                }
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    async fn complete_idempotency_key(
        &self,
        scope: &Scope,
        key: &str,
        response: StoredResponse,
    ) -> StoreResult<()> {
        sqlx::query(
            "update idempotency_keys set response_status = $1, response_headers = $2, response_body = $3
             where account_id = $4 and livemode = $5 and key = $6",
        )
        .bind(i32::from(response.status))
        .bind(Json(&response.headers))
        .bind(&response.body)
        .bind(&scope.account_id)
        .bind(scope.livemode)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, scope: &Scope, key: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "delete from idempotency_keys where account_id = $1 and livemode = $2 and key = $3
               and response_status is null and committed_event is null",
        )
        .bind(&scope.account_id)
        .bind(scope.livemode)
        .bind(key)
        .execute(&mut *tx)
        .await?;
        // A committed change keeps its key; the next retry recalls it.
        sqlx::query(
            "update idempotency_keys set claimed_at = null
             where account_id = $1 and livemode = $2 and key = $3 and response_status is null",
        )
        .bind(&scope.account_id)
        .bind(scope.livemode)
        .bind(key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn abandon_idempotency_claims(&self) -> StoreResult<u64> {
        // Other nodes may be running requests: their claims are not ours to
        // abandon. The lease frees claims of nodes that died.
        Ok(0)
    }

    async fn purge_idempotency_keys(&self, before: Timestamp) -> StoreResult<u64> {
        Ok(
            sqlx::query("delete from idempotency_keys where created_at < $1")
                .bind(before.to_sqlx())
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

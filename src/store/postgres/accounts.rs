//! Accounts, API keys, processor accounts and server secrets.

use async_trait::async_trait;
use jiff::Timestamp;
use jiff_sqlx::ToSqlx;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Row};

use crate::store::{Account, AccountStore, ApiKeyRecord, ProcessorAccount, StoreResult};

use super::engine::*;
use super::rows::*;

#[async_trait]
impl AccountStore for PostgresStore {
    async fn count_accounts(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("select count(*) from accounts")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn ensure_account(&self, account: Account) -> StoreResult<Account> {
        sqlx::query(
            "insert into accounts (id, name, suspended, created_at) values ($1, $2, $3, $4)
             on conflict (name) do nothing",
        )
        .bind(&account.id)
        .bind(&account.name)
        .bind(account.suspended)
        .bind(account.created_at.to_sqlx())
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(
            "select id, name, suspended, created_at, branding from accounts where name = $1",
        )
        .bind(&account.name)
        .fetch_one(&self.pool)
        .await?;
        Ok(account_from_row(&row)?)
    }

    async fn set_account_suspended(&self, name: &str, suspended: bool) -> StoreResult<bool> {
        let result = sqlx::query("update accounts set suspended = $1 where name = $2")
            .bind(suspended)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn set_account_branding(
        &self,
        name: &str,
        branding: &crate::domain::Branding,
    ) -> StoreResult<bool> {
        let result = sqlx::query("update accounts set branding = $2 where name = $1")
            .bind(name)
            .bind(sqlx::types::Json(branding))
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn insert_api_key(&self, key: ApiKeyRecord) -> StoreResult<()> {
        sqlx::query(
            "insert into api_keys (id, account_id, livemode, key_hash, key_prefix, created_at)
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.id)
        .bind(&key.account_id)
        .bind(key.livemode)
        .bind(&key.key_hash)
        .bind(&key.key_prefix)
        .bind(key.created_at.to_sqlx())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_account(&self, id: &str) -> StoreResult<Option<Account>> {
        let row = sqlx::query(
            "select id, name, suspended, created_at, branding from accounts where id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(account_from_row).transpose()?)
    }

    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<(ApiKeyRecord, Account)>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "{KEY_WITH_ACCOUNT} where k.key_hash = $1"
        )))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(key_with_account).transpose()?)
    }

    async fn get_api_key(&self, id: &str) -> StoreResult<Option<(ApiKeyRecord, Account)>> {
        let row = sqlx::query(AssertSqlSafe(format!("{KEY_WITH_ACCOUNT} where k.id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(key_with_account).transpose()?)
    }

    async fn list_api_keys(&self, account_id: &str) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{KEY_WITH_ACCOUNT} where k.account_id = $1 order by k.created_at, k.id"
        )))
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| key_with_account(row).map(|(key, _)| key))
            .collect::<Result<Vec<_>, _>>()?)
    }

    async fn expire_api_key(&self, id: &str, at: Timestamp) -> StoreResult<bool> {
        let exists = sqlx::query("select 1 from api_keys where id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        sqlx::query(
            "update api_keys set expires_at = $2
             where id = $1 and (expires_at is null or expires_at > $2)",
        )
        .bind(id)
        .bind(at.to_sqlx())
        .execute(&self.pool)
        .await?;
        Ok(exists)
    }

    async fn touch_api_key(&self, id: &str, at: Timestamp) -> StoreResult<()> {
        sqlx::query("update api_keys set last_used_at = $2 where id = $1")
            .bind(id)
            .bind(at.to_sqlx())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn processor_account(
        &self,
        account_id: &str,
        livemode: bool,
    ) -> StoreResult<Option<ProcessorAccount>> {
        let row = sqlx::query(
            "select processor, sealed_config, updated_at from processor_accounts
             where account_id = $1 and livemode = $2",
        )
        .bind(account_id)
        .bind(livemode)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(ProcessorAccount {
            processor: row.try_get("processor")?,
            sealed_config: row.try_get("sealed_config")?,
            updated_at: ts(&row, "updated_at")?,
        }))
    }

    async fn set_processor_account(
        &self,
        account_id: &str,
        livemode: bool,
        processor: Option<ProcessorAccount>,
    ) -> StoreResult<()> {
        match processor {
            Some(p) => sqlx::query(
                "insert into processor_accounts (account_id, livemode, processor, sealed_config, updated_at)
                 values ($1, $2, $3, $4, $5)
                 on conflict (account_id, livemode) do update set processor = excluded.processor,
                     sealed_config = excluded.sealed_config, updated_at = excluded.updated_at",
            )
            .bind(account_id)
            .bind(livemode)
            .bind(&p.processor)
            .bind(&p.sealed_config)
            .bind(p.updated_at.to_sqlx())
            .execute(&self.pool)
            .await?,
            None => sqlx::query(
                "delete from processor_accounts where account_id = $1 and livemode = $2",
            )
            .bind(account_id)
            .bind(livemode)
            .execute(&self.pool)
            .await?,
        };
        Ok(())
    }

    async fn account_by_name(&self, name: &str) -> StoreResult<Option<Account>> {
        let row = sqlx::query(
            "select id, name, suspended, created_at, branding from accounts where name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(account_from_row).transpose()?)
    }

    async fn server_secret(&self, name: &str, candidate: &str) -> StoreResult<String> {
        let row = sqlx::query(
            "with inserted as (
                 insert into server_secrets (name, value) values ($1, $2)
                 on conflict do nothing returning value)
             select value from inserted
             union all select value from server_secrets where name = $1
             limit 1",
        )
        .bind(name)
        .bind(candidate)
        .fetch_optional(&self.pool)
        .await?;
        let row = match row {
            Some(row) => row,
            None => {
                sqlx::query("select value from server_secrets where name = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        Ok(row.try_get("value")?)
    }
}

/// A key joined to its account; [`key_with_account`] reads its rows.
const KEY_WITH_ACCOUNT: &str =
    "select k.id as key_id, k.account_id, k.livemode, k.key_hash, k.key_prefix,
        k.created_at as key_created_at, k.expires_at, k.last_used_at,
        a.id, a.name, a.suspended, a.created_at, a.branding
     from api_keys k join accounts a on a.id = k.account_id";

fn key_with_account(row: &PgRow) -> Result<(ApiKeyRecord, Account), sqlx::Error> {
    let key = ApiKeyRecord {
        id: row.try_get("key_id")?,
        account_id: row.try_get("account_id")?,
        livemode: row.try_get("livemode")?,
        key_hash: row.try_get("key_hash")?,
        key_prefix: row.try_get("key_prefix")?,
        created_at: ts(row, "key_created_at")?,
        expires_at: opt_ts(row, "expires_at")?,
        last_used_at: opt_ts(row, "last_used_at")?,
    };
    Ok((key, account_from_row(row)?))
}

//! Accounts, API keys, processor accounts and server secrets.

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, Row, params};

use crate::store::{Account, AccountStore, ApiKeyRecord, ProcessorAccount, StoreResult};

use super::engine::*;
use super::rows::*;

#[async_trait]
impl AccountStore for SqliteStore {
    async fn count_accounts(&self) -> StoreResult<i64> {
        self.read(|c| Ok(c.query_row("select count(*) from accounts", [], |row| row.get(0))?))
            .await
    }

    async fn ensure_account(&self, account: Account) -> StoreResult<Account> {
        self.write(move |c| {
            c.execute(
                "insert into accounts (id, name, suspended, created_at) values (?1, ?2, ?3, ?4)
                 on conflict (name) do nothing",
                params![
                    account.id,
                    account.name,
                    account.suspended,
                    micros(account.created_at)
                ],
            )?;
            let stored = c.query_row(
                "select id, name, suspended, created_at, branding from accounts where name = ?1",
                [&account.name],
                account_from_row,
            )?;
            Ok(stored)
        })
        .await
    }

    async fn set_account_suspended(&self, name: &str, suspended: bool) -> StoreResult<bool> {
        let name = name.to_owned();
        self.write(move |c| {
            Ok(c.execute(
                "update accounts set suspended = ?1 where name = ?2",
                params![suspended, name],
            )? == 1)
        })
        .await
    }

    async fn set_account_branding(
        &self,
        name: &str,
        branding: &crate::domain::Branding,
    ) -> StoreResult<bool> {
        let name = name.to_owned();
        let branding = serde_json::to_string(branding)?;
        self.write(move |c| {
            Ok(c.execute(
                "update accounts set branding = ?2 where name = ?1",
                params![name, branding],
            )? == 1)
        })
        .await
    }

    async fn insert_api_key(&self, key: ApiKeyRecord) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                "insert into api_keys (id, account_id, livemode, key_hash, key_prefix, created_at)
                 values (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key.id,
                    key.account_id,
                    key.livemode,
                    key.key_hash,
                    key.key_prefix,
                    micros(key.created_at)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_account(&self, id: &str) -> StoreResult<Option<Account>> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "select id, name, suspended, created_at, branding from accounts where id = ?1",
                [id],
                account_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<(ApiKeyRecord, Account)>> {
        let key_hash = key_hash.to_owned();
        self.read_row(move |c| {
            Ok(
                c.prepare_cached(sql_once!("{KEY_WITH_ACCOUNT} where k.key_hash = ?1"))?
                    .query_row([key_hash], key_with_account)
                    .optional()?,
            )
        })
        .await
    }

    async fn get_api_key(&self, id: &str) -> StoreResult<Option<(ApiKeyRecord, Account)>> {
        let id = id.to_owned();
        self.read_row(move |c| {
            Ok(
                c.prepare_cached(sql_once!("{KEY_WITH_ACCOUNT} where k.id = ?1"))?
                    .query_row([id], key_with_account)
                    .optional()?,
            )
        })
        .await
    }

    async fn list_api_keys(&self, account_id: &str) -> StoreResult<Vec<ApiKeyRecord>> {
        let account_id = account_id.to_owned();
        self.read(move |c| {
            let mut statement = c.prepare(&format!(
                "{KEY_WITH_ACCOUNT} where k.account_id = ?1 order by k.created_at, k.id"
            ))?;
            let keys = statement
                .query_map([account_id], |row| Ok(key_with_account(row)?.0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(keys)
        })
        .await
    }

    async fn expire_api_key(&self, id: &str, at: Timestamp) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            let exists = c
                .query_row("select 1 from api_keys where id = ?1", [&id], |_| Ok(()))
                .optional()?
                .is_some();
            c.execute(
                "update api_keys set expires_at = ?2
                 where id = ?1 and (expires_at is null or expires_at > ?2)",
                params![id, micros(at)],
            )?;
            Ok(exists)
        })
        .await
    }

    async fn touch_api_key(&self, id: &str, at: Timestamp) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |c| {
            c.execute(
                "update api_keys set last_used_at = ?2 where id = ?1",
                params![id, micros(at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn processor_account(
        &self,
        account_id: &str,
        livemode: bool,
    ) -> StoreResult<Option<ProcessorAccount>> {
        let account_id = account_id.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "select processor, sealed_config, updated_at from processor_accounts
                 where account_id = ?1 and livemode = ?2",
                params![account_id, livemode],
                |row| {
                    Ok(ProcessorAccount {
                        processor: row.get(0)?,
                        sealed_config: row.get(1)?,
                        updated_at: from_micros(row.get(2)?)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn set_processor_account(
        &self,
        account_id: &str,
        livemode: bool,
        processor: Option<ProcessorAccount>,
    ) -> StoreResult<()> {
        let account_id = account_id.to_owned();
        self.write(move |c| {
            match processor {
                Some(p) => c.execute(
                    "insert into processor_accounts (account_id, livemode, processor, sealed_config, updated_at)
                     values (?1, ?2, ?3, ?4, ?5)
                     on conflict (account_id, livemode) do update set processor = excluded.processor,
                         sealed_config = excluded.sealed_config, updated_at = excluded.updated_at",
                    params![account_id, livemode, p.processor, p.sealed_config, micros(p.updated_at)],
                )?,
                None => c.execute(
                    "delete from processor_accounts where account_id = ?1 and livemode = ?2",
                    params![account_id, livemode],
                )?,
            };
            Ok(())
        })
        .await
    }

    async fn account_by_name(&self, name: &str) -> StoreResult<Option<Account>> {
        let name = name.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "select id, name, suspended, created_at, branding from accounts where name = ?1",
                [name],
                account_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn server_secret(&self, name: &str, candidate: &str) -> StoreResult<String> {
        let (name, candidate) = (name.to_owned(), candidate.to_owned());
        self.write(move |c| {
            c.execute(
                "insert into server_secrets (name, value) values (?1, ?2) on conflict do nothing",
                params![name, candidate],
            )?;
            Ok(c.query_row(
                "select value from server_secrets where name = ?1",
                [name],
                |row| row.get(0),
            )?)
        })
        .await
    }
}

/// A key joined to its account; [`key_with_account`] reads its rows.
const KEY_WITH_ACCOUNT: &str = "select k.id, k.account_id, k.livemode, k.key_hash, k.key_prefix,
        k.created_at, k.expires_at, k.last_used_at, a.id, a.name, a.suspended, a.created_at,
        a.branding
     from api_keys k join accounts a on a.id = k.account_id";

fn key_with_account(row: &Row<'_>) -> rusqlite::Result<(ApiKeyRecord, Account)> {
    let key = ApiKeyRecord {
        id: row.get(0)?,
        account_id: row.get(1)?,
        livemode: row.get(2)?,
        key_hash: row.get(3)?,
        key_prefix: row.get(4)?,
        created_at: from_micros(row.get(5)?)?,
        expires_at: opt_from_micros(row.get(6)?)?,
        last_used_at: opt_from_micros(row.get(7)?)?,
    };
    let account = Account {
        id: row.get(8)?,
        name: row.get(9)?,
        suspended: row.get(10)?,
        created_at: from_micros(row.get(11)?)?,
        branding: json_column(row.get(12)?)?.unwrap_or_default(),
    };
    Ok((key, account))
}

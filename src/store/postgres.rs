//! The PostgreSQL store: many stateless paylink nodes on one database.
//!
//! Every transition is a conditional `update ... where version = $expected`
//! plus its event row in one transaction, so racing nodes cannot both win.
//! The expiry sweep claims rows with `for update skip locked`, so several
//! sweepers share the due links instead of fighting over them.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use jiff_sqlx::ToSqlx;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Row};

use super::{
    Account, ApiKeyRecord, Applied, EventFilter, IdempotencyClaim, IdempotencyMark,
    IdempotencyWindow, LinkFilter, Page, ProcessorAccount, Scope, StatsRow, Store, StoreError,
    StoreResult, StoredResponse,
};
use crate::domain::webhook::delivery::{
    Attempt, ClaimedDelivery, Delivery, DeliveryStatus, GONE_REASON, LEASE, NextStep,
};
use crate::domain::webhook::endpoint::{PayloadFormat, RetiredSecret, WebhookEndpoint};
use crate::domain::{
    AttemptState, Currency, EventType, Link, LinkEvent, LinkStatus, PaymentAttempt, PaymentType,
    Refund, RefundState, Transition,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/postgres/migrations");

/// How long a request waits for a pooled connection before answering 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        let unavailable = match &error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // Class 08: connection exceptions; 57P0x: the server is shutting
            // down or starting; 53300: too many connections.
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08") || code.starts_with("57P") || code == "53300"
            }),
            _ => false,
        };
        if unavailable {
            StoreError::Unavailable(error.to_string())
        } else {
            StoreError::Internal(error.to_string())
        }
    }
}

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        // sqlx takes an advisory lock, so nodes starting together migrate once.
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

const LINK_COLUMNS: &str = "id, account_id, livemode, slug, amount, currency, description, payment_type, \
     customer, line_items, order_reference, metadata, success_url, cancel_url, status, expires_at, \
     created_at, updated_at, cancelled_at, cancellation_reason, paid_at, payment_id, version, amount_refunded";

fn internal(message: impl Into<String>) -> sqlx::Error {
    sqlx::Error::Decode(message.into().into())
}

fn ts(row: &PgRow, column: &str) -> sqlx::Result<Timestamp> {
    Ok(row.try_get::<jiff_sqlx::Timestamp, _>(column)?.to_jiff())
}

fn opt_ts(row: &PgRow, column: &str) -> sqlx::Result<Option<Timestamp>> {
    Ok(row
        .try_get::<Option<jiff_sqlx::Timestamp>, _>(column)?
        .map(|t| t.to_jiff()))
}

fn link_from_row(row: &PgRow) -> sqlx::Result<Link> {
    let currency: String = row.try_get("currency")?;
    let status: String = row.try_get("status")?;
    Ok(Link {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        livemode: row.try_get("livemode")?,
        slug: row.try_get("slug")?,
        amount: row.try_get("amount")?,
        currency: Currency::parse(&currency).map_err(internal)?,
        description: row.try_get("description")?,
        payment_type: PaymentType::OneTime,
        customer: row.try_get::<Option<Json<_>>, _>("customer")?.map(|j| j.0),
        line_items: row
            .try_get::<Option<Json<_>>, _>("line_items")?
            .map(|j| j.0),
        order_reference: row.try_get("order_reference")?,
        metadata: row.try_get::<Json<_>, _>("metadata")?.0,
        success_url: row.try_get("success_url")?,
        cancel_url: row.try_get("cancel_url")?,
        status: LinkStatus::parse(&status)
            .ok_or_else(|| internal(format!("unknown status {status}")))?,
        expires_at: ts(row, "expires_at")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
        cancelled_at: opt_ts(row, "cancelled_at")?,
        cancellation_reason: row.try_get("cancellation_reason")?,
        paid_at: opt_ts(row, "paid_at")?,
        payment_id: row.try_get("payment_id")?,
        amount_refunded: row.try_get("amount_refunded")?,
        version: row.try_get("version")?,
    })
}

fn event_from_row(row: &PgRow) -> sqlx::Result<LinkEvent> {
    let event_type: String = row.try_get("type")?;
    Ok(LinkEvent {
        id: row.try_get("id")?,
        event_type: EventType::parse(&event_type)
            .ok_or_else(|| internal(format!("unknown event type {event_type}")))?,
        created_at: ts(row, "created_at")?,
        actor: row.try_get::<Json<_>, _>("actor")?.0,
        reason: row.try_get("reason")?,
        link: row.try_get::<Json<_>, _>("link")?.0,
        previous_attributes: row
            .try_get::<Option<Json<serde_json::Value>>, _>("previous_attributes")?
            .map(|j| j.0),
        refund: row.try_get::<Option<Json<_>>, _>("refund")?.map(|j| j.0),
    })
}

fn account_from_row(row: &PgRow) -> sqlx::Result<Account> {
    Ok(Account {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        suspended: row.try_get("suspended")?,
        created_at: ts(row, "created_at")?,
    })
}

async fn insert_event(tx: &mut sqlx::PgConnection, event: &LinkEvent) -> StoreResult<()> {
    sqlx::query(
        "insert into events (id, link_id, account_id, livemode, type, created_at, actor, reason, link, previous_attributes, refund)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&event.id)
    .bind(&event.link.id)
    .bind(&event.link.account_id)
    .bind(event.link.livemode)
    .bind(event.event_type.as_str())
    .bind(event.created_at.to_sqlx())
    .bind(Json(&event.actor))
    .bind(&event.reason)
    .bind(Json(&event.link))
    .bind(event.previous_attributes.as_ref().map(Json))
    .bind(event.refund.as_ref().map(Json))
    .execute(&mut *tx)
    .await?;
    // The event's deliveries, in the same transaction: an event is never
    // stored without the deliveries it owes.
    sqlx::query(
        "insert into webhook_deliveries (event_id, endpoint_id, status, attempt_count, next_attempt_at, created_at, updated_at)
         select $1, w.id, 'pending', 0, $4, $4, $4 from webhook_endpoints w
         where w.account_id = $2 and w.livemode = $3 and w.enabled and w.deleted_at is null
           and (w.events is null or $5 = any(w.events))",
    )
    .bind(&event.id)
    .bind(&event.link.account_id)
    .bind(event.link.livemode)
    .bind(event.created_at.to_sqlx())
    .bind(event.event_type.as_str())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

const EVENT_COLUMNS: &str =
    "id, type, created_at, actor, reason, link, previous_attributes, refund";

const ENDPOINT_COLUMNS: &str = "id, account_id, livemode, url, description, events, format, enabled, \
     disabled_reason, secret, retired_secrets, created_at, updated_at";

fn endpoint_from_row(row: &PgRow) -> sqlx::Result<WebhookEndpoint> {
    let format: String = row.try_get("format")?;
    let events: Option<Vec<String>> = row.try_get("events")?;
    Ok(WebhookEndpoint {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        livemode: row.try_get("livemode")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        events: events
            .map(|names| {
                names
                    .iter()
                    .map(|name| {
                        EventType::parse(name)
                            .ok_or_else(|| internal(format!("unknown event type {name}")))
                    })
                    .collect::<sqlx::Result<Vec<_>>>()
            })
            .transpose()?,
        format: PayloadFormat::parse(&format)
            .ok_or_else(|| internal(format!("unknown format {format}")))?,
        enabled: row.try_get("enabled")?,
        disabled_reason: row.try_get("disabled_reason")?,
        secret: row.try_get("secret")?,
        retired_secrets: row
            .try_get::<Json<Vec<RetiredSecret>>, _>("retired_secrets")?
            .0,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

fn event_type_names(endpoint: &WebhookEndpoint) -> Option<Vec<String>> {
    endpoint
        .events
        .as_ref()
        .map(|types| types.iter().map(|t| t.as_str().to_owned()).collect())
}

/// The conditional update plus the event, inside the caller's transaction.
async fn write_transition(
    tx: &mut sqlx::PgConnection,
    transition: &Transition,
) -> StoreResult<Applied> {
    let link = &transition.link;
    let changed = sqlx::query(
        "update payment_links set status = $1, description = $2, metadata = $3, expires_at = $4,
            updated_at = $5, cancelled_at = $6, cancellation_reason = $7, paid_at = $8,
            payment_id = $9, version = $10, amount_refunded = $13
         where id = $11 and version = $12",
    )
    .bind(link.status.as_str())
    .bind(&link.description)
    .bind(Json(&link.metadata))
    .bind(link.expires_at.to_sqlx())
    .bind(link.updated_at.to_sqlx())
    .bind(link.cancelled_at.map(|t| t.to_sqlx()))
    .bind(&link.cancellation_reason)
    .bind(link.paid_at.map(|t| t.to_sqlx()))
    .bind(&link.payment_id)
    .bind(link.version)
    .bind(&link.id)
    .bind(transition.expected_version)
    .bind(link.amount_refunded)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed == 0 {
        return Ok(Applied::StaleVersion);
    }
    if transition.attempt.is_some() || transition.refund.is_some() {
        // Its own savepoint: an attempt or refund settled already undoes
        // the link's update, not the caller's whole transaction.
        sqlx::query("savepoint transition")
            .execute(&mut *tx)
            .await?;
        let mut stale = false;
        if let Some(attempt) = &transition.attempt {
            stale |= write_attempt(tx, attempt).await? == 0;
        }
        if let Some(refund) = &transition.refund
            && !stale
        {
            stale |= write_refund(tx, refund).await? == 0;
        }
        if stale {
            sqlx::query("rollback to savepoint transition")
                .execute(&mut *tx)
                .await?;
            return Ok(Applied::StaleVersion);
        }
        sqlx::query("release savepoint transition")
            .execute(&mut *tx)
            .await?;
    }
    insert_event(tx, &transition.event).await?;
    Ok(Applied::Yes)
}

const ATTEMPT_COLUMNS: &str = "id, link_id, account_id, livemode, amount, currency, processor, state, \
     payment_id, failure_message, card_brand, card_last4, created_at, updated_at, processor_reference";

/// Inserts a new pending attempt, or settles a stored one that is still
/// pending; returns the rows written (0: it was settled already).
async fn write_attempt(tx: &mut sqlx::PgConnection, attempt: &PaymentAttempt) -> StoreResult<u64> {
    Ok(sqlx::query(AssertSqlSafe(format!(
        "insert into payment_attempts ({ATTEMPT_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         on conflict (id) do update set state = excluded.state, payment_id = excluded.payment_id,
             failure_message = excluded.failure_message, updated_at = excluded.updated_at,
             processor_reference = coalesce(excluded.processor_reference, payment_attempts.processor_reference)
         where payment_attempts.state = 'pending'
            or (payment_attempts.state = 'failed' and excluded.state = 'succeeded')"
    )))
    .bind(&attempt.id)
    .bind(&attempt.link_id)
    .bind(&attempt.account_id)
    .bind(attempt.livemode)
    .bind(attempt.amount)
    .bind(attempt.currency.code())
    .bind(&attempt.processor)
    .bind(attempt.state.as_str())
    .bind(&attempt.payment_id)
    .bind(&attempt.failure_message)
    .bind(&attempt.card_brand)
    .bind(&attempt.card_last4)
    .bind(attempt.created_at.to_sqlx())
    .bind(attempt.updated_at.to_sqlx())
    .bind(&attempt.processor_reference)
    .execute(&mut *tx)
    .await?
    .rows_affected())
}

/// Inserts a new pending refund, or settles a stored one that is still
/// pending; returns the rows written (0: it was settled already).
async fn write_refund(tx: &mut sqlx::PgConnection, refund: &Refund) -> StoreResult<u64> {
    Ok(sqlx::query(
        "insert into refunds (id, link_id, state, created_at, body) values ($1, $2, $3, $4, $5)
         on conflict (id) do update set state = excluded.state, body = excluded.body
         where refunds.state = 'pending'",
    )
    .bind(&refund.id)
    .bind(&refund.link_id)
    .bind(refund.state.as_str())
    .bind(refund.created_at.to_sqlx())
    .bind(Json(refund))
    .execute(&mut *tx)
    .await?
    .rows_affected())
}

fn refund_from_row(row: &PgRow) -> sqlx::Result<Refund> {
    Ok(row.try_get::<Json<Refund>, _>("body")?.0)
}

fn attempt_from_row(row: &PgRow) -> sqlx::Result<PaymentAttempt> {
    let currency: String = row.try_get("currency")?;
    let state: String = row.try_get("state")?;
    Ok(PaymentAttempt {
        id: row.try_get("id")?,
        link_id: row.try_get("link_id")?,
        account_id: row.try_get("account_id")?,
        livemode: row.try_get("livemode")?,
        amount: row.try_get("amount")?,
        currency: Currency::parse(&currency).map_err(internal)?,
        processor: row.try_get("processor")?,
        state: AttemptState::parse(&state)
            .ok_or_else(|| internal(format!("unknown attempt state {state}")))?,
        payment_id: row.try_get("payment_id")?,
        processor_reference: row.try_get("processor_reference")?,
        failure_message: row.try_get("failure_message")?,
        card_brand: row.try_get("card_brand")?,
        card_last4: row.try_get("card_last4")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

/// Marks the idempotency key a change was made under with its event, in
/// the change's transaction.
async fn mark_idempotency_key(
    tx: &mut sqlx::PgConnection,
    mark: Option<&IdempotencyMark>,
    event_id: &str,
) -> StoreResult<()> {
    if let Some(mark) = mark {
        sqlx::query(
            "update idempotency_keys set committed_event = $4
             where account_id = $1 and livemode = $2 and key = $3 and response_status is null",
        )
        .bind(&mark.scope.account_id)
        .bind(mark.scope.livemode)
        .bind(&mark.key)
        .bind(event_id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Appends the filter's conditions on alias `l`.
fn push_filter(query: &mut QueryBuilder<Postgres>, filter: &LinkFilter, now: Timestamp) {
    if let Some(status) = filter.status {
        match status {
            LinkStatus::Active => {
                query
                    .push(" and l.status = 'active' and l.expires_at > ")
                    .push_bind(now.to_sqlx());
            }
            LinkStatus::Expired => {
                query
                    .push(" and (l.status = 'expired' or (l.status = 'active' and l.expires_at <= ")
                    .push_bind(now.to_sqlx())
                    .push("))");
            }
            LinkStatus::Processing | LinkStatus::Paid | LinkStatus::Cancelled => {
                query.push(" and l.status = ").push_bind(status.as_str());
            }
        }
    }
    if let Some(after) = filter.created_after {
        query
            .push(" and l.created_at > ")
            .push_bind(after.to_sqlx());
    }
    if let Some(before) = filter.created_before {
        query
            .push(" and l.created_at < ")
            .push_bind(before.to_sqlx());
    }
    if let Some(reference) = &filter.order_reference {
        query
            .push(" and l.order_reference = ")
            .push_bind(reference.clone());
    }
    if let Some(payment_id) = &filter.payment_id {
        query
            .push(" and l.payment_id = ")
            .push_bind(payment_id.clone());
    }
    if let Some(product_id) = &filter.product_id {
        query
            .push(" and l.line_items @> jsonb_build_array(jsonb_build_object('product_id', ")
            .push_bind(product_id.clone())
            .push("::text))");
    }
    for (key, value) in &filter.metadata {
        query
            .push(" and l.metadata ->> ")
            .push_bind(key.clone())
            .push(" = ")
            .push_bind(value.clone());
    }
}

#[async_trait]
impl Store for PostgresStore {
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
        let row =
            sqlx::query("select id, name, suspended, created_at from accounts where name = $1")
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
        let row = sqlx::query("select id, name, suspended, created_at from accounts where id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(account_from_row).transpose()?)
    }

    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<(ApiKeyRecord, Account)>> {
        let row = sqlx::query(
            "select k.id as key_id, k.account_id, k.livemode, k.key_hash, k.key_prefix, k.created_at as key_created_at,
                    a.id, a.name, a.suspended, a.created_at
             from api_keys k join accounts a on a.id = k.account_id
             where k.key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let key = ApiKeyRecord {
            id: row.try_get("key_id")?,
            account_id: row.try_get("account_id")?,
            livemode: row.try_get("livemode")?,
            key_hash: row.try_get("key_hash")?,
            key_prefix: row.try_get("key_prefix")?,
            created_at: ts(&row, "key_created_at")?,
        };
        Ok(Some((key, account_from_row(&row)?)))
    }

    async fn insert_link(
        &self,
        link: Link,
        event: LinkEvent,
        mark: Option<IdempotencyMark>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(AssertSqlSafe(format!(
            "insert into payment_links ({LINK_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)"
        )))
        .bind(&link.id)
        .bind(&link.account_id)
        .bind(link.livemode)
        .bind(&link.slug)
        .bind(link.amount)
        .bind(link.currency.code())
        .bind(&link.description)
        .bind("one_time")
        .bind(link.customer.as_ref().map(Json))
        .bind(link.line_items.as_ref().map(Json))
        .bind(&link.order_reference)
        .bind(Json(&link.metadata))
        .bind(&link.success_url)
        .bind(&link.cancel_url)
        .bind(link.status.as_str())
        .bind(link.expires_at.to_sqlx())
        .bind(link.created_at.to_sqlx())
        .bind(link.updated_at.to_sqlx())
        .bind(link.cancelled_at.map(|t| t.to_sqlx()))
        .bind(&link.cancellation_reason)
        .bind(link.paid_at.map(|t| t.to_sqlx()))
        .bind(&link.payment_id)
        .bind(link.version)
        .bind(link.amount_refunded)
        .execute(&mut *tx)
        .await?;
        insert_event(&mut tx, &event).await?;
        mark_idempotency_key(&mut tx, mark.as_ref(), &event.id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_link(&self, scope: &Scope, id: &str) -> StoreResult<Option<Link>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "select {LINK_COLUMNS} from payment_links where id = $1 and account_id = $2 and livemode = $3"
        )))
        .bind(id)
        .bind(&scope.account_id)
        .bind(scope.livemode)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(link_from_row).transpose()?)
    }

    async fn get_link_by_slug(&self, slug: &str) -> StoreResult<Option<Link>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "select {LINK_COLUMNS} from payment_links where slug = $1"
        )))
        .bind(slug)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(link_from_row).transpose()?)
    }

    async fn list_links(
        &self,
        scope: &Scope,
        filter: &LinkFilter,
        page: &Page,
        now: Timestamp,
    ) -> StoreResult<Vec<Link>> {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "select {LINK_COLUMNS} from payment_links l where l.account_id = "
        ));
        query
            .push_bind(scope.account_id.clone())
            .push(" and l.livemode = ")
            .push_bind(scope.livemode);
        push_filter(&mut query, filter, now);
        if let Some((created_at, id)) = &page.starting_after {
            query
                .push(" and (l.created_at, l.id) < (")
                .push_bind(created_at.to_sqlx())
                .push(", ")
                .push_bind(id.clone())
                .push(")");
        }
        query
            .push(" order by l.created_at desc, l.id desc limit ")
            .push_bind(i64::try_from(page.limit).unwrap_or(i64::MAX));
        let rows = query.build().fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(link_from_row)
            .collect::<sqlx::Result<Vec<_>>>()?)
    }

    async fn apply_transition(
        &self,
        transition: Transition,
        mark: Option<IdempotencyMark>,
    ) -> StoreResult<Applied> {
        let mut tx = self.pool.begin().await?;
        let applied = write_transition(&mut tx, &transition).await?;
        if applied == Applied::Yes {
            mark_idempotency_key(&mut tx, mark.as_ref(), &transition.event.id).await?;
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(applied)
    }

    async fn event_by_id(&self, id: &str) -> StoreResult<Option<LinkEvent>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "select {EVENT_COLUMNS} from events where id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(event_from_row).transpose()?)
    }

    async fn link_events(&self, link_id: &str) -> StoreResult<Vec<LinkEvent>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "select {EVENT_COLUMNS} from events where link_id = $1 order by seq"
        )))
        .bind(link_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(event_from_row)
            .collect::<sqlx::Result<Vec<_>>>()?)
    }

    async fn stats(
        &self,
        scope: &Scope,
        filter: &LinkFilter,
        now: Timestamp,
    ) -> StoreResult<Vec<StatsRow>> {
        let mut query = QueryBuilder::<Postgres>::new(
            "select case when l.status = 'active' and l.expires_at <= ",
        );
        query
            .push_bind(now.to_sqlx())
            .push(
                " then 'expired' else l.status end as effective, l.currency, count(*) as count, \
                 sum(l.amount)::bigint as amount from payment_links l where l.account_id = ",
            )
            .push_bind(scope.account_id.clone())
            .push(" and l.livemode = ")
            .push_bind(scope.livemode);
        push_filter(&mut query, filter, now);
        query.push(" group by effective, l.currency order by effective, l.currency");
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let status: String = row.try_get("effective")?;
                Ok(StatsRow {
                    status: LinkStatus::parse(&status)
                        .ok_or_else(|| internal(format!("unknown status {status}")))?,
                    currency: row.try_get("currency")?,
                    count: row.try_get("count")?,
                    amount: row.try_get("amount")?,
                })
            })
            .collect::<sqlx::Result<Vec<_>>>()
            .map_err(StoreError::from)
    }

    async fn expire_due(&self, now: Timestamp, limit: usize) -> StoreResult<usize> {
        let mut tx = self.pool.begin().await?;
        // Rows another node's sweeper holds are skipped, not waited for.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "select {LINK_COLUMNS} from payment_links
             where status = 'active' and expires_at <= $1
             order by expires_at limit $2 for update skip locked"
        )))
        .bind(now.to_sqlx())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
        let mut expired = 0;
        for row in &rows {
            let link = link_from_row(row)?;
            if let Some(transition) = link.expire_if_due(now)
                && write_transition(&mut tx, &transition).await? == Applied::Yes
            {
                expired += 1;
            }
        }
        tx.commit().await?;
        Ok(expired)
    }

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

    async fn account_by_name(&self, name: &str) -> StoreResult<Option<Account>> {
        let row =
            sqlx::query("select id, name, suspended, created_at from accounts where name = $1")
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

    fn single_process(&self) -> bool {
        false
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
                    status: DeliveryStatus::parse(&status)
                        .ok_or_else(|| internal(format!("unknown status {status}")))?,
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

    async fn record_attempt(
        &self,
        event_id: &str,
        endpoint_id: &str,
        attempt: Attempt,
        next: NextStep,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let now = attempt.attempted_at.to_sqlx();
        sqlx::query(
            "insert into webhook_attempts (event_id, endpoint_id, attempted_at, status_code, latency_ms, error)
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(event_id)
        .bind(endpoint_id)
        .bind(now)
        .bind(attempt.status_code.map(i32::from))
        .bind(attempt.latency_ms)
        .bind(&attempt.error)
        .execute(&mut *tx)
        .await?;
        let (status, next_attempt_at) = match next {
            NextStep::Succeeded => (DeliveryStatus::Succeeded, None),
            NextStep::RetryAt(at) => (DeliveryStatus::Pending, Some(at.to_sqlx())),
            NextStep::Failed | NextStep::EndpointGone => (DeliveryStatus::Failed, None),
        };
        sqlx::query(
            "update webhook_deliveries set status = $1, attempt_count = attempt_count + 1,
                next_attempt_at = $2, lease_expires_at = null, updated_at = $3
             where event_id = $4 and endpoint_id = $5 and status = 'pending'",
        )
        .bind(status.as_str())
        .bind(next_attempt_at)
        .bind(now)
        .bind(event_id)
        .bind(endpoint_id)
        .execute(&mut *tx)
        .await?;
        if next == NextStep::EndpointGone {
            sqlx::query(
                "update webhook_endpoints set enabled = false, disabled_reason = $1, updated_at = $2
                 where id = $3",
            )
            .bind(GONE_REASON)
            .bind(now)
            .bind(endpoint_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
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

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }
}

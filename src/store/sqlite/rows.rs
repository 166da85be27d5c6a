//! Row codecs: column lists, decoders of each entity, shared writers and the link filter.

use jiff::Timestamp;
use rusqlite::types::Value;
use rusqlite::{Connection, Row, params};

use crate::domain::webhook::endpoint::{PayloadFormat, WebhookEndpoint};
use crate::domain::{
    AttemptState, EventType, Link, LinkEvent, LinkStatus, PaymentAttempt, Refund, Transition,
};
pub(super) use crate::store::sql::{
    ATTEMPT_COLUMNS, ENDPOINT_COLUMNS, EVENT_COLUMNS, LINK_COLUMNS, Param, QueryWriter, decode,
};
use crate::store::{Account, Applied, DeliveriesOwed, IdempotencyMark, StoreResult};

pub(super) fn micros(at: Timestamp) -> i64 {
    at.as_microsecond()
}

pub(super) fn from_micros(value: i64) -> rusqlite::Result<Timestamp> {
    Timestamp::from_microsecond(value).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Integer,
            Box::new(error),
        )
    })
}

pub(super) fn opt_from_micros(value: Option<i64>) -> rusqlite::Result<Option<Timestamp>> {
    value.map(from_micros).transpose()
}

pub(super) fn json_column<T: serde::de::DeserializeOwned>(
    text: Option<String>,
) -> rusqlite::Result<Option<T>> {
    text.map(|text| {
        serde_json::from_str(&text).map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                Box::new(error),
            )
        })
    })
    .transpose()
}

/// Column `name`'s index in `columns`, computed at build time (see
/// [`column_index`](crate::store::sql::column_index)); the readers below
/// serve only queries that select exactly those lists, in order.
macro_rules! at {
    ($columns:expr, $name:literal) => {
        const { crate::store::sql::column_index($columns, $name) }
    };
}

pub(super) fn conversion_error(message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, message.into())
}

pub(super) fn link_from_row(row: &Row<'_>) -> rusqlite::Result<Link> {
    let currency: String = row.get(at!(LINK_COLUMNS, "currency"))?;
    let status: String = row.get(at!(LINK_COLUMNS, "status"))?;
    Ok(Link {
        id: row.get(at!(LINK_COLUMNS, "id"))?,
        account_id: row.get(at!(LINK_COLUMNS, "account_id"))?,
        livemode: row.get(at!(LINK_COLUMNS, "livemode"))?,
        slug: row.get(at!(LINK_COLUMNS, "slug"))?,
        amount: row.get(at!(LINK_COLUMNS, "amount"))?,
        currency: crate::domain::Currency::parse(&currency).map_err(conversion_error)?,
        description: row.get(at!(LINK_COLUMNS, "description"))?,
        payment_type: crate::domain::PaymentType::OneTime,
        customer: json_column(row.get(at!(LINK_COLUMNS, "customer"))?)?,
        line_items: json_column(row.get(at!(LINK_COLUMNS, "line_items"))?)?,
        order_reference: row.get(at!(LINK_COLUMNS, "order_reference"))?,
        metadata: json_column(row.get(at!(LINK_COLUMNS, "metadata"))?)?.unwrap_or_default(),
        success_url: row.get(at!(LINK_COLUMNS, "success_url"))?,
        cancel_url: row.get(at!(LINK_COLUMNS, "cancel_url"))?,
        status: decode("status", &status, LinkStatus::parse).map_err(conversion_error)?,
        expires_at: from_micros(row.get(at!(LINK_COLUMNS, "expires_at"))?)?,
        created_at: from_micros(row.get(at!(LINK_COLUMNS, "created_at"))?)?,
        updated_at: from_micros(row.get(at!(LINK_COLUMNS, "updated_at"))?)?,
        cancelled_at: opt_from_micros(row.get(at!(LINK_COLUMNS, "cancelled_at"))?)?,
        cancellation_reason: row.get(at!(LINK_COLUMNS, "cancellation_reason"))?,
        customer_message: row.get(at!(LINK_COLUMNS, "customer_message"))?,
        paid_at: opt_from_micros(row.get(at!(LINK_COLUMNS, "paid_at"))?)?,
        payment_id: row.get(at!(LINK_COLUMNS, "payment_id"))?,
        amount_refunded: row.get(at!(LINK_COLUMNS, "amount_refunded"))?,
        version: row.get(at!(LINK_COLUMNS, "version"))?,
    })
}

pub(super) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<LinkEvent> {
    let event_type: String = row.get(at!(EVENT_COLUMNS, "type"))?;
    Ok(LinkEvent {
        id: row.get(at!(EVENT_COLUMNS, "id"))?,
        event_type: decode("event type", &event_type, crate::domain::EventType::parse)
            .map_err(conversion_error)?,
        created_at: from_micros(row.get(at!(EVENT_COLUMNS, "created_at"))?)?,
        actor: json_column(row.get(at!(EVENT_COLUMNS, "actor"))?)?
            .ok_or_else(|| conversion_error("missing actor".into()))?,
        reason: row.get(at!(EVENT_COLUMNS, "reason"))?,
        link: json_column(row.get(at!(EVENT_COLUMNS, "link"))?)?
            .ok_or_else(|| conversion_error("missing link".into()))?,
        previous_attributes: json_column(row.get(at!(EVENT_COLUMNS, "previous_attributes"))?)?,
        refund: json_column(row.get(at!(EVENT_COLUMNS, "refund"))?)?,
    })
}

/// An event's row, serialised before the write is queued: the writer
/// thread runs every write of the process one after another, so what can
/// be done on the request's own thread (the link's JSON snapshot) is.
pub(super) struct EventRow {
    pub(super) id: String,
    link_id: String,
    account_id: String,
    livemode: bool,
    event_type: &'static str,
    created_at: i64,
    actor: String,
    reason: Option<String>,
    link: String,
    previous_attributes: Option<String>,
    refund: Option<String>,
}

impl EventRow {
    pub(super) fn of(event: &LinkEvent) -> StoreResult<Self> {
        Ok(Self {
            id: event.id.clone(),
            link_id: event.link.id.clone(),
            account_id: event.link.account_id.clone(),
            livemode: event.link.livemode,
            event_type: event.event_type.as_str(),
            created_at: micros(event.created_at),
            actor: serde_json::to_string(&event.actor)?,
            reason: event.reason.clone(),
            link: serde_json::to_string(&event.link)?,
            previous_attributes: event
                .previous_attributes
                .as_ref()
                .map(serde_json::Value::to_string),
            refund: optional_json(&event.refund)?,
        })
    }
}

/// The event's row and the deliveries it owes; answers how many.
pub(super) fn insert_event(
    connection: &Connection,
    event: &EventRow,
) -> StoreResult<DeliveriesOwed> {
    connection
        .prepare_cached(
            "insert into events (id, link_id, account_id, livemode, type, created_at, actor, reason, link, previous_attributes, refund)
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            event.id,
            event.link_id,
            event.account_id,
            event.livemode,
            event.event_type,
            event.created_at,
            event.actor,
            event.reason,
            event.link,
            event.previous_attributes,
            event.refund,
        ])?;
    // The event's deliveries, in the same transaction: an event is never
    // stored without the deliveries it owes.
    let owed = connection
        .prepare_cached(
            "insert into webhook_deliveries (event_id, endpoint_id, status, attempt_count, next_attempt_at, created_at, updated_at)
             select ?1, w.id, 'pending', 0, ?4, ?4, ?4 from webhook_endpoints w
             where w.account_id = ?2 and w.livemode = ?3 and w.enabled = 1 and w.deleted_at is null
               and (w.events is null or exists (select 1 from json_each(w.events) where value = ?5))",
        )?
        .execute(params![
            event.id,
            event.account_id,
            event.livemode,
            event.created_at,
            event.event_type,
        ])?;
    Ok(DeliveriesOwed(owed as u64))
}

pub(super) fn endpoint_from_row(row: &Row<'_>) -> rusqlite::Result<WebhookEndpoint> {
    let format: String = row.get(at!(ENDPOINT_COLUMNS, "format"))?;
    let events: Option<Vec<String>> = json_column(row.get(at!(ENDPOINT_COLUMNS, "events"))?)?;
    Ok(WebhookEndpoint {
        id: row.get(at!(ENDPOINT_COLUMNS, "id"))?,
        account_id: row.get(at!(ENDPOINT_COLUMNS, "account_id"))?,
        livemode: row.get(at!(ENDPOINT_COLUMNS, "livemode"))?,
        url: row.get(at!(ENDPOINT_COLUMNS, "url"))?,
        description: row.get(at!(ENDPOINT_COLUMNS, "description"))?,
        events: events
            .map(|names| {
                names
                    .iter()
                    .map(|name| {
                        decode("event type", name, EventType::parse).map_err(conversion_error)
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .transpose()?,
        format: decode("format", &format, PayloadFormat::parse).map_err(conversion_error)?,
        enabled: row.get(at!(ENDPOINT_COLUMNS, "enabled"))?,
        disabled_reason: row.get(at!(ENDPOINT_COLUMNS, "disabled_reason"))?,
        secret: row.get(at!(ENDPOINT_COLUMNS, "secret"))?,
        retired_secrets: json_column(row.get(at!(ENDPOINT_COLUMNS, "retired_secrets"))?)?
            .unwrap_or_default(),
        created_at: from_micros(row.get(at!(ENDPOINT_COLUMNS, "created_at"))?)?,
        updated_at: from_micros(row.get(at!(ENDPOINT_COLUMNS, "updated_at"))?)?,
    })
}

pub(super) fn event_types_json(endpoint: &WebhookEndpoint) -> StoreResult<Option<String>> {
    optional_json(
        &endpoint
            .events
            .as_ref()
            .map(|types| types.iter().map(|t| t.as_str()).collect::<Vec<_>>()),
    )
}

pub(super) fn optional_json<T: serde::Serialize>(value: &Option<T>) -> StoreResult<Option<String>> {
    Ok(value.as_ref().map(serde_json::to_string).transpose()?)
}

/// Appends the filter's conditions (on table alias `l`) to `sql` and `args`.
/// A query being written for SQLite: its text with numbered placeholders
/// (`?N`) and the values they bind.
pub(super) struct SqliteQuery {
    pub(super) sql: String,
    pub(super) args: Vec<Value>,
}

impl SqliteQuery {
    /// Binds `value` and returns its placeholder.
    fn placeholder(&mut self, value: Value) -> String {
        self.args.push(value);
        format!("?{}", self.args.len())
    }
}

impl QueryWriter for SqliteQuery {
    fn sql(&mut self, text: &str) {
        self.sql.push_str(text);
    }

    fn bind(&mut self, value: Param) {
        let placeholder = self.placeholder(match value {
            Param::Time(at) => Value::Integer(micros(at)),
            Param::Text(text) => Value::Text(text),
        });
        self.sql.push_str(&placeholder);
    }

    // The link lists put the scope in ?1 and ?2 (`LinkStore::list_links`,
    // `link_stats`): the pair tables are read by their primary key, scope
    // first, then each candidate link by its id.
    fn has_product(&mut self, product_id: &str) {
        let id = self.placeholder(Value::Text(product_id.into()));
        self.sql.push_str(&format!(
            " and l.id in (select link_id from link_products \
               where account_id = ?1 and livemode = ?2 and product_id = {id})"
        ));
    }

    fn has_metadata(&mut self, key: &str, value: &str) {
        let key = self.placeholder(Value::Text(key.into()));
        let value = self.placeholder(Value::Text(value.into()));
        self.sql.push_str(&format!(
            " and l.id in (select link_id from link_metadata \
               where account_id = ?1 and livemode = ?2 and key = {key} and value = {value})"
        ));
    }
}

/// The conditional update of a transition plus its event row (`event`,
/// the transition's own, serialised by [`EventRow::of`]); the caller's
/// transaction makes the two one.
pub(super) fn write_transition(
    c: &Connection,
    transition: &Transition,
    event: &EventRow,
) -> StoreResult<Applied> {
    if transition.attempt.is_none() && transition.refund.is_none() {
        // Nothing is written unless the version check passes, and an
        // error fails the caller's whole job: no savepoint is needed.
        return write_transition_rows(c, transition, event);
    }
    // Its own savepoint: a stale attempt found after the link's update
    // must undo that update, not leave it in the caller's transaction.
    run_cached(c, "savepoint transition")?;
    let applied = write_transition_rows(c, transition, event);
    match applied {
        Ok(Applied::Yes(_)) => run_cached(c, "release transition")?,
        _ => {
            run_cached(c, "rollback to transition")?;
            run_cached(c, "release transition")?;
        }
    }
    applied
}

/// A statement with no parameters, prepared once per connection.
pub(super) fn run_cached(c: &Connection, sql: &str) -> rusqlite::Result<()> {
    c.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn write_transition_rows(
    c: &Connection,
    transition: &Transition,
    event: &EventRow,
) -> StoreResult<Applied> {
    let link = &transition.link;
    let changed = c
        .prepare_cached(
            "update payment_links set status = ?1, description = ?2, metadata = ?3, expires_at = ?4,
                updated_at = ?5, cancelled_at = ?6, cancellation_reason = ?7, paid_at = ?8,
                payment_id = ?9, version = ?10, amount_refunded = ?13, customer_message = ?14
             where id = ?11 and version = ?12",
        )?
        .execute(params![
            link.status.as_str(),
            link.description,
            serde_json::to_string(&link.metadata)?,
            micros(link.expires_at),
            micros(link.updated_at),
            link.cancelled_at.map(micros),
            link.cancellation_reason,
            link.paid_at.map(micros),
            link.payment_id,
            link.version,
            link.id,
            transition.expected_version,
            link.amount_refunded,
            link.customer_message,
        ])?;
    if changed == 0 {
        return Ok(Applied::StaleVersion);
    }
    if let Some(attempt) = &transition.attempt
        && write_attempt(c, attempt)? == 0
    {
        return Ok(Applied::StaleVersion);
    }
    if let Some(refund) = &transition.refund
        && write_refund(c, refund)? == 0
    {
        return Ok(Applied::StaleVersion);
    }
    Ok(Applied::Yes(insert_event(c, event)?))
}

/// Inserts a new pending attempt, or settles a stored one that is still
/// pending; returns the rows written (0: it was settled already).
pub(super) fn write_attempt(c: &Connection, attempt: &PaymentAttempt) -> StoreResult<usize> {
    Ok(c.prepare_cached(sql_once!(
        "insert into payment_attempts ({ATTEMPT_COLUMNS}) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         on conflict (id) do update set state = excluded.state, payment_id = excluded.payment_id,
             failure_message = excluded.failure_message, updated_at = excluded.updated_at,
             processor_reference = coalesce(excluded.processor_reference, payment_attempts.processor_reference)
         where payment_attempts.state = 'pending'
            or (payment_attempts.state = 'failed' and excluded.state = 'succeeded')"
    ))?
    .execute(params![
        attempt.id,
        attempt.link_id,
        attempt.account_id,
        attempt.livemode,
        attempt.amount,
        attempt.currency.code(),
        attempt.processor,
        attempt.state.as_str(),
        attempt.payment_id,
        attempt.failure_message,
        attempt.card_brand,
        attempt.card_last4,
        micros(attempt.created_at),
        micros(attempt.updated_at),
        attempt.processor_reference,
    ])?)
}

/// Inserts a new pending refund, or settles a stored one that is still
/// pending; returns the rows written (0: it was settled already).
pub(super) fn write_refund(c: &Connection, refund: &Refund) -> StoreResult<usize> {
    Ok(c.prepare_cached(
        "insert into refunds (id, link_id, state, created_at, body) values (?1, ?2, ?3, ?4, ?5)
         on conflict (id) do update set state = excluded.state, body = excluded.body
         where refunds.state = 'pending'",
    )?
    .execute(params![
        refund.id,
        refund.link_id,
        refund.state.as_str(),
        micros(refund.created_at),
        serde_json::to_string(refund)?,
    ])?)
}

pub(super) fn refund_from_row(row: &Row<'_>) -> rusqlite::Result<Refund> {
    json_column(row.get("body")?)?.ok_or_else(|| conversion_error("missing refund".into()))
}

pub(super) fn attempt_from_row(row: &Row<'_>) -> rusqlite::Result<PaymentAttempt> {
    let currency: String = row.get(at!(ATTEMPT_COLUMNS, "currency"))?;
    let state: String = row.get(at!(ATTEMPT_COLUMNS, "state"))?;
    Ok(PaymentAttempt {
        id: row.get(at!(ATTEMPT_COLUMNS, "id"))?,
        link_id: row.get(at!(ATTEMPT_COLUMNS, "link_id"))?,
        account_id: row.get(at!(ATTEMPT_COLUMNS, "account_id"))?,
        livemode: row.get(at!(ATTEMPT_COLUMNS, "livemode"))?,
        amount: row.get(at!(ATTEMPT_COLUMNS, "amount"))?,
        currency: crate::domain::Currency::parse(&currency).map_err(conversion_error)?,
        processor: row.get(at!(ATTEMPT_COLUMNS, "processor"))?,
        state: decode("attempt state", &state, AttemptState::parse).map_err(conversion_error)?,
        payment_id: row.get(at!(ATTEMPT_COLUMNS, "payment_id"))?,
        processor_reference: row.get(at!(ATTEMPT_COLUMNS, "processor_reference"))?,
        failure_message: row.get(at!(ATTEMPT_COLUMNS, "failure_message"))?,
        card_brand: row.get(at!(ATTEMPT_COLUMNS, "card_brand"))?,
        card_last4: row.get(at!(ATTEMPT_COLUMNS, "card_last4"))?,
        created_at: from_micros(row.get(at!(ATTEMPT_COLUMNS, "created_at"))?)?,
        updated_at: from_micros(row.get(at!(ATTEMPT_COLUMNS, "updated_at"))?)?,
    })
}

/// Marks the idempotency key a change was made under with its event, in
/// the change's transaction.
pub(super) fn mark_idempotency_key(
    c: &Connection,
    mark: Option<&IdempotencyMark>,
    event_id: &str,
) -> StoreResult<()> {
    if let Some(mark) = mark {
        c.prepare_cached(
            "update idempotency_keys set committed_event = ?4
             where account_id = ?1 and livemode = ?2 and key = ?3 and response_status is null",
        )?
        .execute(params![
            mark.scope.account_id,
            mark.scope.livemode,
            mark.key,
            event_id
        ])?;
    }
    Ok(())
}

pub(super) fn account_from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        name: row.get(1)?,
        suspended: row.get(2)?,
        created_at: from_micros(row.get(3)?)?,
        branding: json_column(row.get(4)?)?.unwrap_or_default(),
    })
}

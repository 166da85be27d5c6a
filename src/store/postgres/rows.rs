//! Row codecs: column lists, decoders of each entity, shared writers and the link filter.

use jiff::Timestamp;
use jiff_sqlx::ToSqlx;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Row};

use crate::domain::webhook::endpoint::{PayloadFormat, RetiredSecret, WebhookEndpoint};
use crate::domain::{
    AttemptState, Currency, EventType, Link, LinkEvent, LinkStatus, PaymentAttempt, PaymentType,
    Refund, Transition,
};
pub(super) use crate::store::sql::{
    ATTEMPT_COLUMNS, ENDPOINT_COLUMNS, EVENT_COLUMNS, LINK_COLUMNS, Param, QueryWriter, decode,
};
use crate::store::{Account, Applied, DeliveriesOwed, IdempotencyMark, StoreResult};

pub(super) fn internal(message: impl Into<String>) -> sqlx::Error {
    sqlx::Error::Decode(message.into().into())
}

pub(super) fn ts(row: &PgRow, column: &str) -> sqlx::Result<Timestamp> {
    Ok(row.try_get::<jiff_sqlx::Timestamp, _>(column)?.to_jiff())
}

pub(super) fn opt_ts(row: &PgRow, column: &str) -> sqlx::Result<Option<Timestamp>> {
    Ok(row
        .try_get::<Option<jiff_sqlx::Timestamp>, _>(column)?
        .map(|t| t.to_jiff()))
}

pub(super) fn link_from_row(row: &PgRow) -> sqlx::Result<Link> {
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
        status: decode("status", &status, LinkStatus::parse).map_err(internal)?,
        expires_at: ts(row, "expires_at")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
        cancelled_at: opt_ts(row, "cancelled_at")?,
        cancellation_reason: row.try_get("cancellation_reason")?,
        customer_message: row.try_get("customer_message")?,
        paid_at: opt_ts(row, "paid_at")?,
        payment_id: row.try_get("payment_id")?,
        amount_refunded: row.try_get("amount_refunded")?,
        version: row.try_get("version")?,
    })
}

pub(super) fn event_from_row(row: &PgRow) -> sqlx::Result<LinkEvent> {
    let event_type: String = row.try_get("type")?;
    Ok(LinkEvent {
        id: row.try_get("id")?,
        event_type: decode("event type", &event_type, EventType::parse).map_err(internal)?,
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

pub(super) fn account_from_row(row: &PgRow) -> sqlx::Result<Account> {
    Ok(Account {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        suspended: row.try_get("suspended")?,
        created_at: ts(row, "created_at")?,
        branding: row
            .try_get::<Option<Json<crate::domain::account::Branding>>, _>("branding")?
            .map(|Json(branding)| branding)
            .unwrap_or_default(),
    })
}

/// The event's row and the deliveries it owes; answers how many.
pub(super) async fn insert_event(
    tx: &mut sqlx::PgConnection,
    event: &LinkEvent,
) -> StoreResult<DeliveriesOwed> {
    let insert = sqlx::query(
        "insert into events (id, account_id, livemode, type, created_at, actor, reason, link, previous_attributes, link_id, refund)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    );
    bind_event_fields(insert, event)
        .bind(&event.link.id)
        .bind(event.refund.as_ref().map(Json))
        .execute(&mut *tx)
        .await?;
    // The event's deliveries, in the same transaction: an event is never
    // stored without the deliveries it owes.
    static DELIVERIES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        deliveries_owed(
            "",
            &DeliveryParams {
                event_id: "$1",
                account_id: "$2",
                livemode: "$3",
                at: "$4",
                event_type: "$5",
            },
        )
    });
    let owed = sqlx::query(AssertSqlSafe(DELIVERIES.as_str()))
        .bind(&event.id)
        .bind(&event.link.account_id)
        .bind(event.link.livemode)
        .bind(event.created_at.to_sqlx())
        .bind(event.event_type.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    Ok(DeliveriesOwed(owed))
}

pub(super) fn endpoint_from_row(row: &PgRow) -> sqlx::Result<WebhookEndpoint> {
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
                    .map(|name| decode("event type", name, EventType::parse).map_err(internal))
                    .collect::<sqlx::Result<Vec<_>>>()
            })
            .transpose()?,
        format: decode("format", &format, PayloadFormat::parse).map_err(internal)?,
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

pub(super) fn event_type_names(endpoint: &WebhookEndpoint) -> Option<Vec<String>> {
    endpoint
        .events
        .as_ref()
        .map(|types| types.iter().map(|t| t.as_str().to_owned()).collect())
}

/// Where the SQL of [`deliveries_owed`] finds the event's fields: a
/// placeholder (`$3`) or a column of an earlier CTE (`event.id`).
pub(super) struct DeliveryParams<'a> {
    pub event_id: &'a str,
    pub account_id: &'a str,
    pub livemode: &'a str,
    pub at: &'a str,
    pub event_type: &'a str,
}

/// The INSERT of the deliveries an event owes: one per enabled endpoint of
/// its account and mode subscribed to its type. `from` names tables to
/// join before the endpoints (`"event, "` in a CTE), or is empty.
pub(super) fn deliveries_owed(from: &str, event: &DeliveryParams<'_>) -> String {
    let DeliveryParams {
        event_id,
        account_id,
        livemode,
        at,
        event_type,
    } = event;
    format!(
        "insert into webhook_deliveries (event_id, endpoint_id, status, attempt_count, next_attempt_at, created_at, updated_at)
         select {event_id}, w.id, 'pending', 0, {at}, {at}, {at} from {from}webhook_endpoints w
         where w.account_id = {account_id} and w.livemode = {livemode} and w.enabled and w.deleted_at is null
           and (w.events is null or {event_type} = any(w.events))"
    )
}

/// One statement that changes a link and stores the change: `write` (the
/// link's INSERT, or its version-checked UPDATE, which may match no row),
/// then the event on the row it wrote, then the deliveries that event
/// owes; it answers how many rows `write` wrote (`written`) and how many
/// deliveries the event owes (`deliveries`). The event's fields are
/// `$n` to `$n + 8`, bound in that order by [`bind_event_fields`]. One
/// statement is one implicit transaction: all of it or none.
pub(super) fn with_event_and_deliveries(write: &str, n: usize) -> String {
    let p = |i: usize| format!("${}", n + i);
    let (id, account_id, livemode, event_type, at) = (p(0), p(1), p(2), p(3), p(4));
    let (actor, reason, link, previous) = (p(5), p(6), p(7), p(8));
    format!(
        "with written as ({write} returning id), event as (
            insert into events (id, link_id, account_id, livemode, type, created_at, actor, reason, link, previous_attributes, refund)
            select {id}, written.id, {account_id}, {livemode}, {event_type}, {at}, {actor}, {reason}, {link}, {previous}, null
            from written
            returning id
         ), deliveries as ({} returning 1)
         select (select count(*) from written) as written,
                (select count(*) from deliveries) as deliveries",
        deliveries_owed(
            "event, ",
            &DeliveryParams {
                event_id: "event.id",
                account_id: &account_id,
                livemode: &livemode,
                at: &at,
                event_type: &event_type,
            }
        )
    )
}

/// Binds an event's fields in the order [`with_event_and_deliveries`]
/// numbers them (and [`insert_event`] lists them first).
pub(super) fn bind_event_fields<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    event: &'q LinkEvent,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&event.id)
        .bind(&event.link.account_id)
        .bind(event.link.livemode)
        .bind(event.event_type.as_str())
        .bind(event.created_at.to_sqlx())
        .bind(Json(&event.actor))
        .bind(&event.reason)
        .bind(Json(&event.link))
        .bind(event.previous_attributes.as_ref().map(Json))
}

/// A link's INSERT, parameters $1 to $25 (bound by [`bind_link_insert`]).
pub(super) static LINK_INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "insert into payment_links ({LINK_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)"
    )
});

pub(super) fn bind_link_insert<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    link: &'q Link,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
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
        .bind(&link.customer_message)
}

/// A new link, its event and the event's deliveries as one statement (one
/// implicit transaction, one round trip).
pub(super) async fn insert_link_at_once(
    connection: &mut sqlx::PgConnection,
    link: &Link,
    event: &LinkEvent,
) -> StoreResult<DeliveriesOwed> {
    // Built once: this runs on every create.
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| with_event_and_deliveries(&LINK_INSERT, 26));
    let query = bind_link_insert(sqlx::query(AssertSqlSafe(SQL.as_str())), link);
    let row = bind_event_fields(query, event)
        .fetch_one(connection)
        .await?;
    Ok(deliveries_owed_of(&row)?)
}

/// A transition's version-checked UPDATE of its link, parameters $1 to
/// $14 (bound by [`bind_link_update`]); it matches no row if another
/// change came first.
const LINK_UPDATE: &str =
    "update payment_links set status = $1, description = $2, metadata = $3, expires_at = $4,
        updated_at = $5, cancelled_at = $6, cancellation_reason = $7, paid_at = $8,
        payment_id = $9, version = $10, amount_refunded = $13, customer_message = $14
     where id = $11 and version = $12";

fn bind_link_update<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    transition: &'q Transition,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let link = &transition.link;
    query
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
        .bind(&link.customer_message)
}

/// The conditional update plus the event, inside the caller's transaction.
pub(super) async fn write_transition(
    tx: &mut sqlx::PgConnection,
    transition: &Transition,
) -> StoreResult<Applied> {
    let changed = bind_link_update(sqlx::query(LINK_UPDATE), transition)
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
    Ok(Applied::Yes(insert_event(tx, &transition.event).await?))
}

/// A transition that carries nothing beside the link and its event (no
/// payment attempt, refund or idempotency mark: a cancel, an update, an
/// expiry) as one statement: the version-checked UPDATE, the event's
/// INSERT only if the update matched, and the event's deliveries. One
/// statement is one implicit transaction and one round trip, where
/// BEGIN, three statements and COMMIT would be five; the database
/// applies all of it or none, as before.
pub(super) async fn write_transition_at_once(
    connection: &mut sqlx::PgConnection,
    transition: &Transition,
) -> StoreResult<Applied> {
    // Built once: this runs on every cancel, update and expiry.
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| with_event_and_deliveries(LINK_UPDATE, 15));
    let query = bind_link_update(sqlx::query(AssertSqlSafe(SQL.as_str())), transition);
    let row = bind_event_fields(query, &transition.event)
        .fetch_one(connection)
        .await?;
    let written: i64 = row.try_get("written")?;
    Ok(if written == 0 {
        Applied::StaleVersion
    } else {
        Applied::Yes(deliveries_owed_of(&row)?)
    })
}

/// The `deliveries` column of [`with_event_and_deliveries`]' answer.
pub(super) fn deliveries_owed_of(row: &PgRow) -> sqlx::Result<DeliveriesOwed> {
    let owed: i64 = row.try_get("deliveries")?;
    Ok(DeliveriesOwed(u64::try_from(owed).unwrap_or(0)))
}

/// Inserts a new pending attempt, or settles a stored one that is still
/// pending; returns the rows written (0: it was settled already).
pub(super) async fn write_attempt(
    tx: &mut sqlx::PgConnection,
    attempt: &PaymentAttempt,
) -> StoreResult<u64> {
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
pub(super) async fn write_refund(tx: &mut sqlx::PgConnection, refund: &Refund) -> StoreResult<u64> {
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

pub(super) fn refund_from_row(row: &PgRow) -> sqlx::Result<Refund> {
    Ok(row.try_get::<Json<Refund>, _>("body")?.0)
}

pub(super) fn attempt_from_row(row: &PgRow) -> sqlx::Result<PaymentAttempt> {
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
        state: decode("attempt state", &state, AttemptState::parse).map_err(internal)?,
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
pub(super) async fn mark_idempotency_key(
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
impl QueryWriter for QueryBuilder<Postgres> {
    fn sql(&mut self, text: &str) {
        self.push(text);
    }

    fn bind(&mut self, value: Param) {
        match value {
            Param::Time(at) => self.push_bind(at.to_sqlx()),
            Param::Text(text) => self.push_bind(text),
        };
    }

    fn has_product(&mut self, product_id: &str) {
        self.push(" and l.line_items @> jsonb_build_array(jsonb_build_object('product_id', ")
            .push_bind(product_id.to_owned())
            .push("::text))");
    }

    /// Containment, so the GIN index on metadata serves it.
    fn has_metadata(&mut self, key: &str, value: &str) {
        self.push(" and l.metadata @> jsonb_build_object(")
            .push_bind(key.to_owned())
            .push("::text, ")
            .push_bind(value.to_owned())
            .push("::text)");
    }
}

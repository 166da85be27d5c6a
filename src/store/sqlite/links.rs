//! Links, their transitions and events, stats and expiry.

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};

use crate::domain::{Link, LinkEvent, LinkStatus, Transition};
use crate::store::{
    Applied, DeliveriesOwed, IdempotencyMark, LinkFilter, LinkStore, Page, Scope, StatsRow,
    StoreResult,
};

use super::engine::*;
use super::rows::*;
use crate::store::sql::{effective_status, link_filter};

#[async_trait]
impl LinkStore for SqliteStore {
    async fn insert_link(
        &self,
        link: Link,
        event: LinkEvent,
        mark: Option<IdempotencyMark>,
    ) -> StoreResult<DeliveriesOwed> {
        let event = EventRow::of(&event)?;
        let metadata = serde_json::to_string(&link.metadata)?;
        let customer = optional_json(&link.customer)?;
        let line_items = optional_json(&link.line_items)?;
        self.write(move |c| {
            c.prepare_cached(
                sql_once!("insert into payment_links ({LINK_COLUMNS}) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)"),
            )?
            .execute(
                params![
                    link.id,
                    link.account_id,
                    link.livemode,
                    link.slug,
                    link.amount,
                    link.currency.code(),
                    link.description,
                    "one_time",
                    customer,
                    line_items,
                    link.order_reference,
                    metadata,
                    link.success_url,
                    link.cancel_url,
                    link.status.as_str(),
                    micros(link.expires_at),
                    micros(link.created_at),
                    micros(link.updated_at),
                    link.cancelled_at.map(micros),
                    link.cancellation_reason,
                    link.paid_at.map(micros),
                    link.payment_id,
                    link.version,
                    link.amount_refunded,
                    link.customer_message,
                ],
            )?;
            let owed = insert_event(c, &event)?;
            mark_idempotency_key(c, mark.as_ref(), &event.id)?;
            Ok(owed)
        })
        .await
    }

    async fn get_link(&self, scope: &Scope, id: &str) -> StoreResult<Option<Link>> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.read_row(move |c| {
            Ok(c.prepare_cached(sql_once!("select {LINK_COLUMNS} from payment_links where id = ?1 and account_id = ?2 and livemode = ?3"))?
                .query_row(params![id, scope.account_id, scope.livemode], link_from_row)
                .optional()?)
        })
        .await
    }

    async fn get_link_by_slug(&self, slug: &str) -> StoreResult<Option<Link>> {
        let slug = slug.to_owned();
        self.read_row(move |c| {
            Ok(c.prepare_cached(sql_once!(
                "select {LINK_COLUMNS} from payment_links where slug = ?1"
            ))?
            .query_row([slug], link_from_row)
            .optional()?)
        })
        .await
    }

    async fn list_links(
        &self,
        scope: &Scope,
        filter: &LinkFilter,
        page: &Page,
        now: Timestamp,
    ) -> StoreResult<Vec<Link>> {
        // A metadata pair or a product, when one is asked for, drives the
        // list: its pair table (migration 0011) is walked newest first and
        // each link fetched by id, so the page ends after as many rows as
        // it needs however many links the account has. (SQLite's planner,
        // with no statistics, would walk all of the account's links in
        // order and probe the pair table for each.) The other conditions
        // filter the links found.
        let mut rest = filter.clone();
        let mut args = vec![
            Value::Text(scope.account_id.clone()),
            Value::Integer(i64::from(scope.livemode)),
        ];
        let (from, order_table, order_id) = if !rest.metadata.is_empty() {
            let (key, value) = rest.metadata.remove(0);
            args.extend([Value::Text(key), Value::Text(value)]);
            (
                "link_metadata d cross join payment_links l on l.id = d.link_id \
                 where d.account_id = ?1 and d.livemode = ?2 and d.key = ?3 and d.value = ?4 and",
                "d",
                "link_id",
            )
        } else if let Some(product) = rest.product_id.take() {
            args.push(Value::Text(product));
            (
                "link_products d cross join payment_links l on l.id = d.link_id \
                 where d.account_id = ?1 and d.livemode = ?2 and d.product_id = ?3 and",
                "d",
                "link_id",
            )
        } else {
            ("payment_links l where", "l", "id")
        };
        let columns = LINK_COLUMNS
            .split(',')
            .map(|column| format!("l.{}", column.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut query = SqliteQuery {
            sql: format!("select {columns} from {from} l.account_id = ?1 and l.livemode = ?2"),
            args,
        };
        link_filter(&mut query, &rest, now);
        let SqliteQuery { mut sql, mut args } = query;
        if let Some((created_at, id)) = &page.starting_after {
            args.push(Value::Integer(micros(*created_at)));
            args.push(Value::Text(id.clone()));
            let (at, id) = (args.len() - 1, args.len());
            sql.push_str(&format!(
                " and ({order_table}.created_at < ?{at} or ({order_table}.created_at = ?{at} and {order_table}.{order_id} < ?{id}))"
            ));
        }
        args.push(Value::Integer(
            i64::try_from(page.limit).unwrap_or(i64::MAX),
        ));
        sql.push_str(&format!(
            " order by {order_table}.created_at desc, {order_table}.{order_id} desc limit ?{}",
            args.len()
        ));
        self.read(move |c| {
            let mut statement = c.prepare_cached(&sql)?;
            let links = statement
                .query_map(params_from_iter(args), link_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(links)
        })
        .await
    }

    async fn apply_transition(
        &self,
        transition: Transition,
        mark: Option<IdempotencyMark>,
    ) -> StoreResult<Applied> {
        let event = EventRow::of(&transition.event)?;
        self.write(move |c| {
            let applied = write_transition(c, &transition, &event)?;
            if matches!(applied, Applied::Yes(_)) {
                mark_idempotency_key(c, mark.as_ref(), &transition.event.id)?;
            }
            Ok(applied)
        })
        .await
    }

    async fn event_by_id(&self, id: &str) -> StoreResult<Option<LinkEvent>> {
        let id = id.to_owned();
        self.read_row(move |c| {
            Ok(c.prepare_cached(sql_once!(
                "select {EVENT_COLUMNS} from events where id = ?1"
            ))?
            .query_row([id], event_from_row)
            .optional()?)
        })
        .await
    }

    async fn link_events(&self, link_id: &str) -> StoreResult<Vec<LinkEvent>> {
        let link_id = link_id.to_owned();
        self.read(move |c| {
            let mut statement = c.prepare_cached(sql_once!(
                "select {EVENT_COLUMNS} from events where link_id = ?1 order by seq"
            ))?;
            let events = statement
                .query_map([link_id], event_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(events)
        })
        .await
    }

    async fn stats(
        &self,
        scope: &Scope,
        filter: &LinkFilter,
        now: Timestamp,
    ) -> StoreResult<Vec<StatsRow>> {
        let mut query = SqliteQuery {
            sql: String::from("select "),
            args: vec![
                Value::Text(scope.account_id.clone()),
                Value::Integer(i64::from(scope.livemode)),
            ],
        };
        // ?1 and ?2 are the scope; the rest are numbered as they are bound.
        effective_status(&mut query, now);
        query.sql.push_str(
            " as effective, l.currency, count(*), sum(l.amount)
             from payment_links l where l.account_id = ?1 and l.livemode = ?2",
        );
        link_filter(&mut query, filter, now);
        let SqliteQuery { mut sql, args } = query;
        sql.push_str(" group by effective, l.currency order by effective, l.currency");
        self.read(move |c| {
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement
                .query_map(params_from_iter(args), |row| {
                    let status: String = row.get(0)?;
                    Ok(StatsRow {
                        status: decode("status", &status, LinkStatus::parse)
                            .map_err(conversion_error)?,
                        currency: row.get(1)?,
                        count: row.get(2)?,
                        amount: row.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn expire_due(&self, now: Timestamp, limit: usize) -> StoreResult<usize> {
        // One write job: nothing else writes between the select and the
        // updates, so the single writer is its own claim.
        self.write(move |c| {
            let due = {
                let mut statement = c.prepare_cached(sql_once!(
                    "select {LINK_COLUMNS} from payment_links
                     where status = 'active' and expires_at <= ?1 order by expires_at limit ?2"
                ))?;
                statement
                    .query_map(
                        params![micros(now), i64::try_from(limit).unwrap_or(i64::MAX)],
                        link_from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            };
            let mut expired = 0;
            for transition in due.iter().filter_map(|link| link.expire_if_due(now)) {
                if write_transition(c, &transition, &EventRow::of(&transition.event)?)?
                    != Applied::StaleVersion
                {
                    expired += 1;
                }
            }
            Ok(expired)
        })
        .await
    }
}

//! Links, their transitions and events, stats and expiry.

use async_trait::async_trait;
use jiff::Timestamp;
use jiff_sqlx::ToSqlx;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Row};

use crate::domain::{Link, LinkEvent, LinkStatus, Transition};
use crate::store::{
    Applied, DeliveriesOwed, IdempotencyMark, LinkFilter, LinkStore, Page, Scope, StatsRow,
    StoreError, StoreResult,
};

use super::engine::*;
use super::rows::*;
use crate::store::sql::{effective_status, link_filter};

#[async_trait]
impl LinkStore for PostgresStore {
    async fn insert_link(
        &self,
        link: Link,
        event: LinkEvent,
        mark: Option<IdempotencyMark>,
    ) -> StoreResult<DeliveriesOwed> {
        if mark.is_none() {
            return self.writers.insert(&self.pool, link, event).await;
        }
        let mut tx = self.pool.begin().await?;
        bind_link_insert(sqlx::query(AssertSqlSafe(LINK_INSERT.as_str())), &link)
            .execute(&mut *tx)
            .await?;
        let owed = insert_event(&mut tx, &event).await?;
        mark_idempotency_key(&mut tx, mark.as_ref(), &event.id).await?;
        tx.commit().await?;
        Ok(owed)
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
        link_filter(&mut query, filter, now);
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
        if mark.is_none()
            && transition.attempt.is_none()
            && transition.refund.is_none()
            && transition.event.refund.is_none()
        {
            return self.writers.transition(&self.pool, transition).await;
        }
        let mut tx = self.pool.begin().await?;
        let applied = write_transition(&mut tx, &transition).await?;
        if matches!(applied, Applied::Yes(_)) {
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
        let mut query = QueryBuilder::<Postgres>::new("select ");
        effective_status(&mut query, now);
        query
            .push(
                " as effective, l.currency, count(*) as count, \
                 sum(l.amount)::bigint as amount from payment_links l where l.account_id = ",
            )
            .push_bind(scope.account_id.clone())
            .push(" and l.livemode = ")
            .push_bind(scope.livemode);
        link_filter(&mut query, filter, now);
        query.push(" group by effective, l.currency order by effective, l.currency");
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let status: String = row.try_get("effective")?;
                Ok(StatsRow {
                    status: decode("status", &status, LinkStatus::parse).map_err(internal)?,
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
                && write_transition(&mut tx, &transition).await? != Applied::StaleVersion
            {
                expired += 1;
            }
        }
        tx.commit().await?;
        Ok(expired)
    }
}

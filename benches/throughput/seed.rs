//! Fills a database with links fast, straight through SQL: copies of one
//! template link (and its creation event) the running server created
//! through the API, with ids the load scripts can compute
//! (`plink_B` + 23 digits) so no id list has to be loaded into wrk.
//!
//! Link `n` is `to + 1 - n` microseconds older than the template, so the
//! links go in oldest first, as a real shop's do (ids and creation times
//! both ascend). Seeded newest first, every index keyed by creation time
//! took each entry at its left end and kept its pages half full: a
//! database larger than any a real workload of that size builds.

use rusqlite::Connection;

/// The id of seeded link number `n` (1-based); the Lua scripts format the same.
pub fn link_id(n: u64) -> String {
    format!("plink_B{n:023}")
}

/// Rows per transaction, so a running server's writer is never held long.
const CHUNK: u64 = 50_000;

/// Adds links `from..=to` to the SQLite database at `path`, copying `template`.
pub fn sqlite(path: &str, template: &str, from: u64, to: u64) {
    let connection = Connection::open(path).expect("open the bench database");
    connection
        .busy_timeout(std::time::Duration::from_secs(30))
        .unwrap();
    let link_columns = columns_sqlite(&connection, "payment_links");
    let event_columns: Vec<String> = columns_sqlite(&connection, "events")
        .into_iter()
        .filter(|c| c != "seq")
        .collect();
    let older = format!("t.created_at - ({to} + 1 - n.i)");
    let links = copy_select(&link_columns, |column| match column {
        "id" => Some("printf('plink_B%023d', n.i)"),
        "slug" => Some("printf('B%026d', n.i)"),
        "created_at" => Some(older.as_str()),
        "order_reference" => Some("printf('ORD-%d', n.i)"),
        _ => None,
    });
    let events = copy_select(&event_columns, |column| match column {
        "id" => Some("printf('evt_B%024d', n.i)"),
        "link_id" => Some("printf('plink_B%023d', n.i)"),
        "link" => Some("replace(t.link, t.link_id, printf('plink_B%023d', n.i))"),
        _ => None,
    });
    let mut start = from;
    while start <= to {
        let end = (start + CHUNK - 1).min(to);
        let range = format!(
            "with recursive n(i) as (select {start} union all select i + 1 from n where i < {end})"
        );
        connection
            .execute_batch(&format!(
                "begin immediate;
                 {range} insert into payment_links ({}) select {links} from n, payment_links t where t.id = '{template}';
                 {range} insert into events ({}) select {events} from n, events t where t.link_id = '{template}' and t.type = 'payment_link.created';
                 commit;",
                link_columns.join(", "),
                event_columns.join(", "),
            ))
            .expect("seed a chunk of links");
        start = end + 1;
    }
}

/// Adds links `from..=to` to the PostgreSQL database at `url`, copying `template`.
pub async fn postgres(url: &str, template: &str, from: u64, to: u64) {
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    let link_columns = columns_postgres(&pool, "payment_links").await;
    let event_columns: Vec<String> = columns_postgres(&pool, "events")
        .await
        .into_iter()
        .filter(|c| c != "seq")
        .collect();
    let older = format!("t.created_at - ({to} + 1 - n.i) * interval '1 microsecond'");
    let links = copy_select(&link_columns, |column| match column {
        "id" => Some("'plink_B' || lpad(n.i::text, 23, '0')"),
        "slug" => Some("'B' || lpad(n.i::text, 26, '0')"),
        "created_at" => Some(older.as_str()),
        "order_reference" => Some("'ORD-' || n.i"),
        _ => None,
    });
    let events = copy_select(&event_columns, |column| match column {
        "id" => Some("'evt_B' || lpad(n.i::text, 24, '0')"),
        "link_id" => Some("'plink_B' || lpad(n.i::text, 23, '0')"),
        "link" => {
            Some("jsonb_set(t.link, '{id}', to_jsonb('plink_B' || lpad(n.i::text, 23, '0')))")
        }
        _ => None,
    });
    let mut start = from;
    while start <= to {
        let end = (start + CHUNK - 1).min(to);
        let series = format!("generate_series({start}::bigint, {end}::bigint) as n(i)");
        let mut tx = pool.begin().await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "insert into payment_links ({}) select {links} from {series}, payment_links t where t.id = '{template}';
             insert into events ({}) select {events} from {series}, events t where t.link_id = '{template}' and t.type = 'payment_link.created';",
            link_columns.join(", "),
            event_columns.join(", "),
        )))
        .execute(&mut *tx)
        .await
        .expect("seed a chunk of links");
        tx.commit().await.unwrap();
        start = end + 1;
    }
    sqlx::raw_sql("analyze payment_links; analyze events")
        .execute(&pool)
        .await
        .unwrap();
}

/// `t.column` for each column, or its replacement expression.
fn copy_select<'a>(columns: &[String], replace: impl Fn(&str) -> Option<&'a str>) -> String {
    columns
        .iter()
        .map(|c| replace(c).map_or_else(|| format!("t.{c}"), str::to_owned))
        .collect::<Vec<_>>()
        .join(", ")
}

fn columns_sqlite(connection: &Connection, table: &str) -> Vec<String> {
    let mut statement = connection
        .prepare(&format!("select name from pragma_table_info('{table}')"))
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

async fn columns_postgres(pool: &sqlx::PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select column_name::text from information_schema.columns where table_name = $1 and table_schema = 'public' order by ordinal_position",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap()
}

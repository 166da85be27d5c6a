//! pgbench on the writes paylink makes, against the same PostgreSQL
//! server and the same seeded tables: what the database itself can do,
//! which paylink's PostgreSQL figures are a share of.
//!
//! A cancel: one transaction with the version-checked UPDATE of the link
//! and the INSERT of its event (the link's JSON snapshot as paylink stores
//! it). A create: one transaction with the link's INSERT and its event's.
//! Each client works on links of its own, 16 clients.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub struct Writes {
    pub cancel: f64,
    pub create: f64,
}

pub const CLIENTS: u32 = 16;

pub async fn run(
    url: &str,
    template: &str,
    links: u64,
    duration: Duration,
    scratch: &Path,
) -> Writes {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let snapshot: String = sqlx::query_scalar(
        "select link::text from events where link_id = $1 and type = 'payment_link.created'",
    )
    .bind(template)
    .fetch_one(&pool)
    .await
    .unwrap();
    let snapshot = without_variables(&snapshot);
    let account: String = sqlx::query_scalar("select account_id from payment_links where id = $1")
        .bind(template)
        .fetch_one(&pool)
        .await
        .unwrap();
    // Ids and slugs start with the time, as paylink makes them
    // (src/domain/ids.rs), so both write the same index pages.
    let ordered = "lpad(to_hex((extract(epoch from clock_timestamp()) * 1000)::bigint), 12, '0') || md5(random()::text)";
    // Cancels take links from the upper half, which the API runs left
    // alone (they cancelled from the bottom).
    let cancel = format!(
        r#"\set i random({low}, {links})
BEGIN;
UPDATE payment_links SET status = 'cancelled', description = 'Bench order', metadata = '{{"order_id": "1042","channel": "bench"}}', expires_at = expires_at, updated_at = now(), cancelled_at = now(), cancellation_reason = NULL, paid_at = NULL, payment_id = NULL, version = version + 1, amount_refunded = 0, customer_message = NULL WHERE id = 'plink_B' || lpad(CAST(:i AS text), 23, '0') AND version = version;
INSERT INTO events (id, link_id, account_id, livemode, type, created_at, actor, reason, link, previous_attributes, refund) VALUES ('evt_P' || {ordered}, 'plink_B' || lpad(CAST(:i AS text), 23, '0'), '{account}', false, 'payment_link.cancelled', now(), '{{"type": "api_key","id": "key_bench"}}', NULL, $snap${snapshot}$snap$, '{{"status": "active"}}', NULL);
COMMIT;
"#,
        low = links / 2 + 1,
    );
    let create = format!(
        r#"BEGIN;
INSERT INTO payment_links (id, account_id, livemode, slug, amount, currency, description, payment_type, customer, line_items, order_reference, metadata, success_url, cancel_url, status, expires_at, created_at, updated_at, cancelled_at, cancellation_reason, paid_at, payment_id, version, amount_refunded, customer_message) VALUES ('plink_P' || {ordered}, '{account}', false, 'P' || {ordered}, 4995, 'USD', 'Bench order', 'one_time', NULL, NULL, 'ORD-1042', '{{"order_id": "1042","channel": "bench"}}', NULL, NULL, 'active', now() + interval '14 days', now(), now(), NULL, NULL, NULL, NULL, 1, 0, NULL) RETURNING id AS new_id \gset
INSERT INTO events (id, link_id, account_id, livemode, type, created_at, actor, reason, link, previous_attributes, refund) VALUES ('evt_Q' || {ordered}, :new_id, '{account}', false, 'payment_link.created', now(), '{{"type": "api_key","id": "key_bench"}}', NULL, $snap${snapshot}$snap$, NULL, NULL);
COMMIT;
"#
    );
    Writes {
        cancel: pgbench(url, "cancel", &cancel, duration, scratch),
        create: pgbench(url, "create", &create, duration, scratch),
    }
}

fn pgbench(url: &str, name: &str, script: &str, duration: Duration, scratch: &Path) -> f64 {
    let file = scratch.join(format!("{name}.sql"));
    std::fs::write(&file, script).unwrap();
    let output = Command::new("timeout")
        .arg(format!("{}", duration.as_secs() + 60))
        .arg("pgbench")
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            &CLIENTS.to_string(),
            "-j",
            "2",
        ])
        .arg(format!("-T{}", duration.as_secs()))
        .arg("-f")
        .arg(&file)
        .arg(url)
        .output()
        .expect("run pgbench (PostgreSQL's client tools)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench {name} failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("pgbench printed no tps: {text}"))
}

/// pgbench reads `:name` anywhere in a script as a variable, quotes or
/// not; the JSON goes in with a space after each structural colon and the
/// colons inside its strings escaped (`\u003a`): the same document.
fn without_variables(json: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let pretty = serde_json::to_string_pretty(&value)
        .unwrap()
        .replace('\n', " ");
    let mut out = String::with_capacity(pretty.len());
    let mut chars = pretty.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() != Some(&' ') {
            out.push_str("\\u003a");
        } else {
            out.push(c);
        }
    }
    out
}

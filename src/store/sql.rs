//! SQL both backends share, so each rule is written once: the column
//! lists, the decoding of stored enum words, the effective-status rule (an
//! active link past `expires_at` reads `expired`, as
//! `domain::Link::effective_status` says) and the predicates of a
//! [`LinkFilter`]. A backend supplies a [`QueryWriter`]: how it writes
//! text, binds a value, and asks its JSON columns.

use jiff::Timestamp;

use crate::domain::{LinkFilter, LinkStatus};

pub const LINK_COLUMNS: &str = "id, account_id, livemode, slug, amount, currency, description, payment_type, \
     customer, line_items, order_reference, metadata, success_url, cancel_url, status, expires_at, \
     created_at, updated_at, cancelled_at, cancellation_reason, paid_at, payment_id, version, amount_refunded, customer_message";

pub const EVENT_COLUMNS: &str =
    "id, type, created_at, actor, reason, link, previous_attributes, refund";

pub const ENDPOINT_COLUMNS: &str = "id, account_id, livemode, url, description, events, format, enabled, \
     disabled_reason, secret, retired_secrets, created_at, updated_at";

pub const ATTEMPT_COLUMNS: &str = "id, link_id, account_id, livemode, amount, currency, processor, state, \
     payment_id, failure_message, card_brand, card_last4, created_at, updated_at, processor_reference";

/// The position of column `name` in `columns` (one of the lists above),
/// so a row is read by index: rusqlite finds a column by name by comparing
/// it with every column's name, which for a link's 25 columns was a tenth
/// of a retrieve's CPU. Meant for `const` context, where a name missing
/// from the list fails the build.
pub const fn column_index(columns: &str, name: &str) -> usize {
    let (list, name) = (columns.as_bytes(), name.as_bytes());
    let (mut at, mut index) = (0, 0);
    while at < list.len() {
        while at < list.len() && list[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while at < list.len() && list[at] != b',' {
            at += 1;
        }
        let mut end = at;
        while end > start && list[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        if end - start == name.len() {
            let mut same = true;
            let mut i = 0;
            while i < name.len() {
                if list[start + i] != name[i] {
                    same = false;
                }
                i += 1;
            }
            if same {
                return index;
            }
        }
        index += 1;
        at += 1;
    }
    panic!("no such column in the list");
}

/// A stored enum word read back (`what` names it in the error).
pub fn decode<T>(what: &str, word: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, String> {
    parse(word).ok_or_else(|| format!("unknown {what} {word}"))
}

/// A value a query binds.
pub enum Param {
    Time(Timestamp),
    Text(String),
}

/// How a backend writes a query.
pub trait QueryWriter {
    fn sql(&mut self, text: &str);
    fn bind(&mut self, value: Param);
    /// `l.line_items` holds an item of this product.
    fn has_product(&mut self, product_id: &str);
    /// `l.metadata` maps `key` to the text `value`.
    fn has_metadata(&mut self, key: &str, value: &str);
}

/// The effective status of link `l` at `now`, as a SQL expression.
pub fn effective_status(query: &mut impl QueryWriter, now: Timestamp) {
    query.sql("case when l.status = 'active' and l.expires_at <= ");
    query.bind(Param::Time(now));
    query.sql(" then 'expired' else l.status end");
}

/// `and ...` for each condition of `filter`; `status` is the effective one.
pub fn link_filter(query: &mut impl QueryWriter, filter: &LinkFilter, now: Timestamp) {
    if let Some(status) = filter.status {
        match status {
            LinkStatus::Active => {
                query.sql(" and l.status = 'active' and l.expires_at > ");
                query.bind(Param::Time(now));
            }
            LinkStatus::Expired => {
                query
                    .sql(" and (l.status = 'expired' or (l.status = 'active' and l.expires_at <= ");
                query.bind(Param::Time(now));
                query.sql("))");
            }
            LinkStatus::Processing | LinkStatus::Paid | LinkStatus::Cancelled => {
                query.sql(" and l.status = ");
                query.bind(Param::Text(status.as_str().into()));
            }
        }
    }
    if let Some(after) = filter.created_after {
        query.sql(" and l.created_at > ");
        query.bind(Param::Time(after));
    }
    if let Some(before) = filter.created_before {
        query.sql(" and l.created_at < ");
        query.bind(Param::Time(before));
    }
    if let Some(reference) = &filter.order_reference {
        query.sql(" and l.order_reference = ");
        query.bind(Param::Text(reference.clone()));
    }
    if let Some(payment_id) = &filter.payment_id {
        query.sql(" and l.payment_id = ");
        query.bind(Param::Text(payment_id.clone()));
    }
    if let Some(product_id) = &filter.product_id {
        query.has_product(product_id);
    }
    for (key, value) in &filter.metadata {
        query.has_metadata(key, value);
    }
}

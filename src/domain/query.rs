//! What a merchant can ask for: filters and pages of links and events, and
//! the rows of the stats report. Shared by the native API, every dialect,
//! the service and both stores, so each filter means the same everywhere.

use jiff::Timestamp;

use super::{EventType, LinkStatus};

/// Filters shared by list, bulk cancel and stats. `status` filters on the
/// effective status at `now` (a due active link counts as expired).
#[derive(Debug, Clone, Default)]
pub struct LinkFilter {
    pub status: Option<LinkStatus>,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
    pub order_reference: Option<String>,
    pub product_id: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// The link paid by this payment (`pay_...`).
    pub payment_id: Option<String>,
}

/// Newest first; `starting_after` is the (created_at, id) of the last link
/// of the previous page, so pages never overlap or skip.
#[derive(Debug, Clone)]
pub struct Page {
    pub limit: usize,
    pub starting_after: Option<(Timestamp, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsRow {
    pub status: LinkStatus,
    pub currency: String,
    pub count: i64,
    pub amount: i64,
}

/// Filters of the event log.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event_type: Option<EventType>,
    pub link_id: Option<String>,
}

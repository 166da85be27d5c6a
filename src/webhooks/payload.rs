//! The body of a delivery, in the endpoint's format. Built from the stored
//! event each time, deterministically, so every retry carries the same
//! bytes (and the same `webhook-id`).

use jiff::Timestamp;
use serde::Serialize;

use super::endpoint::PayloadFormat;
use crate::domain::{LinkEvent, LinkStatus};
use crate::http::wire::EventResource;

pub fn body(format: PayloadFormat, event: &LinkEvent, public_url: &str) -> Vec<u8> {
    let body = match format {
        PayloadFormat::Native => serde_json::to_vec(&EventResource::new(event.clone(), public_url)),
        PayloadFormat::Gale => serde_json::to_vec(&GaleEvent::new(event)),
    };
    body.expect("event payloads serialize")
}

/// Gale's webhook event, as its documentation shows it:
/// `{"type": "payment_link.cancelled", "data": {"id", "status",
/// "cancelled_at", "cancellation_reason"}}`, times in whole seconds, UTC.
#[derive(Serialize)]
struct GaleEvent<'a> {
    #[serde(rename = "type")]
    event_type: &'static str,
    data: GaleLinkState<'a>,
}

#[derive(Serialize)]
struct GaleLinkState<'a> {
    id: &'a str,
    status: &'static str,
    cancelled_at: Option<String>,
    cancellation_reason: Option<&'a str>,
}

impl<'a> GaleEvent<'a> {
    fn new(event: &'a LinkEvent) -> Self {
        let link = &event.link;
        Self {
            event_type: event.event_type.as_str(),
            data: GaleLinkState {
                id: &link.id,
                status: gale_status(link.status),
                cancelled_at: link.cancelled_at.map(gale_time),
                cancellation_reason: link.cancellation_reason.as_deref(),
            },
        }
    }
}

/// Gale knows `active, paid, expired, cancelled`; a payment in progress
/// is still `active` to it (it has no word for the moment in between).
pub fn gale_status(status: LinkStatus) -> &'static str {
    match status {
        LinkStatus::Active | LinkStatus::Processing => "active",
        LinkStatus::Paid => "paid",
        LinkStatus::Expired => "expired",
        LinkStatus::Cancelled => "cancelled",
    }
}

/// `2025-10-18T16:00:00Z`, Gale's spelling of a time.
pub fn gale_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gale_times_are_whole_seconds_in_utc() {
        let at: Timestamp = "2025-10-18T16:00:00.123456Z".parse().unwrap();
        assert_eq!(gale_time(at), "2025-10-18T16:00:00Z");
    }
}

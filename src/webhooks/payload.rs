//! The body of a delivery, in the endpoint's format. Built from the stored
//! event each time, deterministically, so every retry carries the same
//! bytes (and the same `webhook-id`).

use serde::Serialize;

use super::endpoint::PayloadFormat;
use crate::dialects::{gale, iso_seconds};
use crate::domain::LinkEvent;
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
                status: gale::status_word(link.status),
                cancelled_at: link.cancelled_at.map(iso_seconds),
                cancellation_reason: link.cancellation_reason.as_deref(),
            },
        }
    }
}

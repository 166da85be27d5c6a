//! The formats a webhook endpoint can ask for, gathered for the dispatcher:
//! the native event object (`http::wire`) and Gale's event (its dialect).

use crate::dialects::gale;
use crate::domain::LinkEvent;
use crate::domain::webhook::endpoint::PayloadFormat;
use crate::http::wire::EventResource;
use crate::webhooks::payload::PayloadRenderer;

pub struct Payloads {
    /// Base of hosted page URLs (the native event carries the link's URL).
    pub public_url: String,
}

impl PayloadRenderer for Payloads {
    fn render(&self, format: PayloadFormat, event: &LinkEvent) -> Vec<u8> {
        match format {
            PayloadFormat::Native => {
                serde_json::to_vec(&EventResource::new(event.clone(), &self.public_url))
                    .expect("event payloads serialize")
            }
            PayloadFormat::Gale => gale::webhook_event(event),
        }
    }
}

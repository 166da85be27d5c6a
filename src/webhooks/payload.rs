//! The body of a delivery, in the endpoint's format. Built from the stored
//! event each time, deterministically, so every retry carries the same
//! bytes (and the same `webhook-id`).
//!
//! The formats themselves belong to the layers that own them (the native
//! event object to `http`, Gale's to its dialect); the composition root
//! (`crate::app`) hands the dispatcher a renderer that knows them all.

use crate::domain::LinkEvent;
use crate::domain::webhook::endpoint::PayloadFormat;

/// Renders an event in one of the formats an endpoint can ask for.
pub trait PayloadRenderer: Send + Sync + 'static {
    fn render(&self, format: PayloadFormat, event: &LinkEvent) -> Vec<u8>;
}

//! The native v1 wire format: request and response bodies, translated to and
//! from domain types. Kept apart from the domain so the JSON contract (and
//! the OpenAPI document generated from these types) is explicit.

mod events;
mod links;
mod webhooks;

pub use events::*;
pub use links::*;
pub use webhooks::*;

//! The webhook model: endpoints and their secrets, deliveries and their
//! attempts, the retry schedule, and Standard Webhooks signatures. Pure, so
//! the store can persist it and the service decide with it without either
//! knowing how a delivery is sent (that is `crate::webhooks`).

pub mod delivery;
pub mod endpoint;
pub mod schedule;
pub mod signing;

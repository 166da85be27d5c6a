//! Webhooks: endpoints, signed deliveries from the events outbox, retries.
//!
//! Every event row is written together with a pending delivery per
//! interested endpoint (see the store). The [`dispatcher`] claims due
//! deliveries, sends each through a [`transport::Transport`] with no
//! transaction open, and records the attempt and what comes next.

pub mod delivery;
pub mod dispatcher;
pub mod endpoint;
pub mod payload;
pub mod schedule;
pub mod signing;
pub mod ssrf;
pub mod transport;

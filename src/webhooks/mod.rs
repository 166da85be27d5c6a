//! Webhook delivery: the worker that sends the events outbox.
//!
//! Every event row is written together with a pending delivery per
//! interested endpoint (see the store). The [`dispatcher`] claims due
//! deliveries, sends each through a [`transport::Transport`] with no
//! transaction open, and records the attempt and what comes next. The
//! bodies come from a [`payload::PayloadRenderer`] handed in at start-up,
//! so delivery knows no wire format of its own (the model it works on is
//! `crate::domain::webhook`).

pub mod dispatcher;
pub mod payload;
pub mod transport;

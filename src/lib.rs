//! paylink: self-hostable payment links.
//!
//! `domain` holds the rules (no I/O), `store` persists, `service` runs each
//! use case as one atomic write, `payments` talks to processors (the
//! built-in test processor and Stripe), `secrets` seals what they need at
//! rest, `http` speaks the native API (and receives processors' webhooks),
//! `dialects` the five providers' formats, `checkout` is the hosted page,
//! `webhooks` delivers events, and `server` runs it all. The binary in
//! `main.rs` is a thin CLI over this library.
//!
//! One rule runs through every layer (DESIGN.md section 0, README
//! "Durability"): once a request has started a change, the change runs to
//! its end whatever the connection does (`http::detach`), and what a crash
//! can still cut is finished by a reconciler (`server`, payment attempts
//! in `domain::payment`, refunds in `domain::refund`, idempotency marks in
//! `store`).

pub mod app;
pub mod checkout;
pub mod clock;
pub mod connections;
pub mod dialects;
pub mod domain;
pub mod http;
pub mod payments;
pub mod secrets;
pub mod server;
pub mod service;
pub mod ssrf;
pub mod store;
pub mod web;
pub mod webhooks;

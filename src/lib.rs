//! paylink: self-hostable payment links.
//!
//! Layers, each importing only those below it (README "Architecture"):
//! `domain` holds the rules (no I/O); `store` persists them; `payments`
//! talks to processors (the built-in test processor and Stripe); `service`
//! runs each use case as one atomic write; `web` is the HTTP plumbing the
//! merchant surfaces share; `http` is the native API, `dialects` the five
//! providers' formats, `checkout` the hosted page, `webhooks` the delivery
//! worker; `app` composes them, and `server` runs it all. `clock`,
//! `secrets`, `ssrf` and `connections` are leaves any layer may use. The
//! binary in `main.rs` is a thin CLI over this library.
//!
//! One rule runs through every layer (DESIGN.md section 0, README
//! "Durability"): once a request has started a change, the change runs to
//! its end whatever the connection does (`web::detach`), and what a crash
//! can still cut is finished by a reconciler (`server`, payment attempts
//! in `domain::payment`, refunds in `domain::refund`, idempotency marks in
//! `store`).

pub mod app;
pub mod checkout;
pub mod client;
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
pub mod telemetry;
pub mod web;
pub mod webhooks;

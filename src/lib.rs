//! paylink: self-hostable payment links.
//!
//! `domain` holds the rules (no I/O), `store` persists, `service` runs each
//! use case as one atomic write, `http` speaks the native API, `dialects`
//! the five providers' formats, `webhooks` delivers events, and `server`
//! runs it all. The binary in `main.rs` is a thin CLI over this library.
//!
//! One rule runs through every layer (DESIGN.md section 0, README
//! "Durability"): once a request has started a change, the change runs to
//! its end whatever the connection does (`http::detach`), and what a crash
//! can still cut is finished by a reconciler (`server`, payment attempts
//! in `domain::payment`, idempotency marks in `store`).

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
pub mod store;
pub mod webhooks;

//! Webhook building blocks, pure and tested on their own: Standard Webhooks
//! signing, the retry schedule, and the SSRF guard for endpoint URLs.
//!
//! Delivery itself (endpoints API, outbox dispatcher, attempts) is not wired
//! yet; these are the parts it will call, so each can be trusted first.

pub mod schedule;
pub mod signing;
pub mod ssrf;

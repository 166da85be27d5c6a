//! Integration tests: a real server on a real port over a real database.

mod helpers;

mod auth;
mod bulk_and_stats;
mod cancel;
mod cli;
mod expiry;
mod list;
mod protocol;
mod update;
mod validation;

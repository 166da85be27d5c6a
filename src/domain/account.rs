//! Accounts, their API keys and their processors: who a request acts for.

use jiff::Timestamp;

/// The account and mode a request acts in; every link query is scoped by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub account_id: String,
    pub livemode: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub suspended: bool,
    pub created_at: Timestamp,
}

/// A stored API key: its hash and a short display prefix, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub account_id: String,
    pub livemode: bool,
    pub key_hash: String,
    pub key_prefix: String,
    pub created_at: Timestamp,
    /// From then on the key is refused: set by a revoke (now) or a roll
    /// (when the old key's grace period ends).
    pub expires_at: Option<Timestamp>,
    /// Roughly when the key last authenticated (written at most once a
    /// minute per key, off the request's path).
    pub last_used_at: Option<Timestamp>,
}

impl ApiKeyRecord {
    /// Is the key refused at `now`?
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// An account's processor in one mode: its name and its configuration,
/// sealed (see `crate::secrets`), never in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorAccount {
    pub processor: String,
    pub sealed_config: String,
    pub updated_at: Timestamp,
}

//! Idempotency keys: the claim a request makes on its key, the mark its
//! change carries, and the answer kept for replay.

use jiff::Timestamp;

use super::account::Scope;

/// A response kept for replay under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The outcome of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// This request owns the key: run it, then complete or release the key.
    /// `committed_event` is set when this is a takeover of a claim whose
    /// request committed its change and then died before storing its
    /// answer: the change must be recalled from that event, not run again.
    Claimed { committed_event: Option<String> },
    /// Another request has the key: its fingerprint, and its response once
    /// it finished (`None` while it is still running).
    Existing {
        fingerprint: String,
        response: Option<StoredResponse>,
    },
}

/// The idempotency key a change is made under: the store marks the key
/// with the change's event in the change's own transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyMark {
    pub scope: Scope,
    pub key: String,
}

/// Times that bound an idempotency claim.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyWindow {
    pub now: Timestamp,
    /// Keys created before this are forgotten (24 hours).
    pub expired_before: Timestamp,
    /// A claim with no response created before this was abandoned (its
    /// node died mid-request) and may be taken over.
    pub abandoned_before: Timestamp,
}

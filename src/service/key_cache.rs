//! Authenticated keys, remembered for at most [`KEY_CACHE_TTL`].
//!
//! Every merchant request authenticates; without this, each one costs a
//! database read (a key joined to its account) before any work of its own.
//! An entry is the key's row and its account's as read from the database,
//! and it is used only while younger than the TTL; past it the next
//! request reads the database again. That is the whole promise: a revoke,
//! a roll's end of grace or a suspension, made by any node or by the CLI
//! on the shared database, is refused by every node within one second.
//! An expiry time already in the row (a rolled key's grace) is checked on
//! every request against the clock, so it holds to the instant; changes
//! this node makes itself clear the cache at once.
//!
//! Only keys that authenticated are kept (a wrong key is never cached, so
//! a stream of bad keys cannot fill memory; those are rate limited by
//! address instead), and expired entries are dropped once the map is
//! large.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::domain::{Account, ApiKeyRecord};

/// The longest a cached key outlives a change to it in the database.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);
/// Past this many entries, expired ones are swept on insert.
const SWEEP_ABOVE: usize = 1024;

#[derive(Clone)]
pub struct CachedKey {
    pub key: ApiKeyRecord,
    pub account: Account,
}

struct Entry {
    cached: CachedKey,
    read_at: Instant,
}

#[derive(Default)]
pub struct KeyCache {
    /// By the key's hash (the secret itself is never kept).
    entries: Mutex<HashMap<String, Entry>>,
}

impl KeyCache {
    /// The key with this hash, if read from the database less than a TTL ago.
    pub fn get(&self, key_hash: &str) -> Option<CachedKey> {
        let entries = self.entries();
        let entry = entries.get(key_hash)?;
        (entry.read_at.elapsed() < KEY_CACHE_TTL).then(|| entry.cached.clone())
    }

    /// Remembers a key just read from the database.
    pub fn insert(&self, cached: CachedKey, read_at: Instant) {
        let mut entries = self.entries();
        if entries.len() >= SWEEP_ABOVE {
            entries.retain(|_, entry| entry.read_at.elapsed() < KEY_CACHE_TTL);
        }
        entries.insert(cached.key.key_hash.clone(), Entry { cached, read_at });
    }

    /// Notes a last use this node is recording, so the copy does not ask
    /// for the same write again before it expires.
    pub fn used(&self, key_hash: &str, at: Timestamp) {
        if let Some(entry) = self.entries().get_mut(key_hash) {
            entry.cached.key.last_used_at = Some(at);
        }
    }

    /// Forgets every key: this node changed a key or an account.
    pub fn clear(&self) {
        self.entries().clear();
    }

    /// The map holds no invariant a panic could break halfway.
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

//! Identifiers and secrets: prefixed, random, base62.
//!
//! Ids are never derived from counters so they cannot be enumerated; slugs and
//! API keys carry well over 128 random bits because knowing one is enough to
//! pay a link or act as a merchant.
//!
//! The ids of rows written on every request (links, events, payments,
//! attempts, refunds) start with the time they were made, as UUIDv7 and
//! ULID do: each index keyed by such an id then takes new rows on its
//! newest page instead of on a random one, which is most of the pages a
//! create writes to the WAL (BENCHMARKS.md, "Pages per write"). The random
//! part after the time still has 95 bits, so an id cannot be guessed.

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` characters drawn uniformly from base62 (log2(62) ≈ 5.95 bits each).
///
/// The bytes come from rand's thread-local generator: ChaCha12, seeded
/// from the operating system and reseeded from it every 64 KiB, a
/// cryptographically secure generator without a system call per id (a
/// create draws four: request id, link id, slug, event id; the
/// `getrandom` call each made was 2.6 % of a create's CPU).
pub fn random_base62(len: usize) -> String {
    use rand::Rng;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    let mut random = rand::rng();
    while out.len() < len {
        random.fill_bytes(&mut buf);
        for &byte in &buf {
            // 248 = 4 * 62: rejecting larger bytes keeps every character equally likely.
            if byte < 248 && out.len() < len {
                out.push(ALPHABET[usize::from(byte % 62)] as char);
            }
        }
    }
    out
}

/// Characters of an ordered id that carry its time: milliseconds since
/// 1970 in base62, zero-padded (eight digits last until the year 8900).
const TIME_DIGITS: usize = 8;

/// `len` (> [`TIME_DIGITS`]) base62 characters: the current millisecond,
/// then random ones. Ids made later sort after earlier ones (to the
/// millisecond; within one, in random order).
pub fn time_ordered_base62(len: usize) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    let mut digits = [b'0'; TIME_DIGITS];
    let mut rest = millis;
    for digit in digits.iter_mut().rev() {
        *digit = ALPHABET[(rest % 62) as usize];
        rest /= 62;
    }
    let mut out = String::with_capacity(len);
    out.extend(digits.iter().map(|&d| d as char));
    out.push_str(&random_base62(len - TIME_DIGITS));
    out
}

/// 24 chars: the time, then 16 random ones (≈ 95 bits).
pub fn new_link_id() -> String {
    format!("plink_{}", time_ordered_base62(24))
}

/// The public last segment of a hosted page URL: the time, then 22
/// random chars (≈ 131 bits), so the slug index too takes new links on
/// its newest page.
pub fn new_slug() -> String {
    time_ordered_base62(TIME_DIGITS + 22)
}

pub fn new_event_id() -> String {
    format!("evt_{}", time_ordered_base62(24))
}

pub fn new_account_id() -> String {
    format!("acct_{}", random_base62(20))
}

pub fn new_api_key_id() -> String {
    format!("key_{}", random_base62(20))
}

pub fn new_payment_id() -> String {
    format!("pay_{}", time_ordered_base62(24))
}

/// A payment attempt; the processor's idempotency key for it.
pub fn new_attempt_id() -> String {
    format!("pa_{}", time_ordered_base62(24))
}

/// A refund; the processor's idempotency key for it.
pub fn new_refund_id() -> String {
    format!("re_{}", time_ordered_base62(24))
}

pub fn new_webhook_endpoint_id() -> String {
    format!("we_{}", random_base62(24))
}

/// A secret API key, `pl_test_` or `pl_live_` + 32 chars ≈ 190 random bits.
pub fn new_api_key_secret(livemode: bool) -> String {
    let mode = if livemode { "live" } else { "test" };
    format!("pl_{mode}_{}", random_base62(32))
}

/// Does `text` look like an id this service could have issued with `prefix`?
/// Used to answer malformed ids without a database round trip.
pub fn is_well_formed(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_prefix_and_length() {
        let id = new_link_id();
        assert!(id.starts_with("plink_"));
        assert_eq!(id.len(), 6 + 24);
        assert!(is_well_formed(&id, "plink_"));
        assert!(!is_well_formed("plink_", "plink_"));
        assert!(!is_well_formed("plink_a-b", "plink_"));
        assert_ne!(new_link_id(), new_link_id());
    }

    #[test]
    fn ordered_ids_sort_by_the_time_they_were_made() {
        let earlier = new_event_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = new_event_id();
        assert!(earlier < later, "{earlier} should sort before {later}");
        assert_eq!(later.len(), 4 + 24);
        assert!(is_well_formed(&later, "evt_"));
        // The random part differs between two ids of one millisecond.
        assert_ne!(&new_link_id()[14..], &new_link_id()[14..]);
    }

    #[test]
    fn keys_name_their_mode() {
        assert!(new_api_key_secret(false).starts_with("pl_test_"));
        assert!(new_api_key_secret(true).starts_with("pl_live_"));
        assert_eq!(new_api_key_secret(true).len(), 8 + 32);
    }
}

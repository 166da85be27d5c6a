//! When to try a webhook delivery again: immediately, then 5 s, 5 min,
//! 30 min, 2 h, 5 h, 10 h and 10 h (about 28 hours in all), honouring a
//! receiver's `Retry-After` when it asks for longer. After the last, the
//! delivery is failed (and can be redelivered by hand).

use std::time::Duration;

/// Delays before attempts 2, 3, ... (attempt 1 is immediate).
pub const RETRY_DELAYS: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// Longest `Retry-After` honoured; a receiver cannot park a delivery forever.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The delay before the next attempt after `attempts_made` failed attempts,
/// or `None` when the delivery has used every attempt.
pub fn next_delay(attempts_made: usize, retry_after: Option<Duration>) -> Option<Duration> {
    let scheduled = *RETRY_DELAYS.get(attempts_made.checked_sub(1)?)?;
    Some(match retry_after {
        Some(asked) => scheduled.max(asked.min(MAX_RETRY_AFTER)),
        None => scheduled,
    })
}

/// A `Retry-After` header value: delay in seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    Some(Duration::try_from(at.duration_since(now)).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_then_failure() {
        let delays: Vec<_> = (1..=8).map(|attempts| next_delay(attempts, None)).collect();
        assert_eq!(
            delays,
            [
                Some(Duration::from_secs(5)),
                Some(Duration::from_secs(300)),
                Some(Duration::from_secs(1800)),
                Some(Duration::from_secs(7200)),
                Some(Duration::from_secs(18000)),
                Some(Duration::from_secs(36000)),
                Some(Duration::from_secs(36000)),
                None,
            ]
        );
        assert_eq!(
            next_delay(0, None),
            None,
            "no attempt made, nothing to retry"
        );
    }

    #[test]
    fn retry_after_is_honoured_when_longer_and_capped() {
        assert_eq!(
            next_delay(1, Some(Duration::from_secs(60))),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            next_delay(2, Some(Duration::from_secs(60))),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            next_delay(1, Some(Duration::from_secs(7 * 86400))),
            Some(MAX_RETRY_AFTER)
        );
        let now: jiff::Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 12:10:00 GMT", now),
            Some(Duration::from_secs(600))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}

//! Rate limits: a token bucket per API key, and a separate bucket per client
//! address for failed authentication, so a flood of bad keys spends only its
//! own budget, never a merchant's.
//!
//! Buckets live in each node's memory: with N nodes behind a balancer a key
//! may get up to N times its rate. That keeps a network hop off every
//! request; a shared limit would need a shared store (Redis), which paylink
//! does not otherwise require.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

type KeyedLimiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

#[derive(Debug, Clone, Copy)]
pub struct RateLimitSettings {
    /// Sustained requests per second per API key.
    pub per_second: u32,
    /// Requests a key may make at once before the sustained rate applies.
    pub burst: u32,
    /// Failed authentications per second per client address.
    pub failed_auth_per_second: u32,
    pub failed_auth_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_second: 100,
            burst: 200,
            failed_auth_per_second: 10,
            failed_auth_burst: 30,
        }
    }
}

/// A limiter's verdict, with what the `RateLimit-Policy` and `RateLimit`
/// headers report.
#[derive(Debug, Clone, Copy)]
pub enum Verdict {
    Allowed {
        policy: Policy,
        remaining: u32,
        reset_secs: u64,
    },
    Limited {
        policy: Policy,
        retry_after_secs: u64,
    },
}

/// A token bucket as a quota policy of draft-ietf-httpapi-ratelimit-headers:
/// `quota` requests (the burst) per `window_secs` (the time the bucket
/// takes to refill from empty).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub name: &'static str,
    pub quota: u32,
    pub window_secs: u64,
}

impl Policy {
    fn of_bucket(name: &'static str, per_second: u32, burst: u32) -> Self {
        Self {
            name,
            quota: burst,
            window_secs: u64::from(burst)
                .div_ceil(u64::from(per_second.max(1)))
                .max(1),
        }
    }
}

pub struct RateLimits {
    settings: RateLimitSettings,
    per_key: KeyedLimiter<String>,
    failed_auth: KeyedLimiter<IpAddr>,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let per_second = NonZeroU32::new(per_second.max(1)).expect("non-zero");
    let burst = NonZeroU32::new(burst.max(1)).expect("non-zero");
    Quota::per_second(per_second).allow_burst(burst)
}

impl RateLimits {
    pub fn new(settings: RateLimitSettings) -> Self {
        Self {
            settings,
            per_key: RateLimiter::keyed(quota(settings.per_second, settings.burst))
                .with_middleware(),
            failed_auth: RateLimiter::keyed(quota(
                settings.failed_auth_per_second,
                settings.failed_auth_burst,
            ))
            .with_middleware(),
        }
    }

    /// Spends one request of the API key's budget.
    pub fn check_key(&self, key_id: &str) -> Verdict {
        check(
            &self.per_key,
            &key_id.to_owned(),
            Policy::of_bucket("default", self.settings.per_second, self.settings.burst),
            self.settings.per_second,
        )
    }

    /// Spends one failed authentication of the address's budget.
    pub fn check_failed_auth(&self, address: IpAddr) -> Verdict {
        check(
            &self.failed_auth,
            &address,
            Policy::of_bucket(
                "failed_auth",
                self.settings.failed_auth_per_second,
                self.settings.failed_auth_burst,
            ),
            self.settings.failed_auth_per_second,
        )
    }

    /// Forgets buckets that are full again (bounded memory).
    pub fn forget_idle(&self) {
        self.per_key.retain_recent();
        self.failed_auth.retain_recent();
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &KeyedLimiter<K>,
    key: &K,
    policy: Policy,
    per_second: u32,
) -> Verdict {
    match limiter.check_key(key) {
        Ok(snapshot) => {
            let remaining = snapshot.remaining_burst_capacity();
            let missing = u64::from(policy.quota.saturating_sub(remaining));
            Verdict::Allowed {
                policy,
                remaining,
                reset_secs: missing.div_ceil(u64::from(per_second.max(1))),
            }
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(limiter.clock().now());
            Verdict::Limited {
                policy,
                retry_after_secs: round_up_secs(wait),
            }
        }
    }
}

fn round_up_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl Verdict {
    /// The headers of draft-ietf-httpapi-ratelimit-headers (structured
    /// fields): `RateLimit-Policy: "default";q=200;w=2` (the quota and its
    /// window) and `RateLimit: "default";r=150;t=1` (what remains, and the
    /// seconds until the quota is whole again); `Retry-After` when limited.
    pub fn write_headers(self, headers: &mut HeaderMap) {
        // Names made at build time: from a `&str`, each insert parsed and
        // checked the name again (1.6 % of a read's instructions).
        const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
        const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
        let (policy, remaining, reset) = match self {
            Verdict::Allowed {
                policy,
                remaining,
                reset_secs,
            } => (policy, remaining, reset_secs),
            Verdict::Limited {
                policy,
                retry_after_secs,
            } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
                (policy, 0, retry_after_secs)
            }
        };
        let Policy {
            name,
            quota,
            window_secs,
        } = policy;
        let policy = format!("\"{name}\";q={quota};w={window_secs}");
        let state = format!("\"{name}\";r={remaining};t={reset}");
        for (header, value) in [(RATELIMIT_POLICY, policy), (RATELIMIT, state)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(header, value);
            }
        }
    }
}

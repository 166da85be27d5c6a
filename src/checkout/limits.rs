//! The hosted page's own rate limits, against card testing (many card
//! numbers tried on one link, or from one address) and slug enumeration
//! (many unknown slugs from one address). Answered with the page's own 429
//! page. Per node and per client address as the socket sees it; behind a
//! reverse proxy, the proxy should limit by the real client too.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// A budget: `per_minute` sustained, `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub per_minute: u32,
    pub burst: u32,
}

impl Budget {
    fn quota(self) -> Quota {
        let per_minute = self.per_minute.max(1);
        let period = Duration::from_secs(60) / per_minute;
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct CheckoutLimitSettings {
    /// Payment submissions to one link.
    pub payments_per_link: Budget,
    /// Payment submissions from one address, over all links.
    pub payments_per_address: Budget,
    /// Pages asked for slugs that do not exist, from one address.
    pub unknown_slugs_per_address: Budget,
}

impl Default for CheckoutLimitSettings {
    fn default() -> Self {
        // A customer mistypes a card a few times; a card tester tries
        // hundreds. A shop's customers behind one NAT share an address.
        Self {
            payments_per_link: Budget {
                per_minute: 2,
                burst: 5,
            },
            payments_per_address: Budget {
                per_minute: 10,
                burst: 20,
            },
            unknown_slugs_per_address: Budget {
                per_minute: 20,
                burst: 20,
            },
        }
    }
}

pub struct CheckoutLimits {
    per_link: Keyed<String>,
    per_address: Keyed<IpAddr>,
    unknown_per_address: Keyed<IpAddr>,
}

impl CheckoutLimits {
    pub fn new(settings: CheckoutLimitSettings) -> Self {
        Self {
            per_link: RateLimiter::keyed(settings.payments_per_link.quota()),
            per_address: RateLimiter::keyed(settings.payments_per_address.quota()),
            unknown_per_address: RateLimiter::keyed(settings.unknown_slugs_per_address.quota()),
        }
    }

    /// Spends one payment submission of the link's and the address's budgets.
    pub fn allow_payment(&self, slug: &str, address: IpAddr) -> bool {
        // Both are spent, so a tester cannot dodge one budget with the other.
        let link = self.per_link.check_key(&slug.to_owned()).is_ok();
        let address = self.per_address.check_key(&address).is_ok();
        link && address
    }

    /// Whether `address` may ask for another page (its unknown-slug budget is not spent).
    pub fn unknown_slug_budget_left(&self, address: IpAddr) -> bool {
        self.unknown_per_address.check_key(&address).is_ok()
    }

    pub fn forget_idle(&self) {
        self.per_link.retain_recent();
        self.per_address.retain_recent();
        self.unknown_per_address.retain_recent();
    }
}

//! The source of "now". Production reads the system clock; tests move a
//! manual clock so expiry can be exercised without sleeping.

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp, Unit};

pub trait Clock: Send + Sync + 'static {
    /// Now, at microsecond precision (what storage keeps).
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        truncate_to_micros(Timestamp::now())
    }
}

/// A clock that only moves when told to.
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn starting_now() -> Self {
        Self(Mutex::new(truncate_to_micros(Timestamp::now())))
    }

    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.0.lock().expect("clock lock poisoned");
        *now = truncate_to_micros(*now + by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock lock poisoned")
    }
}

pub fn truncate_to_micros(at: Timestamp) -> Timestamp {
    at.round(jiff::TimestampRound::new().smallest(Unit::Microsecond).mode(jiff::RoundMode::Trunc))
        .unwrap_or(at)
}

//! The source of "now". Production reads the system clock; tests shift it
//! forward so expiry can be exercised without sleeping.

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

/// The system clock shifted by an offset that tests move forward, so expiry
/// can be exercised without sleeping while time still flows normally.
#[derive(Default)]
pub struct ShiftedClock(Mutex<SignedDuration>);

impl ShiftedClock {
    pub fn advance(&self, by: SignedDuration) {
        let mut offset = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *offset += by;
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        let offset = *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        truncate_to_micros(Timestamp::now() + offset)
    }
}

pub fn truncate_to_micros(at: Timestamp) -> Timestamp {
    at.round(
        jiff::TimestampRound::new()
            .smallest(Unit::Microsecond)
            .mode(jiff::RoundMode::Trunc),
    )
    .unwrap_or(at)
}

//! Deliveries: one per (event, endpoint), with every attempt recorded, and
//! the rule that turns an attempt's outcome into what happens next.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::endpoint::WebhookEndpoint;
use super::schedule;
use crate::domain::LinkEvent;

/// How long a node holds a claimed delivery. Longer than the 15 s request
/// timeout plus recording, so while the claiming node lives no other node
/// can take the delivery; if it dies, the delivery is free again after this.
pub const LEASE: SignedDuration = SignedDuration::from_secs(60);

/// Why an endpoint was disabled by the service rather than by its owner.
pub const GONE_REASON: &str =
    "The receiver answered 410 Gone; re-enable the endpoint to resume deliveries.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or being attempted right now).
    Pending,
    Succeeded,
    /// Every scheduled attempt failed, the receiver answered 410, or the
    /// endpoint was deleted. `POST /v1/events/{id}/redeliver` tries again.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(DeliveryStatus::Pending),
            "succeeded" => Some(DeliveryStatus::Succeeded),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One HTTP attempt as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub attempted_at: Timestamp,
    /// The receiver's status code; `None` when no response came.
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    /// Why the attempt failed, in words (timeout, refused, HTTP 500, ...).
    pub error: Option<String>,
}

/// An attempt at one delivery and where the delivery goes next: what the
/// dispatcher records after each send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub event_id: String,
    pub endpoint_id: String,
    pub attempt: Attempt,
    pub next: NextStep,
}

/// A delivery as `GET /v1/events/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub event_id: String,
    pub endpoint_id: String,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<Timestamp>,
    /// Oldest first, across redeliveries.
    pub attempts: Vec<Attempt>,
    pub created_at: Timestamp,
}

/// A delivery this node has claimed (leased) and must now attempt.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub event: LinkEvent,
    pub endpoint: WebhookEndpoint,
    /// Attempts already made in the current schedule (reset by redelivery).
    pub attempts_made: u32,
}

/// What a receiver did with an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No HTTP response: refused, reset, timed out, or not allowed to connect.
    NoResponse { error: String },
}

/// Where a delivery goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Succeeded,
    RetryAt(Timestamp),
    Failed,
    /// The receiver answered 410 Gone: fail the delivery and disable the endpoint.
    EndpointGone,
}

impl NextStep {
    /// Decides after attempt number `attempts_made` (1-based) at `now`.
    /// Only 2xx is success; a redirect is a failure (it is never followed).
    pub fn after(outcome: &SendOutcome, attempts_made: u32, now: Timestamp) -> Self {
        let retry_after = match outcome {
            SendOutcome::Answered { status, .. } if (200..300).contains(status) => {
                return NextStep::Succeeded;
            }
            SendOutcome::Answered { status: 410, .. } => return NextStep::EndpointGone,
            SendOutcome::Answered { retry_after, .. } => *retry_after,
            SendOutcome::NoResponse { .. } => None,
        };
        match schedule::next_delay(attempts_made as usize, retry_after) {
            Some(delay) => NextStep::RetryAt(
                now + SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX),
            ),
            None => NextStep::Failed,
        }
    }

    /// The delivery's status after this step, and when it is next due.
    pub fn delivery_state(self) -> (DeliveryStatus, Option<Timestamp>) {
        match self {
            NextStep::Succeeded => (DeliveryStatus::Succeeded, None),
            NextStep::RetryAt(at) => (DeliveryStatus::Pending, Some(at)),
            NextStep::Failed | NextStep::EndpointGone => (DeliveryStatus::Failed, None),
        }
    }
}

/// The attempt record of an outcome.
pub fn attempt_record(
    outcome: &SendOutcome,
    attempted_at: Timestamp,
    latency: Duration,
) -> Attempt {
    let (status_code, error) = match outcome {
        SendOutcome::Answered { status, .. } if (200..300).contains(status) => {
            (Some(*status), None)
        }
        SendOutcome::Answered { status, .. } if (300..400).contains(status) => (
            Some(*status),
            Some(format!("HTTP {status}: redirects are not followed")),
        ),
        SendOutcome::Answered { status, .. } => (Some(*status), Some(format!("HTTP {status}"))),
        SendOutcome::NoResponse { error } => (None, Some(error.clone())),
    };
    Attempt {
        attempted_at,
        status_code,
        latency_ms: i64::try_from(latency.as_millis()).unwrap_or(i64::MAX),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> SendOutcome {
        SendOutcome::Answered {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn only_2xx_succeeds_and_410_disables() {
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(NextStep::after(&answered(204), 1, now), NextStep::Succeeded);
        assert_eq!(
            NextStep::after(&answered(410), 1, now),
            NextStep::EndpointGone
        );
        for status in [301, 302, 400, 404, 429, 500, 503] {
            assert_eq!(
                NextStep::after(&answered(status), 1, now),
                NextStep::RetryAt(now + SignedDuration::from_secs(5)),
                "{status}"
            );
        }
        let refused = SendOutcome::NoResponse {
            error: "connection refused".into(),
        };
        assert_eq!(
            NextStep::after(&refused, 2, now),
            NextStep::RetryAt(now + SignedDuration::from_mins(5))
        );
        assert_eq!(NextStep::after(&refused, 8, now), NextStep::Failed);
    }

    #[test]
    fn a_longer_retry_after_is_honoured() {
        let now = Timestamp::UNIX_EPOCH;
        let busy = SendOutcome::Answered {
            status: 429,
            retry_after: Some(Duration::from_secs(120)),
        };
        assert_eq!(
            NextStep::after(&busy, 1, now),
            NextStep::RetryAt(now + SignedDuration::from_secs(120))
        );
        let record = attempt_record(&busy, now, Duration::from_millis(42));
        assert_eq!(record.status_code, Some(429));
        assert_eq!(record.latency_ms, 42);
        assert_eq!(record.error.as_deref(), Some("HTTP 429"));
    }
}

//! Stripe's webhooks: the `Stripe-Signature` check and what each event
//! means to paylink.

use serde::Deserialize;

use crate::domain::ChargeOutcome;

use super::*;

/// How far a `Stripe-Signature` timestamp may be from now (Stripe's own
/// libraries default to 300 s).
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("no Stripe-Signature header, or one without t= and v1= entries")]
    Malformed,
    #[error("the Stripe-Signature timestamp is more than 5 minutes from now")]
    Stale,
    #[error("no v1 signature matches the body")]
    Mismatch,
}

/// Verifies a Stripe webhook: HMAC-SHA256 of `"{t}.{raw body}"` keyed by
/// the endpoint's signing secret, compared in constant time with every
/// `v1` entry (several appear while Stripe rolls a secret); the timestamp
/// must be within [`SIGNATURE_TOLERANCE_SECS`] of `now`.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secret: &str,
    now: i64,
) -> Result<(), SignatureError> {
    use hmac::{Hmac, KeyInit, Mac};
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > SIGNATURE_TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    for signature in signatures {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|_| SignatureError::Mismatch)?;
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        // `verify_slice` compares in constant time.
        if mac.verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// The parts of a Stripe event paylink reads.
#[derive(Debug, Deserialize)]
pub struct StripeEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: StripeEventData,
}

#[derive(Debug, Deserialize)]
pub struct StripeEventData {
    pub object: serde_json::Value,
}

/// What a Stripe event means for paylink.
#[derive(Debug, PartialEq, Eq)]
pub enum EventEffect {
    /// The attempt's payment has this outcome.
    Payment {
        attempt_id: String,
        outcome: ChargeOutcome,
    },
    /// A refund happened on this PaymentIntent.
    Refunded { payment_intent: String },
    /// Nothing paylink tracks.
    Ignored,
}

impl StripeEvent {
    pub fn effect(&self) -> EventEffect {
        let object = &self.data.object;
        let text = |field: &str| {
            object
                .get(field)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let attempt_id = object
            .pointer("/metadata/paylink_attempt_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        match (self.event_type.as_str(), attempt_id) {
            ("payment_intent.succeeded", Some(attempt_id)) => match text("id") {
                Some(id) => EventEffect::Payment {
                    attempt_id,
                    outcome: ChargeOutcome::Succeeded { payment_id: id },
                },
                None => EventEffect::Ignored,
            },
            ("payment_intent.payment_failed", Some(attempt_id)) => EventEffect::Payment {
                attempt_id,
                outcome: ChargeOutcome::Declined {
                    message: object
                        .pointer("/last_payment_error/message")
                        .and_then(|v| v.as_str())
                        .unwrap_or(DECLINED)
                        .to_owned(),
                },
            },
            ("charge.refunded", _) => match text("payment_intent") {
                Some(payment_intent) => EventEffect::Refunded { payment_intent },
                None => EventEffect::Ignored,
            },
            _ => EventEffect::Ignored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures_verify_like_stripe_s_libraries() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_800_000_000;
        let good = sign("whsec_abc", now, body);
        let header = format!("t={now},v1={good}");
        assert_eq!(verify_signature(&header, body, "whsec_abc", now), Ok(()));
        // Any v1 entry may match (during a secret roll).
        let rolled = format!("t={now},v1={},v1={good},v0=ignored", "00".repeat(32));
        assert_eq!(
            verify_signature(&rolled, body, "whsec_abc", now + 299),
            Ok(())
        );
        assert_eq!(
            verify_signature(&header, b"{}", "whsec_abc", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&header, body, "whsec_other", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&header, body, "whsec_abc", now + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature("v1=abc", body, "whsec_abc", now),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(&format!("t={now}"), body, "whsec_abc", now),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn events_map_to_what_paylink_tracks() {
        let event: StripeEvent = serde_json::from_value(serde_json::json!({
            "id": "evt_1", "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_1", "metadata": {"paylink_attempt_id": "pa_1"}}}
        }))
        .unwrap();
        assert_eq!(
            event.effect(),
            EventEffect::Payment {
                attempt_id: "pa_1".into(),
                outcome: ChargeOutcome::Succeeded {
                    payment_id: "pi_1".into()
                }
            }
        );
        let foreign: StripeEvent = serde_json::from_value(serde_json::json!({
            "id": "evt_2", "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_2", "metadata": {}}}
        }))
        .unwrap();
        assert_eq!(foreign.effect(), EventEffect::Ignored);
        let refunded: StripeEvent = serde_json::from_value(serde_json::json!({
            "id": "evt_3", "type": "charge.refunded",
            "data": {"object": {"id": "ch_1", "payment_intent": "pi_9"}}
        }))
        .unwrap();
        assert_eq!(
            refunded.effect(),
            EventEffect::Refunded {
                payment_intent: "pi_9".into()
            }
        );
    }
}

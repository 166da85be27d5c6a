//! A webhook endpoint: where a merchant wants events sent, which ones, in
//! which payload format, and the secrets that sign them.
//!
//! Pure data and rules; the service validates input with these, the store
//! keeps them, the dispatcher signs with [`WebhookEndpoint::signing_secrets`].

use jiff::{SignedDuration, Timestamp};

use crate::domain::{EventType, FieldError};

/// After a rotation the previous secret keeps signing this long, so
/// receivers can switch to the new one without missing a delivery.
pub const ROTATION_OVERLAP: SignedDuration = SignedDuration::from_hours(24);
pub const MAX_URL_LENGTH: usize = 2048;
pub const MAX_DESCRIPTION_LENGTH: usize = 500;
/// Endpoints per account and mode; more is a mistake, not a need.
pub const MAX_ENDPOINTS: usize = 16;

/// The body a delivery carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// The event resource of `GET /v1/events/{id}` (without deliveries).
    Native,
    /// Gale's `{"type", "data": {id, status, cancelled_at, cancellation_reason}}`.
    Gale,
}

impl PayloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Native => "native",
            PayloadFormat::Gale => "gale",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "native" => Some(PayloadFormat::Native),
            "gale" => Some(PayloadFormat::Gale),
            _ => None,
        }
    }
}

/// Live secrets an endpoint may have at once (the current one and those
/// retired in the last 24 hours); more rotations than that in a day are
/// refused, so the signature header stays bounded.
pub const MAX_LIVE_SECRETS: usize = 10;

/// A secret a rotation replaced; it keeps signing until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetiredSecret {
    pub secret: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: String,
    pub account_id: String,
    pub livemode: bool,
    pub url: String,
    pub description: Option<String>,
    /// The event types wanted; `None` means every type, present and future.
    pub events: Option<Vec<EventType>>,
    pub format: PayloadFormat,
    pub enabled: bool,
    /// Why the service disabled it (a 410 from the receiver), if it did.
    pub disabled_reason: Option<String>,
    pub secret: String,
    /// Secrets replaced by rotations, each signing until its own expiry.
    pub retired_secrets: Vec<RetiredSecret>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl WebhookEndpoint {
    pub fn wants(&self, event_type: EventType) -> bool {
        self.events
            .as_ref()
            .is_none_or(|wanted| wanted.contains(&event_type))
    }

    /// The secrets that sign a delivery at `now`: the current one, then
    /// every retired one still within its overlap, newest first.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        secrets.extend(
            self.retired_secrets
                .iter()
                .rev()
                .filter(|retired| now < retired.expires_at)
                .map(|retired| retired.secret.as_str()),
        );
        secrets
    }

    /// When the last retired secret stops signing, if one still signs.
    pub fn retired_secrets_expire_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.retired_secrets
            .iter()
            .map(|retired| retired.expires_at)
            .filter(|until| *until > now)
            .max()
    }

    /// Replaces the secret; the old one signs alongside for
    /// [`ROTATION_OVERLAP`], and so does every one retired before it that
    /// is still within its own overlap. Refused when that would make more
    /// than [`MAX_LIVE_SECRETS`] live at once.
    pub fn rotate_secret(&mut self, new_secret: String, now: Timestamp) -> Result<(), FieldError> {
        self.retired_secrets
            .retain(|retired| now < retired.expires_at);
        if self.retired_secrets.len() + 2 > MAX_LIVE_SECRETS {
            return Err(FieldError::new(
                "id",
                format!(
                    "This endpoint's secret was rotated {} times in the last 24 hours; wait for the oldest to expire.",
                    self.retired_secrets.len()
                ),
            ));
        }
        let old = std::mem::replace(&mut self.secret, new_secret);
        self.retired_secrets.push(RetiredSecret {
            secret: old,
            expires_at: now + ROTATION_OVERLAP,
        });
        self.updated_at = now;
        Ok(())
    }
}

/// Parses an `events` list: event type names, or `["*"]` for every type.
pub fn parse_event_types(names: &[String]) -> Result<Option<Vec<EventType>>, FieldError> {
    if names.is_empty() {
        return Err(FieldError::new(
            "events",
            "`events` lists at least one event type, or `*` for all of them.",
        ));
    }
    if names.iter().any(|name| name == "*") {
        return Ok(None);
    }
    let mut types = Vec::with_capacity(names.len());
    for name in names {
        let event_type = EventType::parse(name).ok_or_else(|| {
            let known: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            FieldError::new(
                "events",
                format!(
                    "`{name}` is not an event type; use `*` or any of {}.",
                    known.join(", ")
                ),
            )
        })?;
        if !types.contains(&event_type) {
            types.push(event_type);
        }
    }
    Ok(Some(types))
}

pub fn validate_description(description: &str) -> Result<(), FieldError> {
    if description.chars().count() > MAX_DESCRIPTION_LENGTH {
        return Err(FieldError::new(
            "description",
            format!("`description` is at most {MAX_DESCRIPTION_LENGTH} characters."),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> WebhookEndpoint {
        let now = Timestamp::UNIX_EPOCH;
        WebhookEndpoint {
            id: "we_1".into(),
            account_id: "acct_1".into(),
            livemode: false,
            url: "https://example.com/hook".into(),
            description: None,
            events: Some(vec![EventType::Cancelled]),
            format: PayloadFormat::Native,
            enabled: true,
            disabled_reason: None,
            secret: "whsec_old".into(),
            retired_secrets: Vec::new(),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn the_previous_secret_signs_for_a_day_after_rotation() {
        let mut endpoint = endpoint();
        let now = Timestamp::UNIX_EPOCH + SignedDuration::from_hours(1);
        endpoint.rotate_secret("whsec_new".into(), now).unwrap();
        assert_eq!(endpoint.signing_secrets(now), ["whsec_new", "whsec_old"]);
        let almost = now + ROTATION_OVERLAP - SignedDuration::from_secs(1);
        assert_eq!(endpoint.signing_secrets(almost).len(), 2);
        assert_eq!(
            endpoint.signing_secrets(now + ROTATION_OVERLAP),
            ["whsec_new"]
        );
    }

    #[test]
    fn a_second_rotation_keeps_the_first_retired_secret_for_its_whole_day() {
        let mut endpoint = endpoint();
        let first = Timestamp::UNIX_EPOCH + SignedDuration::from_hours(1);
        endpoint
            .rotate_secret("whsec_second".into(), first)
            .unwrap();
        let second = first + SignedDuration::from_hours(2);
        endpoint
            .rotate_secret("whsec_third".into(), second)
            .unwrap();
        assert_eq!(
            endpoint.signing_secrets(second),
            ["whsec_third", "whsec_second", "whsec_old"]
        );
        let before_first_expiry = first + ROTATION_OVERLAP - SignedDuration::from_secs(1);
        assert_eq!(endpoint.signing_secrets(before_first_expiry).len(), 3);
        assert_eq!(
            endpoint.signing_secrets(first + ROTATION_OVERLAP),
            ["whsec_third", "whsec_second"]
        );
        assert_eq!(
            endpoint.signing_secrets(second + ROTATION_OVERLAP),
            ["whsec_third"]
        );
        // Bounded: at most MAX_LIVE_SECRETS sign at once.
        let mut at = second;
        let mut rotations = 0;
        while endpoint
            .rotate_secret(format!("whsec_{rotations}"), at)
            .is_ok()
        {
            rotations += 1;
            at += SignedDuration::from_mins(1);
        }
        assert_eq!(endpoint.signing_secrets(at).len(), MAX_LIVE_SECRETS);
    }

    #[test]
    fn event_filters() {
        let endpoint = endpoint();
        assert!(endpoint.wants(EventType::Cancelled));
        assert!(!endpoint.wants(EventType::Created));
        assert_eq!(parse_event_types(&["*".into()]), Ok(None));
        assert_eq!(
            parse_event_types(&[
                "payment_link.paid".into(),
                "payment_link.paid".into(),
                "payment_link.expired".into()
            ]),
            Ok(Some(vec![EventType::Paid, EventType::Expired]))
        );
        assert_eq!(parse_event_types(&[]).unwrap_err().param, "events");
        assert!(parse_event_types(&["payment_link.refunded_twice".into()]).is_err());
    }
}

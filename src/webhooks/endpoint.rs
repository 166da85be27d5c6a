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
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl WebhookEndpoint {
    pub fn wants(&self, event_type: EventType) -> bool {
        self.events
            .as_ref()
            .is_none_or(|wanted| wanted.contains(&event_type))
    }

    /// The secrets that sign a delivery at `now`: the current one, and the
    /// previous one while its overlap lasts.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) =
            (&self.previous_secret, self.previous_secret_expires_at)
            && now < until
        {
            secrets.push(previous);
        }
        secrets
    }

    /// Replaces the secret; the old one signs alongside for [`ROTATION_OVERLAP`].
    pub fn rotate_secret(&mut self, new_secret: String, now: Timestamp) {
        let old = std::mem::replace(&mut self.secret, new_secret);
        self.previous_secret = Some(old);
        self.previous_secret_expires_at = Some(now + ROTATION_OVERLAP);
        self.updated_at = now;
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
            previous_secret: None,
            previous_secret_expires_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn the_previous_secret_signs_for_a_day_after_rotation() {
        let mut endpoint = endpoint();
        let now = Timestamp::UNIX_EPOCH + SignedDuration::from_hours(1);
        endpoint.rotate_secret("whsec_new".into(), now);
        assert_eq!(endpoint.signing_secrets(now), ["whsec_new", "whsec_old"]);
        let almost = now + ROTATION_OVERLAP - SignedDuration::from_secs(1);
        assert_eq!(endpoint.signing_secrets(almost).len(), 2);
        assert_eq!(
            endpoint.signing_secrets(now + ROTATION_OVERLAP),
            ["whsec_new"]
        );
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
        assert!(parse_event_types(&["payment_link.refunded".into()]).is_err());
    }
}

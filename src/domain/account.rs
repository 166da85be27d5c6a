//! Accounts, their API keys and their processors: who a request acts for.

use jiff::Timestamp;

use super::validation::FieldError;

/// The account and mode a request acts in; every link query is scoped by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub account_id: String,
    pub livemode: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    /// Internal (CLI, logs); customers see the branding's display name.
    pub name: String,
    pub suspended: bool,
    pub created_at: Timestamp,
    pub branding: Branding,
}

/// How the hosted pages present the merchant to its customers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Branding {
    pub display_name: Option<String>,
    pub support_email: Option<String>,
    /// An `https` image shown atop every page.
    pub logo_url: Option<String>,
    pub terms_url: Option<String>,
    pub privacy_url: Option<String>,
}

impl Branding {
    /// Checks every field; the first fault, by field.
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(name) = &self.display_name {
            let chars = name.trim().chars().count();
            if chars == 0 || chars > 100 {
                return Err(FieldError::new(
                    "display_name",
                    "A display name is 1 to 100 characters.",
                ));
            }
        }
        if let Some(email) = &self.support_email {
            let plausible = email.len() <= 254
                && email
                    .split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
                && !email.contains(char::is_whitespace);
            if !plausible {
                return Err(FieldError::new(
                    "support_email",
                    format!("`{email}` is not an email address."),
                ));
            }
        }
        let web = [
            ("logo_url", &self.logo_url, true),
            ("terms_url", &self.terms_url, false),
            ("privacy_url", &self.privacy_url, false),
        ];
        for (field, value, https_only) in web {
            let Some(value) = value else { continue };
            let scheme_ok = match url::Url::parse(value) {
                Ok(url) if url.host().is_some() => {
                    url.scheme() == "https" || (!https_only && url.scheme() == "http")
                }
                _ => false,
            };
            if !scheme_ok || value.len() > 2048 {
                let wanted = if https_only {
                    "an https URL"
                } else {
                    "an http(s) URL"
                };
                return Err(FieldError::new(
                    field,
                    format!("`{field}` must be {wanted} of at most 2048 characters."),
                ));
            }
        }
        Ok(())
    }
}

/// A stored API key: its hash and a short display prefix, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub account_id: String,
    pub livemode: bool,
    pub key_hash: String,
    pub key_prefix: String,
    pub created_at: Timestamp,
    /// From then on the key is refused: set by a revoke (now) or a roll
    /// (when the old key's grace period ends).
    pub expires_at: Option<Timestamp>,
    /// Roughly when the key last authenticated (written at most once a
    /// minute per key, off the request's path).
    pub last_used_at: Option<Timestamp>,
}

impl ApiKeyRecord {
    /// Is the key refused at `now`?
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// An account's processor in one mode: its name and its configuration,
/// sealed (see `crate::secrets`), never in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorAccount {
    pub processor: String,
    pub sealed_config: String,
    pub updated_at: Timestamp,
}

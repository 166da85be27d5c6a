//! Field-level validation errors shared by every rule in the domain.

use std::fmt;

/// A request field that breaks a rule: which field (`param`, dotted for
/// nested ones like `customer.email` or `line_items[0].quantity`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub param: String,
    pub message: String,
}

impl FieldError {
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            param: param.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.param, self.message)
    }
}

/// Length in characters (not bytes), the unit the limits are documented in.
pub fn check_max_chars(param: &str, value: &str, max: usize) -> Result<(), FieldError> {
    let count = value.chars().count();
    if count > max {
        return Err(FieldError::new(
            param,
            format!("`{param}` must be at most {max} characters (got {count})."),
        ));
    }
    Ok(())
}

pub fn check_not_blank(param: &str, value: &str) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::new(
            param,
            format!("`{param}` must not be empty."),
        ));
    }
    Ok(())
}

/// A pragmatic address check: one `@`, a non-empty local part, a dotted
/// domain, no whitespace or control characters, at most 254 characters.
pub fn check_email(param: &str, value: &str) -> Result<(), FieldError> {
    let invalid = || FieldError::new(param, format!("`{value}` is not a valid email address."));
    if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = value.split_once('@').ok_or_else(invalid)?;
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    });
    if local.is_empty() || local.len() > 64 || !domain.contains('.') || !labels_ok {
        return Err(invalid());
    }
    Ok(())
}

/// An absolute http(s) URL with a host, at most 2048 characters, in the
/// normalised form it was checked in (what is stored and followed is
/// exactly what was validated: `HTTPS://Shop.Example:443/a/../b` is kept
/// as `https://shop.example/b`).
pub fn normalize_http_url(param: &str, value: &str) -> Result<String, FieldError> {
    let invalid = || {
        FieldError::new(
            param,
            format!("`{param}` must be an absolute http or https URL."),
        )
    };
    check_max_chars(param, value, 2048)?;
    let parsed = url::Url::parse(value).map_err(|_| invalid())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    let normalized = String::from(parsed);
    check_max_chars(param, &normalized, 2048)?;
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(check_email("e", "jane@example.com").is_ok());
        assert!(check_email("e", "jane.doe+x@mail.example.co.uk").is_ok());
        for bad in [
            "",
            "jane",
            "@example.com",
            "jane@",
            "jane@example",
            "ja ne@example.com",
            "a@b@c.com",
            "jane@-x.com",
        ] {
            assert!(check_email("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        assert!(normalize_http_url("u", "https://shop.example/thanks?o=1").is_ok());
        assert_eq!(
            normalize_http_url("u", "HTTPS://Shop.EXAMPLE:443/a/../thanks?o=1").unwrap(),
            "https://shop.example/thanks?o=1"
        );
        assert_eq!(
            normalize_http_url("u", "http://shop.example").unwrap(),
            "http://shop.example/"
        );
        for bad in [
            "/relative",
            "ftp://x.example",
            "javascript:alert(1)",
            "https://",
            "not a url",
        ] {
            assert!(normalize_http_url("u", bad).is_err(), "{bad}");
        }
    }
}

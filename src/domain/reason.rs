//! A reason a merchant gives for a cancel or a refund: free text, kept on
//! the link (or refund) and in its event, at most [`Reason::MAX_CHARS`]
//! characters. Parsed once where it enters; past that it is known good.

use super::validation::{FieldError, check_max_chars};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    /// The limit the API documents (its OpenAPI schemas read this).
    pub const MAX_CHARS: usize = 500;

    pub fn parse(text: String) -> Result<Self, FieldError> {
        check_max_chars("reason", &text, Self::MAX_CHARS)?;
        Ok(Self(text))
    }

    /// Another optional text field under the same limit, named `param` in
    /// its errors (a cancel's `customer_message`).
    pub fn parse_field(param: &str, text: Option<String>) -> Result<Option<Self>, FieldError> {
        text.map(|text| {
            check_max_chars(param, &text, Self::MAX_CHARS)?;
            Ok(Self(text))
        })
        .transpose()
    }

    /// An optional reason, as requests carry it.
    pub fn parse_optional(text: Option<String>) -> Result<Option<Self>, FieldError> {
        text.map(Self::parse).transpose()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_documented_characters() {
        let longest = "é".repeat(Reason::MAX_CHARS);
        assert_eq!(Reason::parse(longest.clone()).unwrap().as_str(), longest);
        let error = Reason::parse(format!("{longest}x")).unwrap_err();
        assert_eq!(error.param, "reason");
        assert_eq!(Reason::parse_optional(None), Ok(None));
    }
}

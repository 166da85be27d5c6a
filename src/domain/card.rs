//! Card details as typed on the hosted page, and their checks: Luhn,
//! expiry not past, CVC length. Only the brand and last four digits ever
//! leave this module's values in a form that may be stored or logged.

use std::fmt;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::validation::FieldError;

/// A card as entered. Deliberately not `Debug`-printable in full.
#[derive(Clone)]
pub struct Card {
    number: String,
    pub exp_month: u8,
    pub exp_year: u16,
    cvc: String,
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Card({} ****{})", self.brand(), self.last4())
    }
}

impl Card {
    /// Parses the form fields `card_number`, `expiry` (MM/YY) and `cvc`;
    /// every problem is reported against its field.
    pub fn parse(
        number: &str,
        expiry: &str,
        cvc: &str,
        now: Timestamp,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let digits: String = number
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if digits.is_empty() {
            errors.push(FieldError::new("card_number", "Enter your card number."));
        } else if !digits.chars().all(|c| c.is_ascii_digit())
            || !(12..=19).contains(&digits.len())
            || !luhn_valid(&digits)
        {
            errors.push(FieldError::new(
                "card_number",
                "Your card number is invalid.",
            ));
        }
        let parsed_expiry = parse_expiry(expiry);
        match parsed_expiry {
            None => errors.push(FieldError::new("expiry", "Enter the expiry date as MM/YY.")),
            Some((month, year)) if is_past(month, year, now) => {
                errors.push(FieldError::new(
                    "expiry",
                    "Your card's expiration date is in the past.",
                ));
            }
            Some(_) => {}
        }
        let cvc = cvc.trim();
        if !(3..=4).contains(&cvc.len()) || !cvc.chars().all(|c| c.is_ascii_digit()) {
            errors.push(FieldError::new(
                "cvc",
                "Your card's security code is invalid.",
            ));
        }
        match (errors.is_empty(), parsed_expiry) {
            (true, Some((exp_month, exp_year))) => Ok(Self {
                number: digits,
                exp_month,
                exp_year,
                cvc: cvc.to_owned(),
            }),
            _ => Err(errors),
        }
    }

    pub fn number(&self) -> &str {
        &self.number
    }

    pub fn cvc(&self) -> &str {
        &self.cvc
    }

    pub fn last4(&self) -> &str {
        &self.number[self.number.len().saturating_sub(4)..]
    }

    pub fn brand(&self) -> &'static str {
        let n = &self.number;
        if n.starts_with('4') {
            "visa"
        } else if n.starts_with("34") || n.starts_with("37") {
            "amex"
        } else if (51..=55).contains(&n.get(..2).and_then(|p| p.parse::<u32>().ok()).unwrap_or(0))
            || (2221..=2720).contains(&n.get(..4).and_then(|p| p.parse::<u32>().ok()).unwrap_or(0))
        {
            "mastercard"
        } else {
            "unknown"
        }
    }
}

pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0;
    for (index, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if index % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

fn parse_expiry(text: &str) -> Option<(u8, u16)> {
    let (month, year) = text.trim().split_once('/')?;
    let month: u8 = month.trim().parse().ok().filter(|m| (1..=12).contains(m))?;
    let year = year.trim();
    let year: u16 = match year.len() {
        2 => 2000 + year.parse::<u16>().ok()?,
        4 => year.parse().ok()?,
        _ => return None,
    };
    Some((month, year))
}

/// A card is valid through the last day of its expiry month.
fn is_past(month: u8, year: u16, now: Timestamp) -> bool {
    let today = now.to_zoned(TimeZone::UTC);
    let (this_year, this_month) = (today.year(), today.month());
    (i32::from(year), i32::from(month)) < (i32::from(this_year), i32::from(this_month))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-23T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn test_cards_parse() {
        let card = Card::parse("4242 4242 4242 4242", "12/34", "123", now()).unwrap();
        assert_eq!(card.brand(), "visa");
        assert_eq!(card.last4(), "4242");
        assert!(!format!("{card:?}").contains("42424242"));
        assert!(
            Card::parse("4000 0000 0000 0002", "11/26", "1234", now()).is_ok(),
            "this month is still valid"
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let errors = Card::parse("4242 4242 4242 4241", "10/26", "12", now()).unwrap_err();
        let params: Vec<_> = errors.iter().map(|e| e.param.as_str()).collect();
        assert_eq!(params, ["card_number", "expiry", "cvc"]);
        assert_eq!(Card::parse("", "13/30", "123", now()).unwrap_err().len(), 2);
    }
}

//! Money: integer minor units plus an ISO 4217 currency. Never a float.

use serde::{Deserialize, Serialize};

/// Largest amount of one link, in minor units (999,999,999.99 in a
/// two-decimal currency). Keeps sums in stats far from `i64` overflow.
pub const MAX_AMOUNT: i64 = 99_999_999_999;

/// An active ISO 4217 currency that has minor units (so `XAU` and
/// superseded codes are refused). Stored and shown in upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// Accepts any case (`usd` and `USD`), like the major payment APIs.
    pub fn parse(code: &str) -> Result<Self, String> {
        let upper = code.trim().to_ascii_uppercase();
        let currency = iso_currency::Currency::from_code(&upper)
            .ok_or_else(|| format!("`{code}` is not an ISO 4217 currency code."))?;
        if currency.is_superseded().is_some() {
            return Err(format!(
                "`{upper}` has been superseded and is no longer accepted."
            ));
        }
        if currency.exponent().is_none() || currency.is_fund() {
            return Err(format!(
                "`{upper}` is not a currency payment links can be priced in."
            ));
        }
        Ok(Self(currency))
    }

    /// Every code [`Currency::parse`] accepts, upper case.
    pub fn accepted_codes() -> impl Iterator<Item = &'static str> {
        use iso_currency::IntoEnumIterator;
        iso_currency::Currency::iter()
            .map(|currency| currency.code())
            .filter(|code| Currency::parse(code).is_ok())
    }

    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// Digits after the decimal point: USD 2, JPY 0, BHD 3.
    pub fn exponent(self) -> u32 {
        u32::from(self.0.exponent().unwrap_or(0))
    }

    pub fn symbol(self) -> String {
        self.0.symbol().to_string()
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Currency::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// Renders `amount` minor units as a decimal string with the currency's
/// exponent, by integer arithmetic only: (4995, USD) -> "49.95", (4995, JPY) -> "4995".
pub fn format_decimal(amount: i64, currency: Currency) -> String {
    let exponent = currency.exponent();
    if exponent == 0 {
        return amount.to_string();
    }
    let scale = 10_i64.pow(exponent);
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    let scale = scale.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = exponent as usize
    )
}

/// For people: symbol, thousands separators and the currency's own
/// decimals: (4995, USD) -> "$49.95", (4995, JPY) -> "¥4,995",
/// (123456, EUR) -> "€1,234.56". Integer arithmetic only.
pub fn format_money(amount: i64, currency: Currency) -> String {
    let decimal = format_decimal(amount.abs(), currency);
    let (whole, fraction) = decimal
        .split_once('.')
        .map_or((decimal.as_str(), None), |(w, f)| (w, Some(f)));
    let mut grouped = String::new();
    for (index, digit) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if amount < 0 { "-" } else { "" };
    let symbol = currency.symbol();
    let symbol = if symbol.is_empty() || symbol == "¤" {
        format!("{} ", currency.code())
    } else {
        symbol
    };
    match fraction {
        Some(fraction) => format!("{sign}{symbol}{grouped}.{fraction}"),
        None => format!("{sign}{symbol}{grouped}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_validated_against_the_real_list() {
        assert_eq!(Currency::parse("usd").unwrap().code(), "USD");
        assert_eq!(Currency::parse("JPY").unwrap().exponent(), 0);
        assert_eq!(Currency::parse("BHD").unwrap().exponent(), 3);
        assert!(Currency::parse("XXX").is_err());
        assert!(Currency::parse("ABC").is_err());
        assert!(Currency::parse("XAU").is_err());
    }

    #[test]
    fn decimal_formatting_uses_the_exponent() {
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(format_decimal(4995, usd), "49.95");
        assert_eq!(format_decimal(5, usd), "0.05");
        assert_eq!(
            format_decimal(4995, Currency::parse("JPY").unwrap()),
            "4995"
        );
        assert_eq!(
            format_decimal(1234, Currency::parse("BHD").unwrap()),
            "1.234"
        );
    }
}

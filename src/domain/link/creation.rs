//! A new link from a merchant's request: validation and defaults.

use crate::clock::truncate_to_micros;
use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use crate::domain::event::{Actor, EventType, LinkEvent};
use crate::domain::ids;
use crate::domain::money::{Currency, MAX_AMOUNT};
use crate::domain::validation::{
    FieldError, check_email, check_max_chars, check_not_blank, normalize_http_url,
};

use super::*;

pub const MAX_DESCRIPTION_CHARS: usize = 1000;
pub const MAX_ORDER_REFERENCE_CHARS: usize = 255;
pub const MAX_NAME_CHARS: usize = 255;
pub const MAX_METADATA_KEYS: usize = 50;
pub const MAX_METADATA_KEY_CHARS: usize = 40;
pub const MAX_METADATA_VALUE_CHARS: usize = 500;
pub const MAX_LINE_ITEMS: usize = 100;
pub const MAX_QUANTITY: i64 = 1_000_000;
/// `expires_at` may be at most this far ahead of now.
pub const MAX_LIFETIME: SignedDuration = SignedDuration::from_hours(366 * 24);

/// What a merchant asks for when creating a link, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewLink {
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub description: Option<String>,
    pub payment_type: Option<String>,
    pub customer: Option<Customer>,
    pub line_items: Option<Vec<LineItem>>,
    pub order_reference: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub expires_at: Option<Timestamp>,
}

/// Who creates the link and the defaults that apply.
pub struct Creation<'a> {
    pub account_id: &'a str,
    pub livemode: bool,
    pub actor: Actor,
    pub now: Timestamp,
    pub default_lifetime: SignedDuration,
}

impl NewLink {
    /// Validates every field and builds the link with its `created` event.
    pub fn create(self, ctx: Creation<'_>) -> Result<(Link, LinkEvent), FieldError> {
        let currency_text = self
            .currency
            .ok_or_else(|| FieldError::new("currency", "`currency` is required."))?;
        let currency =
            Currency::parse(&currency_text).map_err(|m| FieldError::new("currency", m))?;

        if let Some(payment_type) = &self.payment_type
            && payment_type != "one_time"
        {
            return Err(FieldError::new(
                "payment_type",
                format!("`payment_type` must be \"one_time\" (got \"{payment_type}\")."),
            ));
        }

        let line_items_total = match &self.line_items {
            Some(items) => Some(validate_line_items(items)?),
            None => None,
        };
        let amount = match (self.amount, line_items_total) {
            (Some(amount), Some(total)) if amount != total => {
                return Err(FieldError::new(
                    "amount",
                    format!("`amount` ({amount}) must equal the sum of the line items ({total})."),
                ));
            }
            (Some(amount), _) => amount,
            (None, Some(total)) => total,
            (None, None) => {
                return Err(FieldError::new(
                    "amount",
                    "`amount` is required (in minor units, e.g. 4995 for $49.95) unless `line_items` are given.",
                ));
            }
        };
        validate_amount("amount", amount)?;

        if let Some(description) = &self.description {
            check_max_chars("description", description, MAX_DESCRIPTION_CHARS)?;
        }
        if let Some(customer) = &self.customer {
            validate_customer(customer)?;
        }
        if let Some(reference) = &self.order_reference {
            check_not_blank("order_reference", reference)?;
            check_max_chars("order_reference", reference, MAX_ORDER_REFERENCE_CHARS)?;
        }
        let metadata = self.metadata.unwrap_or_default();
        validate_metadata(&metadata)?;
        let success_url = self
            .success_url
            .as_deref()
            .map(|url| normalize_http_url("success_url", url))
            .transpose()?;
        let cancel_url = self
            .cancel_url
            .as_deref()
            .map(|url| normalize_http_url("cancel_url", url))
            .transpose()?;
        let expires_at = match self.expires_at {
            Some(at) => {
                validate_expires_at(at, ctx.now)?;
                // Times are kept to the microsecond: answer what a read will.
                truncate_to_micros(at)
            }
            None => ctx.now + ctx.default_lifetime,
        };

        let link = Link {
            id: ids::new_link_id(),
            account_id: ctx.account_id.to_owned(),
            livemode: ctx.livemode,
            slug: ids::new_slug(),
            amount,
            currency,
            description: self.description,
            payment_type: PaymentType::OneTime,
            customer: self.customer,
            line_items: self.line_items,
            order_reference: self.order_reference,
            metadata,
            success_url,
            cancel_url,
            status: LinkStatus::Active,
            expires_at,
            created_at: ctx.now,
            updated_at: ctx.now,
            cancelled_at: None,
            cancellation_reason: None,
            customer_message: None,
            paid_at: None,
            payment_id: None,
            amount_refunded: 0,
            version: 1,
        };
        let event = LinkEvent::new(EventType::Created, &link, ctx.actor, None, ctx.now);
        Ok((link, event))
    }
}

pub fn validate_amount(param: &str, amount: i64) -> Result<(), FieldError> {
    if amount <= 0 {
        return Err(FieldError::new(
            param,
            format!("`{param}` must be a positive integer in minor units (got {amount})."),
        ));
    }
    if amount > MAX_AMOUNT {
        return Err(FieldError::new(
            param,
            format!("`{param}` must be at most {MAX_AMOUNT} minor units."),
        ));
    }
    Ok(())
}

fn validate_line_items(items: &[LineItem]) -> Result<i64, FieldError> {
    if items.is_empty() {
        return Err(FieldError::new(
            "line_items",
            "`line_items` must not be empty when given.",
        ));
    }
    if items.len() > MAX_LINE_ITEMS {
        return Err(FieldError::new(
            "line_items",
            format!("At most {MAX_LINE_ITEMS} line items are allowed."),
        ));
    }
    let mut total: i64 = 0;
    for (index, item) in items.iter().enumerate() {
        let param = |field: &str| format!("line_items[{index}].{field}");
        check_not_blank(&param("product_id"), &item.product_id)?;
        check_max_chars(&param("product_id"), &item.product_id, MAX_NAME_CHARS)?;
        check_not_blank(&param("name"), &item.name)?;
        check_max_chars(&param("name"), &item.name, MAX_NAME_CHARS)?;
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            return Err(FieldError::new(
                param("quantity"),
                format!("`quantity` must be between 1 and {MAX_QUANTITY}."),
            ));
        }
        validate_amount(&param("unit_amount"), item.unit_amount)?;
        total = item
            .unit_amount
            .checked_mul(item.quantity)
            .and_then(|line| total.checked_add(line))
            .filter(|sum| *sum <= MAX_AMOUNT)
            .ok_or_else(|| {
                FieldError::new(
                    "line_items",
                    format!("The line items add up to more than {MAX_AMOUNT} minor units."),
                )
            })?;
    }
    Ok(total)
}

fn validate_customer(customer: &Customer) -> Result<(), FieldError> {
    if let Some(email) = &customer.email {
        check_email("customer.email", email)?;
    }
    if let Some(name) = &customer.first_name {
        check_max_chars("customer.first_name", name, MAX_NAME_CHARS)?;
    }
    if let Some(name) = &customer.last_name {
        check_max_chars("customer.last_name", name, MAX_NAME_CHARS)?;
    }
    Ok(())
}

pub fn validate_metadata(metadata: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(FieldError::new(
            "metadata",
            format!(
                "`metadata` may have at most {MAX_METADATA_KEYS} keys (got {}).",
                metadata.len()
            ),
        ));
    }
    for (key, value) in metadata {
        let param = format!("metadata[{key}]");
        if key.is_empty() {
            return Err(FieldError::new(
                "metadata",
                "Metadata keys must not be empty.",
            ));
        }
        if key.chars().count() > MAX_METADATA_KEY_CHARS {
            return Err(FieldError::new(
                param,
                format!("Metadata keys must be at most {MAX_METADATA_KEY_CHARS} characters."),
            ));
        }
        if value.chars().count() > MAX_METADATA_VALUE_CHARS {
            return Err(FieldError::new(
                param,
                format!("Metadata values must be at most {MAX_METADATA_VALUE_CHARS} characters."),
            ));
        }
    }
    Ok(())
}

pub fn validate_expires_at(at: Timestamp, now: Timestamp) -> Result<(), FieldError> {
    if at <= now {
        return Err(FieldError::new(
            "expires_at",
            "`expires_at` must be in the future.",
        ));
    }
    if at > now + MAX_LIFETIME {
        return Err(FieldError::new(
            "expires_at",
            "`expires_at` must be at most one year ahead.",
        ));
    }
    Ok(())
}

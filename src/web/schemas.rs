//! OpenAPI schemas built from the domain's own limits, so a documented
//! limit and the enforced one are the same constant.

use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};

use crate::domain::{Currency, EventType, Reason};

/// An optional cancel or refund `reason` (see [`Reason`]).
pub fn reason() -> RefOr<Schema> {
    short_text("kept with the change and in its events.")
}

/// An optional cancel's `customer_message` (the same limit as a reason).
pub fn customer_message() -> RefOr<Schema> {
    short_text("shown to the customer on the cancelled link's page.")
}

/// An optional string of at most [`Reason::MAX_CHARS`] characters.
fn short_text(what_happens: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .max_length(Some(Reason::MAX_CHARS))
        .description(Some(format!(
            "At most {} characters; {what_happens}",
            Reason::MAX_CHARS
        )))
        .into()
}

/// An event's `type`: one of [`EventType::ALL`], as an enum.
pub fn event_type() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(EventType::ALL.iter().map(|t| t.as_str())))
        .examples([serde_json::json!("payment_link.cancelled")])
        .into()
}

/// An ISO 4217 code paylink prices links in, in either case (`USD` or
/// `usd`): the one list [`Currency::parse`] accepts, so a client (or a
/// fuzzer) reads which codes work instead of guessing three letters.
pub struct CurrencyCode;

impl utoipa::PartialSchema for CurrencyCode {
    fn schema() -> RefOr<Schema> {
        let codes: Vec<String> = Currency::accepted_codes()
            .flat_map(|code| [code.to_owned(), code.to_ascii_lowercase()])
            .collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An ISO 4217 currency code with minor units, in upper or lower case.",
            ))
            .enum_values(Some(codes))
            .examples([serde_json::json!("USD")])
            .into()
    }
}

impl utoipa::ToSchema for CurrencyCode {}

/// A discriminator property: a string that is always `word`.
fn tag(word: &'static str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([word]))
        .into()
}

/// The `type` of an event's actor, one schema per kind (the discriminator
/// of the actor union).
pub mod actor_tag {
    use super::*;

    pub fn api_key() -> RefOr<Schema> {
        tag("api_key")
    }

    pub fn customer() -> RefOr<Schema> {
        tag("customer")
    }

    pub fn system() -> RefOr<Schema> {
        tag("system")
    }
}

/// The `Idempotency-Key` header every write accepts.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code, reason = "documents a header the idempotency layer reads")]
pub struct IdempotencyKey {
    /// Retrying with the same key replays the first answer byte for byte
    /// (24 hours, scoped to the key's account and mode); the same key with
    /// another request is 422 `idempotency_key_reused`, and one whose first
    /// request is still running is 409 `idempotency_key_in_use`. 1 to 256
    /// characters.
    #[param(rename = "Idempotency-Key", max_length = 256, min_length = 1)]
    idempotency_key: Option<String>,
}

//! OpenAPI schemas built from the domain's own limits, so a documented
//! limit and the enforced one are the same constant.

use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};

use crate::domain::Reason;

/// An optional cancel or refund `reason` (see [`Reason`]).
pub fn reason() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .max_length(Some(Reason::MAX_CHARS))
        .description(Some(format!(
            "At most {} characters; kept with the change and in its events.",
            Reason::MAX_CHARS
        )))
        .into()
}

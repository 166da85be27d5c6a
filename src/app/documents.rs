//! The OpenAPI documents: the native API's at `/openapi.json`, and each
//! dialect's own at `{prefix}/openapi.json`, in its provider's terms (its
//! paths relative to its base URL, its key header as its only security
//! scheme), so a client generated from one carries no other provider's
//! operations and every `operationId` is unique in its document.

use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::openapi::{Components, Info};

use crate::web::error::{ErrorBody, ErrorCode};
use crate::web::extract::KeyHeader;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "paylink",
        description = "Self-hostable payment links. Amounts are integer minor units. Errors always use the `ErrorBody` envelope. Each provider's format has its own document at `/compat/{provider}/openapi.json`.",
    ),
    components(schemas(ErrorBody, ErrorCode))
)]
struct NativeDoc;

/// The native API's document, from its operations' documents.
pub fn native(public_url: &str, parts: Vec<utoipa::openapi::OpenApi>) -> serde_json::Value {
    let mut document = NativeDoc::openapi();
    for part in parts {
        document.merge(part);
    }
    finish(document, public_url, KeyHeader::BearerOrApiKey)
}

/// A dialect's document: its own paths (relative to `prefix`), served
/// from `{public_url}{prefix}`.
pub fn dialect(
    public_url: &str,
    prefix: &str,
    keys: KeyHeader,
    mut document: utoipa::openapi::OpenApi,
) -> serde_json::Value {
    let name = prefix.rsplit('/').next().unwrap_or(prefix);
    document.info = Info::builder()
        .title(format!("paylink: the {name} format"))
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(format!(
            "paylink speaking {name}'s wire format under `{prefix}`: a client written for that provider works by changing its base URL and using a paylink API key in the provider's header. The native API is at `/openapi.json`."
        )))
        .build();
    finish(document, &format!("{public_url}{prefix}"), keys)
}

/// Adds the server and the security schemes `keys` allows.
fn finish(
    mut document: utoipa::openapi::OpenApi,
    server: &str,
    keys: KeyHeader,
) -> serde_json::Value {
    document.servers = Some(vec![Server::new(server)]);
    let components = document.components.get_or_insert_with(Components::default);
    for (name, scheme) in security_schemes(keys) {
        components.add_security_scheme(name, scheme);
    }
    serde_json::to_value(&document).expect("an OpenAPI document serializes")
}

fn security_schemes(keys: KeyHeader) -> Vec<(&'static str, SecurityScheme)> {
    let bearer = || {
        (
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("pl_test_...")
                    .build(),
            ),
        )
    };
    let api_key = || {
        (
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        )
    };
    match keys {
        KeyHeader::BearerOrApiKey => vec![bearer(), api_key()],
        KeyHeader::Bearer => vec![bearer()],
        KeyHeader::ApiKey => vec![api_key()],
        // Plexy's form: the raw key in `Authorization`, no scheme.
        KeyHeader::RawAuthorization => vec![(
            "raw_authorization",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("Authorization"))),
        )],
    }
}

//! The OpenAPI documents: the native API's at `/openapi.json`, and each
//! dialect's own at `{prefix}/openapi.json`, in its provider's terms (its
//! paths relative to its base URL, its key header as its only security
//! scheme), so a client generated from one carries no other provider's
//! operations and every `operationId` is unique in its document.

use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::openapi::{Components, Info};

use crate::dialects::IdPointers;
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

/// The native API's document, from its operations' documents, with an
/// example on every operation.
pub fn native(public_url: &str, parts: Vec<utoipa::openapi::OpenApi>) -> serde_json::Value {
    let mut document = NativeDoc::openapi();
    for part in parts {
        document.merge(part);
    }
    let mut document = finish(document, public_url, KeyHeader::BearerOrApiKey);
    add_examples(&mut document, &crate::http::examples::by_schema(public_url));
    add_links(&mut document, NATIVE_IDS);
    document
}

/// Where the native API's answers carry an object's id.
const NATIVE_IDS: IdPointers = IdPointers {
    created: "/id",
    listed: "/data/0/id",
};

/// OpenAPI links from each create (`POST P`) and each list (`GET P`) to
/// every operation on one of its objects (`P/{id}` and below), passing the
/// id from the answer: a client generator (or a fuzzer) can follow a
/// created link to its cancel, a listed event to its redelivery.
fn add_links(document: &mut serde_json::Value, ids: IdPointers) {
    let Some(paths) = document["paths"].as_object() else {
        return;
    };
    // (collection path, method, success status, pointer) -> links.
    let mut found = Vec::new();
    for (collection, item) in paths {
        for (method, pointer) in [("post", ids.created), ("get", ids.listed)] {
            let Some(responses) = item[method]["responses"].as_object() else {
                continue;
            };
            let Some(status) = responses.keys().find(|s| s.starts_with('2')).cloned() else {
                continue;
            };
            let mut links = serde_json::Map::new();
            for (path, target) in paths {
                let Some(rest) = path.strip_prefix(&format!("{collection}/{{")) else {
                    continue;
                };
                let Some((param, _)) = rest.split_once('}') else {
                    continue;
                };
                for operation in target.as_object().into_iter().flat_map(|t| t.values()) {
                    let Some(operation_id) = operation["operationId"].as_str() else {
                        continue;
                    };
                    links.insert(
                        operation_id.to_owned(),
                        serde_json::json!({
                            "operationId": operation_id,
                            "parameters": {param: format!("$response.body#{pointer}")},
                        }),
                    );
                }
            }
            if !links.is_empty() {
                found.push((collection.clone(), method, status, links));
            }
        }
    }
    for (collection, method, status, links) in found {
        document["paths"][&collection][method]["responses"][&status]["links"] = links.into();
    }
}

/// Puts each schema's example on every request body and response that
/// carries it, so each operation shows what it takes and answers.
fn add_examples(
    document: &mut serde_json::Value,
    examples: &std::collections::BTreeMap<&'static str, serde_json::Value>,
) {
    let example_of = |media: &serde_json::Value| {
        // A schema, or an optional body's `oneOf: [schema, null]`.
        let schema = &media["schema"];
        let reference = schema["$ref"]
            .as_str()
            .or_else(|| schema["oneOf"][0]["$ref"].as_str())?;
        let name = reference.strip_prefix("#/components/schemas/")?;
        examples.get(name).cloned()
    };
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for operation in paths.values_mut().filter_map(|item| item.as_object_mut()) {
        for operation in operation.values_mut() {
            let Some(operation) = operation.as_object_mut() else {
                continue;
            };
            let mut contents: Vec<&mut serde_json::Value> = Vec::new();
            for (field, value) in operation.iter_mut() {
                match field.as_str() {
                    "requestBody" => contents.extend(value.get_mut("content")),
                    "responses" => contents.extend(
                        value
                            .as_object_mut()
                            .into_iter()
                            .flat_map(|r| r.values_mut())
                            .filter_map(|response| response.get_mut("content")),
                    ),
                    _ => {}
                }
            }
            let media_types = contents
                .into_iter()
                .filter_map(|c| c.as_object_mut())
                .flat_map(|c| c.values_mut());
            for media in media_types {
                if let Some(example) = example_of(media) {
                    media["example"] = example;
                }
            }
        }
    }
}

/// A dialect's document: its own paths (relative to `prefix`), served
/// from `{public_url}{prefix}`.
pub fn dialect(
    public_url: &str,
    prefix: &str,
    keys: KeyHeader,
    ids: IdPointers,
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
    let mut document = finish(document, &format!("{public_url}{prefix}"), keys);
    add_links(&mut document, ids);
    document
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

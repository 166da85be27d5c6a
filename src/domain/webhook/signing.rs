//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256
//! of "{id}.{timestamp}.{body}">` with the endpoint's `whsec_` secret.
//! Any Standard Webhooks library verifies what this signs.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";

/// A new endpoint secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the operating system's random source failed");
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a webhook secret is `whsec_` followed by base64")]
pub struct BadSecret;

/// The three headers of a signed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub webhook_id: String,
    pub webhook_timestamp: String,
    pub webhook_signature: String,
}

/// Signs `body` for message `id` at `timestamp` (Unix seconds) with every
/// secret given: during a rotation both the old and the new secret sign,
/// space-separated, so receivers on either keep verifying.
pub fn sign(
    secrets: &[&str],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<SignedHeaders, BadSecret> {
    let mut signatures = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let key = STANDARD
            .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
            .map_err(|_| BadSecret)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| BadSecret)?;
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        signatures.push(format!(
            "v1,{}",
            STANDARD.encode(mac.finalize().into_bytes())
        ));
    }
    Ok(SignedHeaders {
        webhook_id: id.to_owned(),
        webhook_timestamp: timestamp.to_string(),
        webhook_signature: signatures.join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify_with_reference(secret: &str, headers: &SignedHeaders, body: &[u8]) -> bool {
        let mut map = axum::http::HeaderMap::new();
        map.insert("webhook-id", headers.webhook_id.parse().unwrap());
        map.insert(
            "webhook-timestamp",
            headers.webhook_timestamp.parse().unwrap(),
        );
        map.insert(
            "webhook-signature",
            headers.webhook_signature.parse().unwrap(),
        );
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(body, &map)
            .is_ok()
    }

    #[test]
    fn the_reference_library_verifies_our_signature() {
        let secret = new_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&secret[6..]).unwrap().len(), 32);
        let body = br#"{"type":"payment_link.cancelled","data":{"id":"plink_1"}}"#;
        let now = jiff::Timestamp::now().as_second();
        let headers = sign(&[&secret], "evt_1", now, body).unwrap();
        assert!(verify_with_reference(&secret, &headers, body));
        assert!(
            !verify_with_reference(&secret, &headers, b"{}"),
            "a changed body fails"
        );
        assert!(
            !verify_with_reference(&new_secret(), &headers, body),
            "another secret fails"
        );
    }

    #[test]
    fn during_rotation_both_secrets_verify() {
        let (old, new) = (new_secret(), new_secret());
        let body = b"{}";
        let headers = sign(
            &[&new, &old],
            "evt_2",
            jiff::Timestamp::now().as_second(),
            body,
        )
        .unwrap();
        assert!(verify_with_reference(&old, &headers, body));
        assert!(verify_with_reference(&new, &headers, body));
    }

    #[test]
    fn the_spec_example_signature() {
        // From the Standard Webhooks specification's test vectors.
        let headers = sign(
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(
            headers.webhook_signature,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}

//! Secrets at rest: processor credentials are sealed with ChaCha20-Poly1305
//! (an AEAD) under the operator's `PAYLINK_SECRETS_KEY` (32 random bytes,
//! base64) before they reach the database, so a copy of the database alone
//! does not hold a merchant's Stripe key. Each sealed value is bound to what
//! it is for (associated data such as `processor:acct_…:live`), so a sealed
//! value copied onto another account or mode does not open.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};

/// What an operator is told when the key is missing or malformed.
pub const HOW_TO_MAKE_A_KEY: &str = "set PAYLINK_SECRETS_KEY to 32 random bytes in base64, made once and kept safe \
     (e.g. `openssl rand -base64 32` or `head -c 32 /dev/urandom | base64`); every node needs the same key";

const VERSION: &str = "v1:";
const NONCE_BYTES: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("PAYLINK_SECRETS_KEY is not set: {HOW_TO_MAKE_A_KEY}")]
    NoKey,
    #[error("PAYLINK_SECRETS_KEY is not 32 bytes of base64: {HOW_TO_MAKE_A_KEY}")]
    BadKey,
    #[error("a sealed secret does not open with PAYLINK_SECRETS_KEY (another key, or altered)")]
    CannotOpen,
}

#[derive(Clone)]
pub struct SecretsKey {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

impl SecretsKey {
    /// Parses the base64 form of a 32-byte key.
    pub fn parse(text: &str) -> Result<Self, SecretsError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| SecretsError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SecretsError::BadKey);
        }
        let cipher = ChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SecretsError::BadKey)?;
        Ok(Self { cipher })
    }

    /// `v1:` + base64(nonce || ciphertext), bound to `purpose`.
    pub fn seal(&self, plaintext: &[u8], purpose: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).expect("the operating system's random source failed");
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: purpose.as_bytes(),
                },
            )
            .expect("ChaCha20-Poly1305 seals any message under 256 GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{VERSION}{}", STANDARD.encode(out))
    }

    pub fn open(&self, sealed: &str, purpose: &str) -> Result<Vec<u8>, SecretsError> {
        let bytes = sealed
            .strip_prefix(VERSION)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .filter(|bytes| bytes.len() > NONCE_BYTES)
            .ok_or(SecretsError::CannotOpen)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| SecretsError::CannotOpen)?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::CannotOpen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretsKey {
        SecretsKey::parse(&STANDARD.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_purpose() {
        let sealed = key().seal(b"sk_test_123", "processor:acct_1:test");
        assert!(!sealed.contains("sk_test_123"));
        assert_eq!(
            key().open(&sealed, "processor:acct_1:test").unwrap(),
            b"sk_test_123"
        );
        assert!(key().open(&sealed, "processor:acct_2:test").is_err());
        let other = SecretsKey::parse(&STANDARD.encode([8u8; 32])).unwrap();
        assert!(other.open(&sealed, "processor:acct_1:test").is_err());
        // Two seals of one secret differ (a fresh nonce each time).
        assert_ne!(sealed, key().seal(b"sk_test_123", "processor:acct_1:test"));
    }

    #[test]
    fn keys_that_are_not_32_bytes_of_base64_are_refused() {
        assert!(matches!(
            SecretsKey::parse("short"),
            Err(SecretsError::BadKey)
        ));
        assert!(matches!(
            SecretsKey::parse(&STANDARD.encode([1u8; 16])),
            Err(SecretsError::BadKey)
        ));
    }
}

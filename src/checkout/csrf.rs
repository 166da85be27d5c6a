//! The checkout's CSRF token: issued by the server, bound to one link.
//!
//! A token is 22 random base62 characters (about 131 bits) followed by an
//! HMAC-SHA256 tag over the link's slug and that nonce, under a key every
//! node shares (made once, kept in the store). The token travels as an
//! `HttpOnly`, `SameSite=Strict` cookie scoped to the link's path and as a
//! hidden form field; a POST must carry the same valid token in both.
//! Because the tag binds the slug, a token of one link is worthless on
//! another, and a cookie value the server did not issue fails the tag and
//! is replaced, never reflected into the form. No server session is
//! needed, so this works across nodes.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::domain::ids;

const NONCE_CHARS: usize = 22;

#[derive(Clone)]
pub struct CsrfKey(Hmac<Sha256>);

impl CsrfKey {
    pub fn new(key: &[u8]) -> anyhow::Result<Self> {
        Ok(Self(Hmac::new_from_slice(key)?))
    }

    fn tag(&self, slug: &str, nonce: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(slug.as_bytes());
        mac.update(b"\n");
        mac.update(nonce.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A fresh token for the link `slug`.
    pub fn issue(&self, slug: &str) -> String {
        let nonce = ids::random_base62(NONCE_CHARS);
        let tag = self.tag(slug, &nonce);
        format!("{nonce}.{tag}")
    }

    /// Whether `token` was issued by this server for `slug`.
    pub fn verify(&self, slug: &str, token: &str) -> bool {
        let Some((nonce, tag)) = token.split_once('.') else {
            return false;
        };
        nonce.len() == NONCE_CHARS
            && nonce.bytes().all(|b| b.is_ascii_alphanumeric())
            && same_bytes(self.tag(slug, nonce).as_bytes(), tag.as_bytes())
    }
}

/// Equal-time comparison, so a token cannot be guessed byte by byte.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_bound_to_its_link_and_its_key() {
        let key = CsrfKey::new(b"0123456789abcdef0123456789abcdef").unwrap();
        let token = key.issue("slugA");
        assert!(key.verify("slugA", &token));
        assert!(!key.verify("slugB", &token), "another link's token");
        assert!(!CsrfKey::new(b"other key").unwrap().verify("slugA", &token));
        let (nonce, _) = token.split_once('.').unwrap();
        assert!(!key.verify("slugA", &format!("{nonce}.{}", "0".repeat(64))));
        assert!(!key.verify("slugA", "AAAAAAAAAAAAAAAAAAAAAA"));
        assert!(!key.verify("slugA", ""));
        assert_ne!(key.issue("slugA"), token, "fresh nonces");
    }
}

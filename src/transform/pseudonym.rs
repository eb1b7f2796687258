//! Keyed pseudonyms. A token carries a short identifier of the key that made
//! it, so that after a key rotation old and new tokens can be told apart.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// A secret key for `hmac` pseudonyms. Its bytes never leave this type:
/// `Debug` prints the key identifier only.
pub struct PseudonymKey {
    secret: Vec<u8>,
    id: String,
}

impl PseudonymKey {
    /// The shortest key accepted, in bytes.
    pub const MIN_LEN: usize = 16;

    pub fn new(secret: Vec<u8>) -> PseudonymKey {
        let mut fingerprint = Sha256::new();
        fingerprint.update(b"scrim key id\0");
        fingerprint.update(&secret);
        let digest = fingerprint.finalize();
        let id = digest[..3].iter().map(|b| format!("{b:02x}")).collect();
        PseudonymKey { secret, id }
    }

    /// Six hex digits derived from the key (not a secret: a one-way
    /// fingerprint of 24 bits).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `{prefix}{key id}.{base64url(HMAC-SHA256(value))}`, the MAC cut to
    /// `length` characters.
    pub fn pseudonym(&self, prefix: &str, length: usize, value: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(value);
        let tag =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        let cut = length.min(tag.len());
        format!("{prefix}{}.{}", self.id, &tag[..cut])
    }
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PseudonymKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_keyed_stable_and_carry_the_key_id() {
        let a = PseudonymKey::new(b"0123456789abcdef-key-a".to_vec());
        let b = PseudonymKey::new(b"0123456789abcdef-key-b".to_vec());
        let token = a.pseudonym("u_", 22, b"alice");
        assert_eq!(token, a.pseudonym("u_", 22, b"alice"));
        assert_ne!(token, b.pseudonym("u_", 22, b"alice"));
        assert_ne!(token, a.pseudonym("u_", 22, b"bob"));
        assert!(token.starts_with(&format!("u_{}.", a.id())));
        assert_eq!(token.len(), 2 + 6 + 1 + 22);
        assert!(!format!("{a:?}").contains("0123456789"));
    }
}

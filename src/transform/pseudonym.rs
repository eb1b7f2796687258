//! Keyed pseudonyms. A token carries a short identifier of the key that made
//! it, so that after a key rotation old and new tokens can be told apart.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A secret key for `hmac` pseudonyms. Its bytes never leave this type
/// (`Debug` prints the key identifier only) and are zeroed when it goes.
pub struct PseudonymKey {
    secret: Zeroizing<Vec<u8>>,
    id: String,
}

/// How a token is written (`shape:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// `{prefix}{key id}.{base64url MAC}`.
    #[default]
    Token,
    /// Two decimal numbers joined by a dot, as Google Analytics writes a
    /// client id (`1234567890.1234567890`), so that GA accepts it.
    GaClientId,
    /// Ten decimal digits (a GA session id's shape).
    Digits,
}

impl Shape {
    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Token => "token",
            Shape::GaClientId => "ga_client_id",
            Shape::Digits => "digits",
        }
    }
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
        PseudonymKey {
            secret: Zeroizing::new(secret),
            id,
        }
    }

    /// Six hex digits derived from the key (not a secret: a one-way
    /// fingerprint of 24 bits).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The secret of another key, made from this one for `purpose` and
    /// `context` (a rotating key's period): one-way, so that the derived
    /// key tells nothing of this one.
    pub fn derive(&self, purpose: &[u8], context: &[u8]) -> Vec<u8> {
        self.mac(&[purpose, b"\0", context]).to_vec()
    }

    /// `{prefix}{key id}.{base64url(HMAC-SHA256(value))}`, the MAC cut to
    /// `length` characters.
    pub fn pseudonym(&self, prefix: &str, length: usize, value: &[u8]) -> String {
        let mut out = String::new();
        self.pseudonym_into(Shape::Token, prefix, length, value, &mut out);
        out
    }

    /// The pseudonym of `value` in `shape`, appended to `out`. `prefix` and
    /// `length` shape a [`Shape::Token`] only.
    pub fn pseudonym_into(
        &self,
        shape: Shape,
        prefix: &str,
        length: usize,
        value: &[u8],
        out: &mut String,
    ) {
        use std::fmt::Write as _;
        let mac = self.mac(&[value]);
        let number =
            |at: usize| u32::from_be_bytes([mac[at], mac[at + 1], mac[at + 2], mac[at + 3]]);
        // A number of ten digits that reads like a Unix time between 2001
        // and 2023, as GA's own second half and session ids do.
        let ten_digits = |at: usize| 1_000_000_000 + number(at) % 700_000_000;
        match shape {
            Shape::Token => {
                let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac);
                let cut = length.min(tag.len());
                let _ = write!(out, "{prefix}{}.{}", self.id, &tag[..cut]);
            }
            // GA's first half is a random 31-bit number.
            Shape::GaClientId => {
                let _ = write!(out, "{}.{}", number(0) & 0x7fff_ffff, ten_digits(4));
            }
            Shape::Digits => {
                let _ = write!(out, "{}", ten_digits(0));
            }
        }
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

    #[test]
    fn ga_shapes() {
        let key = PseudonymKey::new(b"0123456789abcdef-key-a".to_vec());
        let mut cid = String::new();
        key.pseudonym_into(Shape::GaClientId, "", 22, b"123.456", &mut cid);
        let (first, second) = cid.split_once('.').expect("two halves");
        assert!(first.parse::<u32>().is_ok_and(|n| n < 1 << 31), "{cid}");
        assert!(second.len() == 10 && second.parse::<u64>().is_ok(), "{cid}");
        let mut sid = String::new();
        key.pseudonym_into(Shape::Digits, "", 22, b"1700000000", &mut sid);
        assert!(
            sid.len() == 10 && sid.bytes().all(|b| b.is_ascii_digit()),
            "{sid}"
        );
        assert_ne!(key.derive(b"p", b"1"), key.derive(b"p", b"2"));
    }
}

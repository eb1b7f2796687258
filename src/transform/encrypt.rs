//! The `encrypt` action: deterministic AES-SIV (RFC 5297), reversible by
//! whoever holds the key, with no store. The same normalized value under
//! the same key always gives the same text, so platforms can still join on
//! it; unlike a vault token it cannot be erased (delete the key to make
//! every value under it unreadable at once).

use aes_siv::aead::KeyInit as _;
use aes_siv::siv::Aes256Siv;
use base64::Engine as _;
use zeroize::Zeroizing;

use super::PseudonymKey;

/// The associated data of every `encrypt` ciphertext: a text made by
/// another use of AES-SIV under the same key is refused.
const ASSOCIATED: &[u8] = b"scrim encrypt v1";

/// An `encrypt` key: 512 bits for AES-256-SIV, derived from a secret under
/// `keys:`, and that secret's identifier.
pub struct EncryptKey {
    key: Zeroizing<[u8; 64]>,
    id: String,
}

impl EncryptKey {
    pub fn new(secret: &PseudonymKey) -> EncryptKey {
        let mut key = Zeroizing::new([0u8; 64]);
        // Two halves, each a one-way function of the secret: the MAC key
        // and the cipher key of SIV.
        key[..32].copy_from_slice(&secret.derive(b"scrim encrypt aes-siv", b"mac"));
        key[32..].copy_from_slice(&secret.derive(b"scrim encrypt aes-siv", b"ctr"));
        EncryptKey {
            key,
            id: secret.id().to_owned(),
        }
    }

    /// Six hex digits that name the key in each text it makes.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Aes256Siv {
        Aes256Siv::new((&*self.key).into())
    }

    /// `{prefix}{key id}.{base64url(AES-SIV(value))}` into `out`.
    pub fn encrypt_into(&self, prefix: &str, value: &str, out: &mut String) {
        let Ok(sealed) = self.cipher().encrypt([ASSOCIATED], value.as_bytes()) else {
            // Only past 126 associated-data headers; there is one.
            unreachable!("one header of associated data")
        };
        out.reserve(prefix.len() + self.id.len() + 1 + sealed.len().div_ceil(3) * 4);
        out.push_str(prefix);
        out.push_str(&self.id);
        out.push('.');
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(&sealed, out);
    }

    /// The value inside `text`, if `text` ends with `{key id}.{base64url}`
    /// made by this key (any prefix before it). `None` for anything else,
    /// including a text altered anywhere after the prefix.
    pub fn decrypt(&self, text: &str) -> Option<Zeroizing<String>> {
        let dot = text.rfind('.')?;
        let (head, sealed) = (&text[..dot], &text[dot + 1..]);
        if !head.ends_with(self.id.as_str()) {
            return None;
        }
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed)
            .ok()?;
        let value = self.cipher().decrypt([ASSOCIATED], &sealed).ok()?;
        String::from_utf8(value).ok().map(Zeroizing::new)
    }
}

impl std::fmt::Debug for EncryptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncryptKey({})", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &[u8]) -> EncryptKey {
        EncryptKey::new(&PseudonymKey::new(secret.to_vec()))
    }

    #[test]
    fn encryption_is_deterministic_and_reversible() {
        let key = key(b"a key of at least sixteen bytes");
        let (mut a, mut b) = (String::new(), String::new());
        key.encrypt_into("enc_", "jane@example.com", &mut a);
        key.encrypt_into("enc_", "jane@example.com", &mut b);
        assert_eq!(a, b);
        assert!(a.starts_with(&format!("enc_{}.", key.id())), "{a}");
        assert!(!a.contains("jane"));
        assert_eq!(
            key.decrypt(&a).as_deref().map(String::as_str),
            Some("jane@example.com")
        );
        let mut other = String::new();
        key.encrypt_into("enc_", "john@example.com", &mut other);
        assert_ne!(a, other);
    }

    /// RFC 5297 A.1's vector, through the cipher this module builds on.
    #[test]
    fn rfc_5297_deterministic_vector() {
        let key: [u8; 32] = hex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
            .try_into()
            .unwrap();
        let mut cipher = aes_siv::siv::Aes128Siv::new((&key).into());
        let ad = hex("101112131415161718191a1b1c1d1e1f2021222324252627");
        let plaintext = hex("112233445566778899aabbccddee");
        let sealed = cipher.encrypt([&ad], &plaintext).unwrap();
        assert_eq!(
            sealed,
            hex("85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c")
        );
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_changed_text_or_another_key_reveals_nothing() {
        let key_a = key(b"a key of at least sixteen bytes");
        let key_b = key(b"another key of sixteen bytes or more");
        let mut text = String::new();
        key_a.encrypt_into("", "+14155552671", &mut text);
        assert!(key_b.decrypt(&text).is_none());
        let mut altered = text.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(
            key_a
                .decrypt(std::str::from_utf8(&altered).unwrap())
                .is_none()
        );
        assert!(key_a.decrypt("no token here").is_none());
    }
}

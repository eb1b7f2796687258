//! The vault's keys. Values are sealed with AES-256-GCM under a key derived
//! from `keys.vault` (new values) or one of `vault.previous_keys` (read
//! only); each sealed value names its key, so a rotation leaves old values
//! readable. Fingerprints are HMACs under a random key made once per vault
//! and kept in the store, sealed under the same keys: it does not change
//! when `keys.vault` does, so tokens stay convergent across a rotation, and
//! a copy of the store tells nothing without `keys.vault`.

use hmac::{Hmac, KeyInit, Mac};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::rewrite::Fingerprint;
use crate::transform::PseudonymKey;

/// Bytes of a key identifier in a sealed value.
const KEY_ID_LEN: usize = 4;

/// The associated data of the sealed fingerprint key.
const FINGERPRINT_KEY_CONTEXT: &[u8] = b"scrim vault fingerprint key v1";

/// One AES-256-GCM key and its identifier.
struct SealingKey {
    id: [u8; KEY_ID_LEN],
    key: LessSafeKey,
}

impl SealingKey {
    fn derive(secret: &PseudonymKey) -> SealingKey {
        let bytes = Zeroizing::new(secret.derive(b"scrim vault values", b"aes-256-gcm"));
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(
            &Sha256::digest([b"scrim vault key id\0".as_slice(), &bytes].concat())[..KEY_ID_LEN],
        );
        let Ok(unbound) = UnboundKey::new(&AES_256_GCM, &bytes) else {
            unreachable!("a derived key has AES-256's 32 bytes")
        };
        SealingKey {
            id,
            key: LessSafeKey::new(unbound),
        }
    }
}

/// Why a sealed value could not be opened: none of the configured keys made
/// it, or it was altered. Never says more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

/// The keys that seal values (the newest first) and the fingerprint key.
pub struct Keyring {
    sealing: Vec<SealingKey>,
    fingerprint: Option<Hmac<Sha256>>,
    /// A one-way identifier of the fingerprint key (not a secret): what
    /// replicas of a shared store compare to know they fingerprint alike.
    fingerprint_id: [u8; 16],
}

impl Keyring {
    /// `current` seals; `previous` only open.
    pub fn new(current: &PseudonymKey, previous: &[&PseudonymKey]) -> Keyring {
        let sealing = std::iter::once(current)
            .chain(previous.iter().copied())
            .map(SealingKey::derive)
            .collect();
        Keyring {
            sealing,
            fingerprint: None,
            fingerprint_id: [0; 16],
        }
    }

    /// The current key's identifier, in hex (for `GET /vault/stats`).
    pub fn current_key_id(&self) -> String {
        self.sealing[0]
            .id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// `key id ‖ nonce ‖ AES-256-GCM(plaintext)`, bound to `context`.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, getrandom::Error> {
        let key = &self.sealing[0];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)?;
        let mut sealed = Vec::with_capacity(KEY_ID_LEN + NONCE_LEN + plaintext.len() + 16);
        sealed.extend_from_slice(&key.id);
        sealed.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        let Ok(()) = key.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context),
            &mut body,
        ) else {
            unreachable!("AES-GCM seals any message shorter than 64 GiB")
        };
        sealed.extend_from_slice(&body);
        body.fill(0);
        Ok(sealed)
    }

    /// The plaintext of [`Keyring::seal`]'s output, and whether it was
    /// sealed under a key other than the current one.
    pub fn open(
        &self,
        context: &[u8],
        sealed: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, bool), Unreadable> {
        if sealed.len() < KEY_ID_LEN + NONCE_LEN {
            return Err(Unreadable);
        }
        let (id, rest) = sealed.split_at(KEY_ID_LEN);
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let (index, key) = self
            .sealing
            .iter()
            .enumerate()
            .find(|(_, key)| key.id == id)
            .ok_or(Unreadable)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unreadable)?;
        let mut body = Zeroizing::new(body.to_vec());
        let length = key
            .key
            .open_in_place(nonce, Aad::from(context), &mut body)
            .map_err(|_| Unreadable)?
            .len();
        body.truncate(length);
        Ok((body, index != 0))
    }

    /// A new fingerprint key, sealed for the store.
    pub fn new_fingerprint_key(&self) -> Result<Vec<u8>, getrandom::Error> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *key)?;
        self.seal(FINGERPRINT_KEY_CONTEXT, &*key)
    }

    /// Takes the store's sealed fingerprint key. `Ok(Some(resealed))` when
    /// it was sealed under a previous key: the caller stores it sealed
    /// under the current one.
    pub fn adopt_fingerprint_key(&mut self, sealed: &[u8]) -> Result<Option<Vec<u8>>, Unreadable> {
        let (key, old) = self.open(FINGERPRINT_KEY_CONTEXT, sealed)?;
        let Ok(mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&key) else {
            unreachable!("HMAC takes keys of any length")
        };
        self.fingerprint = Some(mac);
        let id = Sha256::digest([b"scrim vault fingerprint id\0".as_slice(), &key].concat());
        self.fingerprint_id.copy_from_slice(&id[..16]);
        if !old {
            return Ok(None);
        }
        self.seal(FINGERPRINT_KEY_CONTEXT, &key)
            .map(Some)
            .map_err(|_| Unreadable)
    }

    /// The fingerprint key's identifier (once adopted): the same for every
    /// replica that fingerprints alike, whatever key seals it.
    pub fn fingerprint_id(&self) -> [u8; 16] {
        self.fingerprint_id
    }

    /// HMAC-SHA256 of the namespace and the value, under the fingerprint
    /// key. Panics if the key was never adopted (the vault adopts it
    /// before it serves).
    pub fn fingerprint(&self, namespace: &str, normalized: &str) -> Fingerprint {
        let Some(key) = &self.fingerprint else {
            unreachable!("the vault adopts its fingerprint key before it answers")
        };
        let mut mac = key.clone();
        mac.update(&(namespace.len() as u64).to_be_bytes());
        mac.update(namespace.as_bytes());
        mac.update(normalized.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &[u8]) -> PseudonymKey {
        PseudonymKey::new(secret.to_vec())
    }

    #[test]
    fn sealed_values_open_after_a_rotation_and_nowhere_else() {
        let old = key(b"the old vault key, sixteen+ bytes");
        let new = key(b"the new vault key, sixteen+ bytes");
        let before = Keyring::new(&old, &[]);
        let sealed = before.seal(b"fp", b"jane@example.com").unwrap();
        assert!(!sealed.windows(4).any(|w| w == b"jane"));

        let after = Keyring::new(&new, &[&old]);
        let (plain, was_old) = after.open(b"fp", &sealed).unwrap();
        assert_eq!(&plain[..], b"jane@example.com");
        assert!(was_old);
        assert_eq!(after.open(b"other", &sealed), Err(Unreadable));
        let without_old = Keyring::new(&new, &[]);
        assert_eq!(without_old.open(b"fp", &sealed), Err(Unreadable));

        let resealed = after.seal(b"fp", &plain).unwrap();
        assert!(!after.open(b"fp", &resealed).unwrap().1);
        let mut altered = resealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(after.open(b"fp", &altered), Err(Unreadable));
    }

    #[test]
    fn the_fingerprint_key_survives_a_rotation() {
        let old = key(b"the old vault key, sixteen+ bytes");
        let new = key(b"the new vault key, sixteen+ bytes");
        let mut before = Keyring::new(&old, &[]);
        let stored = before.new_fingerprint_key().unwrap();
        assert_eq!(before.adopt_fingerprint_key(&stored), Ok(None));
        let fingerprint = before.fingerprint("crm", "jane@example.com");
        assert_ne!(fingerprint, before.fingerprint("ads", "jane@example.com"));

        let mut after = Keyring::new(&new, &[&old]);
        let resealed = after.adopt_fingerprint_key(&stored).unwrap().unwrap();
        assert_eq!(after.fingerprint("crm", "jane@example.com"), fingerprint);
        let mut later = Keyring::new(&new, &[]);
        assert_eq!(later.adopt_fingerprint_key(&resealed), Ok(None));
        assert_eq!(later.fingerprint("crm", "jane@example.com"), fingerprint);
        assert_eq!(
            Keyring::new(&new, &[]).adopt_fingerprint_key(&stored),
            Err(Unreadable)
        );
    }
}

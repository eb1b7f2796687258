//! The vault's read-through cache: tokens by fingerprint and values by
//! token, each bounded, each entry with the expiry its mapping has in the
//! store. An erasure removes its entries here before it answers.

use std::hash::Hash;

use dashmap::DashMap;

use crate::rewrite::{Fingerprint, Secret, Token};

/// Seconds since the Unix epoch (the stores' expiry clock).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// When a mapping ends: never (0), or at this second since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry(pub u64);

impl Expiry {
    pub const NEVER: Expiry = Expiry(0);

    pub fn after(ttl: Option<std::time::Duration>) -> Expiry {
        ttl.map_or(Expiry::NEVER, |ttl| {
            Expiry(now().saturating_add(ttl.as_secs()).max(1))
        })
    }

    pub fn is_past(self, now: u64) -> bool {
        self.0 != 0 && self.0 <= now
    }
}

/// A bounded map: past `capacity`, an arbitrary sixteenth of it goes (the
/// hash order is as good as random, and costs no bookkeeping per hit).
struct Bounded<K: Eq + Hash, V> {
    map: DashMap<K, (V, Expiry)>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> Bounded<K, V> {
    fn new(capacity: usize) -> Self {
        Bounded {
            map: DashMap::new(),
            capacity: capacity.max(1),
        }
    }

    fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entry = self.map.get(key)?;
        let (value, expiry) = entry.value();
        if expiry.is_past(now()) {
            drop(entry);
            self.map.remove(key);
            return None;
        }
        Some(value.clone())
    }

    fn insert(&self, key: K, value: V, expiry: Expiry) {
        if self.map.len() >= self.capacity {
            // A sixteenth at once: the next sixteenth of inserts is free,
            // so a full pass over the map costs each insert sixteen steps.
            let mut evict = self.map.len() + 1 - self.capacity + self.capacity / 16;
            self.map.retain(|_, _| {
                if evict == 0 {
                    return true;
                }
                evict -= 1;
                false
            });
        }
        self.map.insert(key, (value, expiry));
    }

    fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove(key).map(|(_, (value, _))| value)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Tokens by fingerprint, values by token.
pub struct Cache {
    tokens: Bounded<Fingerprint, Token>,
    values: Bounded<Token, (Secret, Fingerprint)>,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            tokens: Bounded::new(capacity),
            values: Bounded::new(capacity),
        }
    }

    pub fn token(&self, fingerprint: &Fingerprint) -> Option<Token> {
        self.tokens.get(fingerprint)
    }

    pub fn value(&self, token: &str) -> Option<Secret> {
        self.values.get(token).map(|(value, _)| value)
    }

    /// A mapping as the store has it.
    pub fn insert(
        &self,
        fingerprint: Fingerprint,
        token: Token,
        value: Option<Secret>,
        expiry: Expiry,
    ) {
        if let Some(value) = value {
            self.values
                .insert(token.clone(), (value, fingerprint), expiry);
        }
        self.tokens.insert(fingerprint, token, expiry);
    }

    /// Forgets a token and its value's fingerprint.
    pub fn erase_token(&self, token: &str) {
        if let Some((_, fingerprint)) = self.values.remove(token) {
            self.tokens.remove(&fingerprint);
        }
        // A token cached one way only (issued, never revealed here).
        self.tokens.map.retain(|_, (cached, _)| &**cached != token);
    }

    /// Forgets a fingerprint's token, and that token's value.
    pub fn erase_fingerprint(&self, fingerprint: &Fingerprint) {
        if let Some(token) = self.tokens.remove(fingerprint) {
            self.values.remove(&*token);
        }
    }

    /// Forgets everything (a replica that may have missed an erasure).
    pub fn clear(&self) {
        self.tokens.map.clear();
        self.values.map.clear();
    }

    /// Entries held, tokens and values.
    pub fn len(&self) -> (usize, usize) {
        (self.tokens.len(), self.values.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use zeroize::Zeroizing;

    use super::*;

    fn secret(text: &str) -> Secret {
        Arc::new(Zeroizing::new(text.to_owned()))
    }

    #[test]
    fn the_cache_stays_bounded_and_forgets_what_is_erased() {
        let cache = Cache::new(64);
        for i in 0..1000u32 {
            let mut fingerprint = [0u8; 32];
            fingerprint[..4].copy_from_slice(&i.to_be_bytes());
            cache.insert(
                fingerprint,
                format!("tok_{i}").into(),
                Some(secret("v")),
                Expiry::NEVER,
            );
            let (tokens, values) = cache.len();
            assert!(tokens <= 64 && values <= 64, "{tokens} {values}");
        }
        let fingerprint = [9u8; 32];
        cache.insert(
            fingerprint,
            "tok_x".into(),
            Some(secret("jane")),
            Expiry::NEVER,
        );
        assert_eq!(
            cache.value("tok_x").as_deref().map(|v| v.as_str()),
            Some("jane")
        );
        cache.erase_token("tok_x");
        assert!(cache.value("tok_x").is_none());
        assert!(cache.token(&fingerprint).is_none());
        cache.insert(fingerprint, "tok_y".into(), None, Expiry::NEVER);
        cache.erase_token("tok_y");
        assert!(cache.token(&fingerprint).is_none());
    }

    #[test]
    fn expired_entries_are_not_answered() {
        let cache = Cache::new(8);
        cache.insert([1; 32], "tok_old".into(), Some(secret("v")), Expiry(1));
        assert!(cache.token(&[1; 32]).is_none());
        assert!(cache.value("tok_old").is_none());
        cache.insert(
            [2; 32],
            "tok_new".into(),
            None,
            Expiry::after(Some(std::time::Duration::from_secs(60))),
        );
        assert!(cache.token(&[2; 32]).is_some());
    }
}

//! The vault's read-through cache: tokens by fingerprint and values by
//! token, each bounded, each entry with the expiry its mapping has in the
//! store (and, where replicas share a store, at most a minute's life: an
//! erasure another replica published and this one missed lasts no longer).
//!
//! An erasure removes its entries here before it answers. What a store
//! answered before an erasure must not come back into the cache after it:
//! every erasure moves the cache's generation on, and an answer is cached
//! only if the generation is the one its question started in.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

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

    /// The earlier of the two (never is the latest).
    fn min(self, other: Expiry) -> Expiry {
        match (self.0, other.0) {
            (0, _) => other,
            (_, 0) => self,
            (a, b) => Expiry(a.min(b)),
        }
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
}

/// Tokens by fingerprint, and by token its value (when this replica has
/// it) and fingerprint.
pub struct Cache {
    tokens: Bounded<Fingerprint, Token>,
    values: Bounded<Token, (Option<Secret>, Fingerprint)>,
    /// Moved on by every erasure.
    generation: AtomicU64,
    /// The longest an entry lives, in seconds (0: as long as its mapping).
    max_age: u64,
}

impl Cache {
    /// `max_age`: the longest an entry lives here, for a store that other
    /// replicas erase from (`None`: as long as its mapping).
    pub fn new(capacity: usize, max_age: Option<std::time::Duration>) -> Cache {
        Cache {
            tokens: Bounded::new(capacity),
            values: Bounded::new(capacity),
            generation: AtomicU64::new(0),
            max_age: max_age.map_or(0, |age| age.as_secs().max(1)),
        }
    }

    /// The generation a question starts in (see [`Cache::insert`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn token(&self, fingerprint: &Fingerprint) -> Option<Token> {
        self.tokens.get(fingerprint)
    }

    pub fn value(&self, token: &str) -> Option<Secret> {
        self.values.get(token).and_then(|(value, _)| value)
    }

    /// A mapping as the store gave it to a question asked in `generation`:
    /// left out if an erasure came since, which it may predate.
    pub fn insert(
        &self,
        generation: u64,
        fingerprint: Fingerprint,
        token: Token,
        value: Option<Secret>,
        expiry: Expiry,
    ) {
        if self.generation() != generation {
            return;
        }
        let expiry = match self.max_age {
            0 => expiry,
            age => expiry.min(Expiry(now() + age)),
        };
        self.values
            .insert(token.clone(), (value, fingerprint), expiry);
        self.tokens.insert(fingerprint, token, expiry);
    }

    fn erased(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Forgets a token and its value's fingerprint.
    pub fn erase_token(&self, token: &str) {
        self.erased();
        if let Some((_, fingerprint)) = self.values.remove(token) {
            self.tokens.remove(&fingerprint);
        }
    }

    /// Forgets a fingerprint's token, and that token's value.
    pub fn erase_fingerprint(&self, fingerprint: &Fingerprint) {
        self.erased();
        if let Some(token) = self.tokens.remove(fingerprint) {
            self.values.remove(&*token);
        }
    }

    /// Forgets everything (a replica that may have missed an erasure).
    pub fn clear(&self) {
        self.erased();
        self.tokens.map.clear();
        self.values.map.clear();
    }

    /// Entries held: tokens, and values.
    pub fn len(&self) -> (usize, usize) {
        let values = self
            .values
            .map
            .iter()
            .filter(|e| e.value().0.0.is_some())
            .count();
        (self.tokens.map.len(), values)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use zeroize::Zeroizing;

    use super::*;
    use crate::rewrite::Plain;

    fn secret(text: &str) -> Secret {
        Arc::new(Plain {
            namespace: "crm".into(),
            value: Zeroizing::new(text.to_owned()),
        })
    }

    #[test]
    fn the_cache_stays_bounded_and_forgets_what_is_erased() {
        let cache = Cache::new(64, None);
        for i in 0..1000u32 {
            let mut fingerprint = [0u8; 32];
            fingerprint[..4].copy_from_slice(&i.to_be_bytes());
            cache.insert(
                cache.generation(),
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
            cache.generation(),
            fingerprint,
            "tok_x".into(),
            Some(secret("jane")),
            Expiry::NEVER,
        );
        assert_eq!(
            cache.value("tok_x").map(|v| v.value.to_string()),
            Some("jane".to_owned())
        );
        cache.erase_token("tok_x");
        assert!(cache.value("tok_x").is_none());
        assert!(cache.token(&fingerprint).is_none());
        // A token cached one way only (issued elsewhere) goes too.
        cache.insert(
            cache.generation(),
            fingerprint,
            "tok_y".into(),
            None,
            Expiry::NEVER,
        );
        cache.erase_token("tok_y");
        assert!(cache.token(&fingerprint).is_none());
    }

    /// An answer the store gave before an erasure does not come back.
    #[test]
    fn an_answer_older_than_an_erasure_is_not_cached() {
        let cache = Cache::new(8, None);
        let asked_in = cache.generation();
        cache.erase_token("tok_z");
        cache.insert(
            asked_in,
            [3; 32],
            "tok_z".into(),
            Some(secret("v")),
            Expiry::NEVER,
        );
        assert!(cache.value("tok_z").is_none());
        assert!(cache.token(&[3; 32]).is_none());
    }

    #[test]
    fn expired_entries_are_not_answered() {
        let cache = Cache::new(8, None);
        cache.insert(0, [1; 32], "tok_old".into(), Some(secret("v")), Expiry(1));
        assert!(cache.token(&[1; 32]).is_none());
        assert!(cache.value("tok_old").is_none());
        let later = Expiry::after(Some(std::time::Duration::from_secs(60)));
        cache.insert(0, [2; 32], "tok_new".into(), None, later);
        assert!(cache.token(&[2; 32]).is_some());
        let shared = Cache::new(8, Some(std::time::Duration::from_secs(60)));
        shared.insert(0, [2; 32], "tok_new".into(), None, Expiry::NEVER);
        assert!(
            shared
                .tokens
                .map
                .get(&[2; 32])
                .is_some_and(|e| e.value().1 != Expiry::NEVER)
        );
    }
}

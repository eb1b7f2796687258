//! Keys that rotate on a schedule (`rotate:` of an `hmac` rule): a
//! pseudonym links a person's values within one period and not across
//! periods, as the daily salts of privacy-first analytics do.
//!
//! A period's key is random by default and lives in this process's memory
//! only: once the period is over it is dropped (its bytes zeroed), and
//! nothing, not even whoever runs scrim, can link the old tokens to new
//! ones. With a `key:`, each period's key is derived from that key and the
//! period's start instead, so that every scrim of a site (replicas, a
//! restart) makes the same tokens; whoever holds the key can then derive
//! an old period's key again, and the README says so.
//!
//! This is the one place below the proxy that reads the clock: a key must
//! change at its period's boundary whether or not anything asks. The proxy
//! calls [`RotatingKey::forget_expired`] every second, so that an old key
//! does not outlive its period by more than that when no request comes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;

use super::PseudonymKey;

/// Where each period's key comes from.
#[derive(Debug)]
pub enum KeySource {
    /// Random bytes, known to this process only.
    Random,
    /// Derived from a configured key and the period's start.
    Derived(Arc<PseudonymKey>),
}

/// A key that changes every `period`, periods counted from the Unix epoch
/// (a daily key changes at midnight UTC).
#[derive(Debug)]
pub struct RotatingKey {
    period: Duration,
    source: KeySource,
    current: ArcSwapOption<PeriodKey>,
    /// Held while a new period's key is made, so that two workers meeting
    /// the boundary at once make one.
    making: Mutex<()>,
}

/// One period's key.
#[derive(Debug)]
pub struct PeriodKey {
    /// The period's number since the epoch.
    index: u64,
    key: PseudonymKey,
}

impl PeriodKey {
    pub fn key(&self) -> &PseudonymKey {
        &self.key
    }
}

/// Bytes of a random period key.
const RANDOM_KEY_BYTES: usize = 32;

impl RotatingKey {
    /// The shortest period accepted.
    pub const MIN_PERIOD: Duration = Duration::from_secs(1);

    pub fn new(period: Duration, source: KeySource) -> RotatingKey {
        RotatingKey {
            period: period.max(Self::MIN_PERIOD),
            source,
            current: ArcSwapOption::empty(),
            making: Mutex::new(()),
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The key of the period `now` falls in.
    pub fn current(&self) -> Result<Arc<PeriodKey>, KeyUnavailable> {
        self.key_at(SystemTime::now())
    }

    /// The key of the period `at` falls in; made, and the previous one
    /// dropped, when `at` is in a new period. Periods only go forward: a
    /// caller that read the clock just before another made the next
    /// period's key (or a clock set back) gets the newest key, never a new
    /// one for a period that is over.
    pub fn key_at(&self, at: SystemTime) -> Result<Arc<PeriodKey>, KeyUnavailable> {
        let index = self.index_of(at);
        if let Some(key) = self.current.load_full()
            && key.index >= index
        {
            return Ok(key);
        }
        let _making = self.making.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = self.current.load_full()
            && key.index >= index
        {
            return Ok(key);
        }
        let key = Arc::new(PeriodKey {
            index,
            key: self.make(index)?,
        });
        self.current.store(Some(key.clone()));
        Ok(key)
    }

    /// Whether `other` makes keys the same way: the same period, and both
    /// random or both derived from the same key.
    pub fn same_schedule(&self, other: &RotatingKey) -> bool {
        self.period == other.period
            && match (&self.source, &other.source) {
                (KeySource::Random, KeySource::Random) => true,
                (KeySource::Derived(a), KeySource::Derived(b)) => a.id() == b.id(),
                _ => false,
            }
    }

    /// Takes over `other`'s key of the current period (a reloaded rule
    /// keeps its predecessor's tokens); an expired one is replaced at its
    /// first use, as here.
    pub fn adopt(&self, other: &RotatingKey) {
        let _making = self.making.lock().unwrap_or_else(|e| e.into_inner());
        self.current.store(other.current.load_full());
    }

    /// Drops the current key once `now` is past its period.
    pub fn forget_expired(&self, now: SystemTime) {
        let index = self.index_of(now);
        let _making = self.making.lock().unwrap_or_else(|e| e.into_inner());
        if self
            .current
            .load()
            .as_ref()
            .is_some_and(|key| key.index < index)
        {
            self.current.store(None);
        }
    }

    fn index_of(&self, at: SystemTime) -> u64 {
        let since_epoch = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        // Whole seconds: the period is at least one.
        since_epoch.as_secs() / self.period.as_secs().max(1)
    }

    fn make(&self, index: u64) -> Result<PseudonymKey, KeyUnavailable> {
        match &self.source {
            KeySource::Random => {
                let mut secret = vec![0u8; RANDOM_KEY_BYTES];
                getrandom::fill(&mut secret).map_err(|_| KeyUnavailable)?;
                Ok(PseudonymKey::new(secret))
            }
            KeySource::Derived(base) => {
                let start = index * self.period.as_secs().max(1);
                Ok(PseudonymKey::new(
                    base.derive(b"scrim period key", &start.to_be_bytes()),
                ))
            }
        }
    }
}

/// The system's random source failed: no token can be made, so the value
/// is not passed (it is invalid, and `on_invalid` decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyUnavailable;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn one_key_per_period_and_the_old_one_forgotten() -> Result<(), KeyUnavailable> {
        let rotating = RotatingKey::new(Duration::from_secs(10), KeySource::Random);
        let first = rotating.key_at(at(100))?;
        assert!(Arc::ptr_eq(&first, &rotating.key_at(at(109))?));
        let id = first.key().id().to_owned();
        let old = Arc::downgrade(&first);
        drop(first);
        let second = rotating.key_at(at(110))?;
        assert_ne!(second.key().id(), id);
        assert!(old.upgrade().is_none(), "the old period's key is dropped");
        let current = Arc::downgrade(&second);
        drop(second);
        rotating.forget_expired(at(115));
        assert!(current.upgrade().is_some(), "still its period");
        rotating.forget_expired(at(120));
        assert!(current.upgrade().is_none(), "forgotten without a request");
        let third = rotating.key_at(at(130))?;
        assert!(
            Arc::ptr_eq(&third, &rotating.key_at(at(125))?),
            "a clock read before the boundary gets the newest key, not a new one"
        );
        Ok(())
    }

    #[test]
    fn an_adopted_key_makes_the_same_tokens() -> Result<(), KeyUnavailable> {
        let old = RotatingKey::new(Duration::from_secs(10), KeySource::Random);
        let new = RotatingKey::new(Duration::from_secs(10), KeySource::Random);
        assert!(new.same_schedule(&old));
        let token = |r: &RotatingKey, t| -> Result<String, KeyUnavailable> {
            Ok(r.key_at(at(t))?.key().pseudonym("", 22, b"cid"))
        };
        let before = token(&old, 100)?;
        new.adopt(&old);
        assert_eq!(token(&new, 105)?, before);
        assert_ne!(token(&new, 110)?, before, "the next period has its own key");
        let hourly = RotatingKey::new(Duration::from_secs(3_600), KeySource::Random);
        assert!(!hourly.same_schedule(&old));
        Ok(())
    }

    #[test]
    fn derived_keys_agree_between_instances_and_differ_by_period() -> Result<(), KeyUnavailable> {
        let base = || Arc::new(PseudonymKey::new(b"0123456789abcdef-base".to_vec()));
        let a = RotatingKey::new(Duration::from_secs(86_400), KeySource::Derived(base()));
        let b = RotatingKey::new(Duration::from_secs(86_400), KeySource::Derived(base()));
        let day = 86_400 * 20_000;
        let token = |r: &RotatingKey, t| -> Result<String, KeyUnavailable> {
            Ok(r.key_at(at(t))?.key().pseudonym("", 22, b"cid-1"))
        };
        assert_eq!(token(&a, day)?, token(&b, day + 3_600)?);
        assert_ne!(token(&a, day)?, token(&a, day + 86_400)?);
        assert_ne!(
            a.key_at(at(day))?.key().id(),
            base().id(),
            "a period's key is not the base key"
        );
        Ok(())
    }
}

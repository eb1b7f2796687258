//! The TLS configurations of intercepted hosts, each with a certificate the
//! CA minted for that host, in a bounded concurrent cache: one minting per
//! host however many connections to it open at once, and a new one once
//! the certificate is half through its life.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::ca::{Authority, LEAF_RENEW_AFTER};
use crate::metrics::ForwardProxyMetrics;

/// A host's configuration, minted by the first connection that needs it;
/// the others wait for that one.
struct Slot {
    made: Instant,
    config: OnceLock<Result<Arc<rustls::ServerConfig>, String>>,
}

impl Slot {
    fn new() -> Arc<Slot> {
        Arc::new(Slot {
            made: Instant::now(),
            config: OnceLock::new(),
        })
    }

    fn fresh(&self) -> bool {
        self.made.elapsed() < LEAF_RENEW_AFTER
    }
}

pub(crate) struct Leaves {
    authority: Arc<Authority>,
    cache: DashMap<Box<str>, Arc<Slot>>,
    capacity: usize,
    metrics: Arc<ForwardProxyMetrics>,
}

impl Leaves {
    /// At most `capacity` hosts' certificates are kept (at least one).
    pub(crate) fn new(
        authority: Arc<Authority>,
        capacity: usize,
        metrics: Arc<ForwardProxyMetrics>,
    ) -> Leaves {
        Leaves {
            authority,
            cache: DashMap::new(),
            capacity: capacity.max(1),
            metrics,
        }
    }

    /// The TLS configuration that serves `host` (lowercase): ALPN `h2` and
    /// `http/1.1`, its minted certificate and the CA's behind it.
    pub(crate) fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, String> {
        let slot = self.slot(host);
        slot.config.get_or_init(|| self.mint(host)).clone()
    }

    /// Certificates kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }

    fn slot(&self, host: &str) -> Arc<Slot> {
        // The read guard is gone by the end of this statement: `entry`
        // below locks the same shard for writing.
        let cached = self
            .cache
            .get(host)
            .map(|slot| slot.clone())
            .filter(|slot| slot.fresh());
        if let Some(slot) = cached {
            return slot;
        }
        let slot = match self.cache.entry(host.into()) {
            Entry::Occupied(mut occupied) => {
                if !occupied.get().fresh() {
                    occupied.insert(Slot::new());
                }
                occupied.get().clone()
            }
            Entry::Vacant(vacant) => vacant.insert(Slot::new()).clone(),
        };
        self.trim(host);
        slot
    }

    /// Evicts other hosts until the cache is within its bound. Which host
    /// goes does not matter much: the hosts a forward proxy intercepts are
    /// the few its routes claim.
    fn trim(&self, keep: &str) {
        while self.cache.len() > self.capacity {
            let victim = self
                .cache
                .iter()
                .find(|entry| &**entry.key() != keep)
                .map(|entry| entry.key().clone());
            match victim {
                Some(victim) => {
                    self.cache.remove(&victim);
                }
                None => break,
            }
        }
        self.metrics
            .certificates_cached
            .set(i64::try_from(self.cache.len()).unwrap_or(i64::MAX));
    }

    fn mint(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, String> {
        let certified = self.authority.mint(host)?;
        self.metrics.certificates_minted.inc();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority() -> Arc<Authority> {
        let dir = std::env::temp_dir().join(format!("scrim-leaves-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cert = crate::ca::init(&dir).unwrap();
        let authority =
            Authority::load(&cert, &dir.join(crate::ca::KEY_FILE), &mut Vec::new()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        Arc::new(authority)
    }

    #[test]
    fn one_minting_per_host_however_many_ask_at_once() {
        let metrics = crate::metrics::Metrics::new().forward_proxy.clone();
        let leaves = Arc::new(Leaves::new(authority(), 100, metrics.clone()));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let leaves = leaves.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|_| leaves.server_config("graph.facebook.com").unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let configs: Vec<_> = threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect();
        assert!(configs.iter().all(|c| Arc::ptr_eq(c, &configs[0])));
        assert_eq!(metrics.certificates_minted.get(), 1);
        leaves.server_config("analytics.google.com").unwrap();
        assert_eq!(metrics.certificates_minted.get(), 2);
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let metrics = crate::metrics::Metrics::new().forward_proxy.clone();
        let leaves = Leaves::new(authority(), 64, metrics.clone());
        for i in 0..10_000 {
            leaves.server_config(&format!("host-{i}.example")).unwrap();
            assert!(leaves.len() <= 64, "{} after {i}", leaves.len());
        }
        assert_eq!(metrics.certificates_minted.get(), 10_000);
        assert_eq!(metrics.certificates_cached.get(), 64);
        // The host asked last is kept.
        leaves.server_config("host-9999.example").unwrap();
        assert_eq!(metrics.certificates_minted.get(), 10_000);
    }
}

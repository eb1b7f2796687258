//! Loading the configuration again (SIGHUP, `POST /reload`): the new policy
//! replaces the old one atomically, or, if the file is invalid, the old one
//! stays and the errors are reported.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::ConfigErrors;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::proxy::Proxy;
use crate::vault::Vault;

/// Reloads the configuration into every proxy (one per worker thread).
pub struct Reloader {
    path: PathBuf,
    proxies: Vec<Arc<Proxy>>,
    /// The process's metrics, where reloads are counted.
    metrics: Arc<Metrics>,
    /// The vault opened at start, which takes each new policy's rules.
    vault: Option<Arc<Vault>>,
}

impl Reloader {
    pub fn new(path: PathBuf, proxies: Vec<Arc<Proxy>>, metrics: Arc<Metrics>) -> Reloader {
        Reloader {
            path,
            proxies,
            metrics,
            vault: None,
        }
    }

    /// Tells `vault` each new policy's `tokenize` rules and `encrypt` keys.
    pub fn with_vault(mut self, vault: Option<Arc<Vault>>) -> Reloader {
        self.vault = vault;
        self
    }

    /// The policy in force (every worker's is the same).
    pub fn policy(&self) -> Option<Arc<Policy>> {
        self.proxies.first().map(|proxy| proxy.policy())
    }

    /// Reloads; requests in flight finish on the policy they started with.
    /// Listener settings (addresses, limits) need a restart to change.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let loaded = Policy::load(&self.path).and_then(|policy| {
            // The vault is opened once, at start.
            match (&self.vault, self.policy()) {
                (_, Some(previous)) if !policy.same_vault(&previous) => {
                    Err(ConfigErrors::single(crate::config::ConfigError::new(
                        &self.path.display().to_string(),
                        0,
                        0,
                        "`vault:` or `keys.vault` changed: the vault is opened at start, so this takes a restart",
                    )))
                }
                (_, Some(previous)) if !policy.same_forward_proxy_start(&previous) => {
                    Err(ConfigErrors::single(crate::config::ConfigError::new(
                        &self.path.display().to_string(),
                        0,
                        0,
                        "`forward_proxy:` `listen`, `ca` or `certificate_cache` changed: they are read at start, so this takes a restart",
                    )))
                }
                _ => Ok(policy),
            }
        });
        match loaded {
            Ok(policy) => {
                for warning in &policy.warnings {
                    tracing::warn!(%warning, "configuration");
                }
                if let Some(previous) = self.policy() {
                    policy.adopt_rotating_keys(&previous);
                }
                let policy = Arc::new(policy);
                if let Some(vault) = &self.vault {
                    vault.use_policy(&policy);
                }
                for proxy in &self.proxies {
                    proxy.swap_policy(policy.clone());
                }
                self.count(true);
                tracing::info!(config = %self.path.display(), "configuration reloaded");
                Ok(())
            }
            Err(errors) => {
                self.count(false);
                for error in errors.iter() {
                    tracing::error!(%error, "configuration refused; the previous one stays");
                }
                Err(errors)
            }
        }
    }

    fn count(&self, ok: bool) {
        self.metrics.reload(ok);
    }
}

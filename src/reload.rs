//! Loading the configuration again (SIGHUP, `POST /reload`): the new policy
//! replaces the old one atomically, or, if the file is invalid, the old one
//! stays and the errors are reported.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::ConfigErrors;
use crate::policy::Policy;
use crate::proxy::Proxy;

pub struct Reloader {
    path: PathBuf,
    proxy: Arc<Proxy>,
}

impl Reloader {
    pub fn new(path: PathBuf, proxy: Arc<Proxy>) -> Reloader {
        Reloader { path, proxy }
    }

    /// Reloads; requests in flight finish on the policy they started with.
    /// Listener settings (addresses, limits) need a restart to change.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        match Policy::load(&self.path) {
            Ok(policy) => {
                self.proxy.swap_policy(Arc::new(policy));
                self.proxy.metrics().reload(true);
                tracing::info!(config = %self.path.display(), "configuration reloaded");
                Ok(())
            }
            Err(errors) => {
                self.proxy.metrics().reload(false);
                for error in errors.iter() {
                    tracing::error!(%error, "configuration refused; the previous one stays");
                }
                Err(errors)
            }
        }
    }
}

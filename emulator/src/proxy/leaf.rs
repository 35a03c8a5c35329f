//! TLS leaf certificates for tunnelled hosts: issued by the emulator's CA on the first
//! `CONNECT` to a host (SAN = that host name) and reused for every later tunnel to it, so a
//! client sees one stable certificate per host. The cache is bounded because ACS resource
//! hosts are open-ended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::pki::{Pki, PkiError};

/// Most leaves kept; beyond it the cache starts over (only churn of ACS hosts gets there).
pub const MAX_CACHED_LEAVES: usize = 1024;

#[derive(Debug, Default)]
pub struct LeafCache {
    leaves: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
}

impl LeafCache {
    /// The server configuration presenting `host`'s leaf (issued now if not cached). The lock
    /// is held while issuing, so concurrent first tunnels to a host share one leaf.
    pub fn server_config(
        &self,
        pki: &Pki,
        host: &str,
    ) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let mut leaves = self.leaves.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cfg) = leaves.get(host) {
            return Ok(cfg.clone());
        }
        let cfg = pki.issue_tls_server_config(&[host.to_string()])?;
        if leaves.len() >= MAX_CACHED_LEAVES {
            leaves.clear();
        }
        leaves.insert(host.to_string(), cfg.clone());
        Ok(cfg)
    }

    pub fn len(&self) -> usize {
        self.leaves.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::KeySource;

    #[test]
    fn one_leaf_per_host_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path(), KeySource::default()).expect("pki");
        let cache = LeafCache::default();
        let a = cache
            .server_config(&pki, "login.microsoftonline.com")
            .expect("leaf");
        let again = cache
            .server_config(&pki, "login.microsoftonline.com")
            .expect("leaf");
        assert!(Arc::ptr_eq(&a, &again));
        let other = cache
            .server_config(&pki, "manage.office.com")
            .expect("leaf");
        assert!(!Arc::ptr_eq(&a, &other));
        assert_eq!(cache.len(), 2);
    }
}

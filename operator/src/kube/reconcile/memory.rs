//! What a controller keeps between reconciles of its objects (clusters or tenant pools), by
//! `namespace/name`: consecutive failures, for the backoff, and the generation whose leftover
//! proxy Deployment was scaled down.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::backoff;
use crate::kube::common::lock;

#[derive(Debug, Default)]
pub struct Memory {
    failures: Mutex<HashMap<String, u32>>,
    proxies_off: Mutex<HashMap<String, Option<i64>>>,
}

impl Memory {
    /// Counts one more failure of `key`: how many in a row, and the delay before the retry.
    pub fn failed(&self, key: &str) -> (u32, Duration) {
        let mut map = lock(&self.failures);
        let n = map.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        (*n, backoff(*n))
    }

    pub fn succeeded(&self, key: &str) {
        lock(&self.failures).remove(key);
    }

    /// Whether `key`, which runs no proxies, has not been checked for a leftover proxy
    /// Deployment at `generation` yet.
    pub fn proxies_off_pending(&self, key: &str, generation: Option<i64>) -> bool {
        lock(&self.proxies_off).get(key) != Some(&generation)
    }

    pub fn proxies_off_done(&self, key: &str, generation: Option<i64>) {
        lock(&self.proxies_off).insert(key.to_string(), generation);
    }

    /// Forgets the proxy check of `key`, which is being deleted.
    pub fn forget_proxies_off(&self, key: &str) {
        lock(&self.proxies_off).remove(key);
    }
}

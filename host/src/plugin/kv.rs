//! The `cache` import: a small key-value store with expiry, one per loaded
//! plugin (a site's section), shared by all its instances. Instances are
//! short-lived (an auth plugin gets a fresh one per login), so this is where a
//! plugin keeps what later calls need, such as `auth-http`'s cached answers.
//! Bounded in entries and sizes; lost when the plugin is reloaded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::bindings::auth::wasmftpd::plugin::cache;
use super::instance::HostState;

/// Most entries one plugin may keep.
pub(super) const MAX_ENTRIES: usize = 10_000;
/// Longest key and value accepted (larger ones are not stored).
const MAX_KEY: usize = 1024;
const MAX_VALUE: usize = 64 * 1024;
/// Longest time-to-live a plugin may ask for.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Default)]
pub(super) struct SharedCache {
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    value: Vec<u8>,
    expires: Instant,
}

impl SharedCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves a consistent map behind.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut entries = self.entries();
        match entries.get(key) {
            Some(entry) if entry.expires > Instant::now() => Some(entry.value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn set(&self, key: String, value: Vec<u8>, ttl: Duration) {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE || ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let expires = now + ttl.min(MAX_TTL);
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= MAX_ENTRIES {
                let soonest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone());
                if let Some(soonest) = soonest {
                    entries.remove(&soonest);
                }
            }
        }
        entries.insert(key, Entry { value, expires });
    }

    pub fn delete(&self, key: &str) {
        self.entries().remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

impl cache::Host for HostState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.cache.get(&key)
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u32) {
        self.cache
            .set(key, value, Duration::from_millis(u64::from(ttl_ms)));
    }

    fn delete(&mut self, key: String) {
        self.cache.delete(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_sizes_are_bounded() {
        let cache = SharedCache::default();
        cache.set("a".into(), b"1".to_vec(), Duration::from_secs(60));
        assert_eq!(cache.get("a"), Some(b"1".to_vec()));
        cache.set("b".into(), b"2".to_vec(), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(cache.get("b"), None, "expired");
        cache.set(
            "big".into(),
            vec![0; MAX_VALUE + 1],
            Duration::from_secs(60),
        );
        assert_eq!(cache.get("big"), None, "too large to keep");
        cache.delete("a");
        assert_eq!(cache.get("a"), None);
    }

    #[test]
    fn a_full_cache_drops_the_entry_closest_to_expiry() {
        let cache = SharedCache::default();
        for i in 0..MAX_ENTRIES {
            let ttl = Duration::from_secs(1000 + i as u64);
            cache.set(format!("k{i}"), vec![1], ttl);
        }
        cache.set("new".into(), vec![2], Duration::from_secs(5000));
        assert_eq!(cache.len(), MAX_ENTRIES);
        assert_eq!(cache.get("k0"), None, "the soonest to expire went");
        assert_eq!(cache.get("new"), Some(vec![2]));
        assert_eq!(cache.get("k1"), Some(vec![1]));
    }
}

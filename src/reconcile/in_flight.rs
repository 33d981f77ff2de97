//! Writes made on a version of an object that the cache has not replaced yet. A reconcile that
//! runs again before the watch shows its own write (at scale, triggers come faster than the watch
//! catches up) would compare against the old version and make the same write again: a second
//! status patch of the same object is as costly for the API server as the first.

use std::collections::HashMap;
use std::sync::Mutex;

pub struct InFlight<T> {
    sent: Mutex<HashMap<String, (Vec<String>, T)>>,
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        Self { sent: Mutex::new(HashMap::new()) }
    }
}

impl<T: PartialEq> InFlight<T> {
    /// Whether `want` was already written while the cache held version `rv` of `key` (or a version
    /// the same reconcile's own earlier write made). What was written on other versions is
    /// forgotten: the cache has moved on, and is compared against as usual.
    pub fn already(&self, key: &str, rv: &str, want: &T) -> bool {
        let Ok(mut sent) = self.sent.lock() else { return false };
        match sent.get(key) {
            Some((stale, wrote)) if !rv.is_empty() && stale.iter().any(|s| s == rv) => wrote == want,
            Some(_) => {
                sent.remove(key);
                false
            }
            None => false,
        }
    }

    /// `want` was written on top of versions `stale` of `key` (all known to predate the write).
    pub fn wrote(&self, key: &str, stale: &[&str], want: T) {
        let stale: Vec<String> = stale.iter().filter(|s| !s.is_empty()).map(|s| (*s).to_owned()).collect();
        let (false, Ok(mut sent)) = (stale.is_empty(), self.sent.lock()) else { return };
        sent.insert(key.to_owned(), (stale, want));
    }

    /// The object is gone.
    pub fn forget(&self, key: &str) {
        if let Ok(mut sent) = self.sent.lock() {
            sent.remove(key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.sent.lock().map(|s| s.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_not_repeated_until_the_cache_shows_a_newer_version() {
        let f = InFlight::default();
        assert!(!f.already("ns", "1", &"a"));
        // Written on version 1, after this reconcile's own metadata write made version 2.
        f.wrote("ns", &["1", "2"], "a");
        // Reconciled again on either stale version: already written.
        assert!(f.already("ns", "1", &"a"));
        assert!(f.already("ns", "2", &"a"));
        // Something else wanted now: written.
        assert!(!f.already("ns", "2", &"b"));
        // The cache moved on: compared as usual, and the record is dropped.
        assert!(!f.already("ns", "3", &"a"));
        assert_eq!(f.len(), 0);
        // No version, no record.
        f.wrote("ns", &[""], "a");
        assert!(!f.already("ns", "", &"a"));
        f.wrote("other", &["7"], "x");
        f.forget("other");
        assert_eq!(f.len(), 0);
    }
}

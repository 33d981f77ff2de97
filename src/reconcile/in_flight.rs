//! Writes made on a version of an object that the cache has not replaced yet. A reconcile that
//! runs again before the watch shows its own write (at scale, triggers come faster than the watch
//! catches up) would compare against the old version and make the same write again: a second
//! status patch of the same object is as costly for the API server as the first.

use std::collections::HashMap;
use std::sync::Mutex;

pub struct InFlight<T> {
    sent: Mutex<HashMap<String, (String, T)>>,
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        Self { sent: Mutex::new(HashMap::new()) }
    }
}

impl<T: PartialEq> InFlight<T> {
    /// Whether `want` was already written on top of version `rv` of `key`. What was written on
    /// another version is forgotten: the cache has moved on, and is compared against as usual.
    pub fn already(&self, key: &str, rv: Option<&str>, want: &T) -> bool {
        let Ok(mut sent) = self.sent.lock() else { return false };
        match sent.get(key) {
            Some((seen, wrote)) if Some(seen.as_str()) == rv => wrote == want,
            Some(_) => {
                sent.remove(key);
                false
            }
            None => false,
        }
    }

    /// `want` was written on top of version `rv` of `key`.
    pub fn wrote(&self, key: &str, rv: Option<&str>, want: T) {
        let (Some(rv), Ok(mut sent)) = (rv, self.sent.lock()) else { return };
        sent.insert(key.to_owned(), (rv.to_owned(), want));
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
        assert!(!f.already("ns", Some("1"), &"a"));
        f.wrote("ns", Some("1"), "a");
        // Reconciled again on the same (stale) version: already written.
        assert!(f.already("ns", Some("1"), &"a"));
        // Something else wanted now: written.
        assert!(!f.already("ns", Some("1"), &"b"));
        // The cache moved on: compared as usual, and the record is dropped.
        assert!(!f.already("ns", Some("2"), &"a"));
        assert_eq!(f.len(), 0);
        // No version, no record.
        f.wrote("ns", None, "a");
        assert!(!f.already("ns", None, &"a"));
        f.wrote("other", Some("7"), "x");
        f.forget("other");
        assert_eq!(f.len(), 0);
    }
}

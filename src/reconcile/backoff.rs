//! Per-object exponential backoff with jitter for the reconcile loops, as controller-runtime's item
//! exponential failure rate limiter: an object whose reconcile keeps failing is retried after
//! [`BASE`], then twice that, and so on up to [`CAP`]; each object on its own, forgotten on its
//! first success. The jitter (each wait drawn between half and all of it) keeps thousands of objects
//! that failed together (an API server restart, RBAC taken away) from retrying together.
//!
//! And the one place where a reconcile error that only a fix of the setup ends (401, 403) becomes a
//! fault the operator sees (log line once, `offloading_webhook_problem{part}`).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::{info, warn};

use super::Error;
use crate::health::{CLUSTER_ROLE, Faults};

/// The first wait after a failure.
pub const BASE: Duration = Duration::from_millis(100);
/// The longest wait: 5 000 objects failing for good cost the API server about 40 requests a second.
pub const CAP: Duration = Duration::from_secs(120);

/// Consecutive failures per object, and the wait they earn.
pub struct Backoff<K> {
    base: Duration,
    cap: Duration,
    failures: Mutex<HashMap<K, u32>>,
}

impl<K: Hash + Eq + Clone> Default for Backoff<K> {
    fn default() -> Self {
        Self::new(BASE, CAP)
    }
}

impl<K: Hash + Eq + Clone> Backoff<K> {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap: cap.max(base), failures: Mutex::default() }
    }

    /// `key` failed once more: how long to wait before its next try (jittered).
    pub fn failed(&self, key: &K) -> Duration {
        let n = self
            .failures
            .lock()
            .map(|mut f| {
                let c = f.entry(key.clone()).or_insert(0);
                *c = c.saturating_add(1);
                *c
            })
            .unwrap_or(1);
        jitter(self.ceiling(n))
    }

    /// `key` succeeded: its next failure starts from [`BASE`] again.
    pub fn succeeded(&self, key: &K) {
        // Nearly always empty: no hashing on the hot path.
        if let Ok(mut f) = self.failures.lock()
            && !f.is_empty()
        {
            f.remove(key);
        }
    }

    /// Consecutive failures of `key` so far.
    pub fn failures(&self, key: &K) -> u32 {
        self.failures.lock().ok().and_then(|f| f.get(key).copied()).unwrap_or(0)
    }

    /// The wait after the `n`th consecutive failure, before jitter: base × 2^(n-1), at most the cap.
    pub fn ceiling(&self, n: u32) -> Duration {
        let doublings = n.saturating_sub(1).min(31);
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }
}

/// `d` jittered: uniformly between half of it and all of it.
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + 0.5 * unit_random())
}

/// A number in [0, 1), from the standard library's randomly keyed hasher (no RNG dependency for a
/// jitter that needs no quality beyond "not the same for everyone").
fn unit_random() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The API's answer when it is one no retry changes until someone fixes the setup: refused
/// credentials (401) or rights (403).
fn refused(err: &Error) -> Option<&kube::core::Status> {
    let kube_err = match err {
        Error::Kube(e) => e,
        Error::Finalizer(f) => match f.as_ref() {
            kube::runtime::finalizer::Error::AddFinalizer(e)
            | kube::runtime::finalizer::Error::RemoveFinalizer(e) => e,
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => return refused(e),
            _ => return None,
        },
        _ => return None,
    };
    match kube_err {
        kube::Error::Api(s) if matches!(s.code, 401 | 403) => Some(s),
        _ => None,
    }
}

/// The sentence said for a refused reconcile of `loop_name`.
fn refusal_problem(loop_name: &str, status: &kube::core::Status) -> String {
    format!(
        "the {loop_name} loop is refused by the API server ({}): grant what it names in {CLUSTER_ROLE}, \
         bound to this service account (manifests/deploy.yaml, or the Helm chart's RBAC); each object is \
         retried by itself, with backoff, once granted",
        status.message
    )
}

/// A failed reconcile of the loop reported under `part`: a refusal becomes a fault, said once.
/// Returns whether it was one (so the caller logs the object at debug rather than warn).
pub fn report_failure(faults: &Faults, part: &'static str, loop_name: &str, err: &Error) -> bool {
    let Some(status) = refused(err) else { return false };
    let problem = refusal_problem(loop_name, status);
    if faults.set(part, problem.clone()) {
        warn!(part, %problem, "reconcile refused; retrying with backoff");
    }
    true
}

/// A reconcile of the loop reported under `part` succeeded: its fault, if any, is over.
pub fn report_success(faults: &Faults, part: &'static str, loop_name: &str) {
    if faults.clear(part) {
        info!(part, "the {loop_name} loop's requests are accepted again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[test]
    fn the_wait_doubles_from_the_base_to_the_cap() {
        let b: Backoff<&str> = Backoff::new(Duration::from_millis(100), Duration::from_secs(120));
        let ceilings: Vec<u128> = (1..=13).map(|n| ms(b.ceiling(n))).collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 102400, 120000, 120000]
        );
        // No overflow however long it fails.
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(120));
    }

    #[test]
    fn each_wait_is_jittered_between_half_and_all_of_its_ceiling() {
        let b: Backoff<&str> = Backoff::default();
        let mut seen = std::collections::BTreeSet::new();
        for n in 1..=20 {
            let wait = b.failed(&"x");
            let ceiling = b.ceiling(n);
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "failure {n}: {wait:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            seen.insert(wait);
        }
        assert_eq!(b.failures(&"x"), 20);
        // At the cap, the same ceiling: still spread.
        let at_cap: std::collections::BTreeSet<Duration> = (0..50).map(|_| b.failed(&"x")).collect();
        assert!(at_cap.len() > 40, "{at_cap:?}");
        assert!(at_cap.iter().all(|w| *w >= CAP / 2 && *w <= CAP));
    }

    #[test]
    fn a_success_resets_only_its_own_object() {
        let b: Backoff<String> = Backoff::default();
        for _ in 0..5 {
            b.failed(&"a".to_owned());
        }
        b.failed(&"b".to_owned());
        assert_eq!((b.failures(&"a".into()), b.failures(&"b".into())), (5, 1));
        b.succeeded(&"a".to_owned());
        assert_eq!((b.failures(&"a".into()), b.failures(&"b".into())), (0, 1));
        // a starts again from the base; b goes on from where it was.
        assert!(b.failed(&"a".to_owned()) <= BASE);
        let wait_b = b.failed(&"b".to_owned());
        assert!(wait_b >= BASE && wait_b <= 2 * BASE, "{wait_b:?}");
    }

    #[test]
    fn jitter_stays_in_its_bounds() {
        let d = Duration::from_secs(10);
        for _ in 0..1000 {
            let j = jitter(d);
            assert!(j >= d / 2 && j <= d, "{j:?}");
        }
        let mean = (0..1000).map(|_| jitter(d).as_secs_f64()).sum::<f64>() / 1000.0;
        assert!((7.0..8.0).contains(&mean), "mean {mean}");
    }

    fn api(code: u16, message: &str) -> Error {
        Error::Kube(kube::Error::Api(
            kube::core::Status::failure(message, "Forbidden").with_code(code).boxed(),
        ))
    }

    #[test]
    fn a_refusal_is_a_fault_said_once_and_cleared_by_a_success() {
        let faults = Faults::default();
        let e = api(403, r#"User "x" cannot patch resource "namespaceoffloadings/status""#);
        assert!(report_failure(&faults, "offloading-loop", "NamespaceOffloading", &e));
        let said = faults.summary().unwrap_or_default();
        assert!(said.starts_with(r#"the NamespaceOffloading loop is refused by the API server (User "x" cannot patch resource "namespaceoffloadings/status"): grant what it names in the ClusterRole offloading-webhook"#), "{said}");
        // Other failures are not faults.
        assert!(!report_failure(&faults, "tenant-loop", "tenant", &api(500, "etcd timeout")));
        assert!(!report_failure(&faults, "tenant-loop", "tenant", &Error::WaitingForRemote(vec![])));
        report_success(&faults, "offloading-loop", "NamespaceOffloading");
        assert_eq!(faults.summary(), None);
    }
}

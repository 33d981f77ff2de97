//! What keeps `serve` from part of its job, said so that the operator can fix it: API errors turned
//! into the verb, the resource and the fix (RBAC, CRDs, a missing namespace), and the faults the
//! process reports — each said once in the log (and once when it clears: when is
//! [`crate::failure_policy`]'s call), and exported as `offloading_webhook_problem{part}` and
//! `offloading_webhook_reconcile_up`. A fault never fails
//! `/readyz`: a replica is ready as soon as it can answer reviews correctly (see
//! [`crate::cluster::ClusterView::synced`]), whatever the reconcile loop, the Lease or a remote
//! cluster is going through.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kube::runtime::watcher;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{Metrics, ProblemLabels};

/// The roles that manifests/deploy.yaml and the Helm chart give the webhook, for the fix to name.
pub const CLUSTER_ROLE: &str = "the ClusterRole offloading-webhook";
pub const LEASE_ROLE: &str = "the Role offloading-webhook-leader-election (in the Lease's namespace)";
pub const CLUSTER_ID_ROLE: &str = "the Role offloading-webhook-cluster-id (in the Liqo namespace)";

/// The parts of the reconcile loop that report faults (besides `lease`, which the leadership
/// reports): cleared when the loop stops, since no one is left to clear them.
pub const LOOP_PARTS: [&str; 7] = [
    "offloading-loop",
    "tenant-loop",
    "remote-loop",
    "namespacemaps",
    "namespaces",
    "secrets",
    "namespaceoffloadings",
];

/// Faults by the part they concern (`lease`, `nodes`, `namespacemaps`, ...): what keeps the
/// process from some of its job until someone fixes the setup. Reported, never a reason for
/// `/readyz` to fail.
#[derive(Clone, Default)]
pub struct Faults(Arc<FaultState>);

#[derive(Default)]
struct FaultState {
    by_part: Mutex<BTreeMap<&'static str, String>>,
    /// Whether `by_part` holds anything: most events of a healthy process clear nothing, and
    /// need not take the lock to find out.
    any: AtomicBool,
    gauges: Mutex<Option<Gauges>>,
}

/// The metrics a [`Faults`] keeps up to date once exported.
#[derive(Clone)]
struct Gauges {
    up: Gauge,
    problems: Family<ProblemLabels, Gauge>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Faults").field(&self.summary()).finish()
    }
}

impl Faults {
    /// Records a fault; returns whether it is new or changed (so that it is logged once).
    pub fn set(&self, part: &'static str, message: String) -> bool {
        let Ok(mut m) = self.0.by_part.lock() else { return false };
        let changed = m.insert(part, message.clone()).as_ref() != Some(&message);
        self.0.any.store(true, Ordering::Release);
        self.publish(&m, Some(part));
        changed
    }

    /// Clears a fault; returns whether there was one.
    pub fn clear(&self, part: &'static str) -> bool {
        if !self.0.any.load(Ordering::Acquire) {
            return false;
        }
        let Ok(mut m) = self.0.by_part.lock() else { return false };
        let was = m.remove(part).is_some();
        self.0.any.store(!m.is_empty(), Ordering::Release);
        if was {
            self.publish(&m, Some(part));
        }
        was
    }

    /// The fault of one part, if any.
    pub fn get(&self, part: &str) -> Option<String> {
        if !self.0.any.load(Ordering::Acquire) {
            return None;
        }
        self.0.by_part.lock().ok()?.get(part).cloned()
    }

    /// Every fault, one sentence each, or `None` when there is none.
    pub fn summary(&self) -> Option<String> {
        let m = self.0.by_part.lock().ok()?;
        (!m.is_empty()).then(|| m.values().cloned().collect::<Vec<_>>().join("; "))
    }

    /// Every fault, by part.
    pub fn all(&self) -> Vec<(&'static str, String)> {
        self.0.by_part.lock().map(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect()).unwrap_or_default()
    }

    /// From now on, `offloading_webhook_reconcile_up` (1 while no part is at fault) and
    /// `offloading_webhook_problem{part}` (1 while that part is) follow these faults.
    pub fn export(&self, metrics: &Metrics) {
        let gauges = Gauges { up: metrics.reconcile_up.clone(), problems: metrics.problems.clone() };
        if let Ok(mut g) = self.0.gauges.lock() {
            *g = Some(gauges);
        }
        if let Ok(m) = self.0.by_part.lock() {
            self.publish(&m, None);
            for part in m.keys() {
                self.publish(&m, Some(part));
            }
        }
    }

    /// Sets the gauges from `m` (called with the faults locked, so updates do not cross).
    fn publish(&self, m: &BTreeMap<&'static str, String>, part: Option<&'static str>) {
        let Ok(g) = self.0.gauges.lock() else { return };
        let Some(g) = g.as_ref() else { return };
        g.up.set(i64::from(m.is_empty()));
        if let Some(part) = part {
            g.problems.get_or_create(&ProblemLabels { part }).set(i64::from(m.contains_key(part)));
        }
    }

    /// Clears the reconcile loop's own parts ([`LOOP_PARTS`]): it has stopped.
    pub fn clear_loop(&self) {
        for part in LOOP_PARTS {
            self.clear(part);
        }
    }
}

/// What was being done when the API answered with an error.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// e.g. `list`, `watch`, `create`, `update`.
    pub verb: &'a str,
    /// e.g. `leases.coordination.k8s.io`, `nodes`.
    pub resource: &'a str,
    /// The namespace, for a namespaced request.
    pub namespace: Option<&'a str>,
    /// Where the right is granted: one of [`CLUSTER_ROLE`], [`LEASE_ROLE`], [`CLUSTER_ID_ROLE`].
    pub role: &'a str,
}

impl Access<'_> {
    fn place(&self) -> String {
        match self.namespace {
            Some(ns) => format!("in namespace {ns:?}"),
            None => "cluster-wide".to_owned(),
        }
    }
}

/// The sentence for an API error: what failed and what to do about it.
pub fn explain(err: &kube::Error, access: Access<'_>) -> String {
    match err {
        kube::Error::Api(status) => explain_status(status.code, &status.reason, &status.message, access),
        other => format!("could not {} {} {}: {other}", access.verb, access.resource, access.place()),
    }
}

/// The same for a watch's error.
pub fn explain_watch(err: &watcher::Error, access: Access<'_>) -> String {
    match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => explain(e, access),
        watcher::Error::WatchError(status) => {
            explain_status(status.code, &status.reason, &status.message, access)
        }
        other => format!("could not {} {} {}: {other}", access.verb, access.resource, access.place()),
    }
}

fn explain_status(code: u16, reason: &str, message: &str, access: Access<'_>) -> String {
    let Access { verb, resource, role, .. } = access;
    let place = access.place();
    match code {
        403 => format!(
            "forbidden to {verb} {resource} {place} ({message}): grant the verb {verb:?} on {resource:?} in \
             {role}, bound to this service account (manifests/deploy.yaml, or the Helm chart's RBAC); \
             it is retried by itself once granted"
        ),
        404 if message.contains("namespaces") && access.namespace.is_some() => format!(
            "could not {verb} {resource}: the namespace {:?} does not exist ({message}): create it, or \
             point the flag that names it elsewhere",
            access.namespace.unwrap_or_default()
        ),
        404 => format!(
            "the API server does not serve {resource} ({message}): are its CRDs installed? \
             `kubectl apply -f manifests/crds.yaml` (Liqo v0.3 API), or install Liqo, whose CRDs \
             bring it"
        ),
        401 => format!(
            "the API server does not accept these credentials ({message}): check --kubeconfig or the \
             service account token"
        ),
        _ => format!("could not {verb} {resource} {place}: {reason} ({code}): {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Status::failure(message, reason).with_code(code).boxed())
    }

    #[test]
    fn forbidden_names_the_verb_the_resource_and_the_cluster_role() {
        let e = api(403, "Forbidden", r#"nodes is forbidden: User "x" cannot list resource "nodes""#);
        let s = explain(&e, Access { verb: "list", resource: "nodes", namespace: None, role: CLUSTER_ROLE });
        assert!(s.starts_with(r#"forbidden to list nodes cluster-wide (nodes is forbidden: User "x" cannot list resource "nodes"): grant the verb "list" on "nodes" in the ClusterRole offloading-webhook"#), "{s}");
    }

    #[test]
    fn a_missing_namespace_and_missing_crds_say_what_to_do() {
        let e = api(404, "NotFound", r#"namespaces "offloading-webhook" not found"#);
        let s = explain(
            &e,
            Access {
                verb: "create",
                resource: "leases",
                namespace: Some("offloading-webhook"),
                role: LEASE_ROLE,
            },
        );
        assert!(
            s.starts_with(r#"could not create leases: the namespace "offloading-webhook" does not exist"#),
            "{s}"
        );
        let e = api(404, "NotFound", "the server could not find the requested resource");
        let s = explain(
            &e,
            Access {
                verb: "list",
                resource: "namespaceoffloadings.offloading.liqo.io",
                namespace: None,
                role: CLUSTER_ROLE,
            },
        );
        assert!(s.contains("kubectl apply -f manifests/crds.yaml"), "{s}");
    }

    #[test]
    fn faults_are_reported_once_and_cleared() {
        let f = Faults::default();
        assert!(f.set("lease", "a".into()));
        assert!(!f.set("lease", "a".into()));
        assert!(f.set("nodes", "b".into()));
        assert_eq!(f.summary().as_deref(), Some("a; b"));
        assert!(f.clear("lease"));
        assert!(!f.clear("lease"));
        assert_eq!(f.summary().as_deref(), Some("b"));
        assert_eq!(f.get("nodes").as_deref(), Some("b"));
    }

    fn gauges(m: &Metrics) -> Vec<String> {
        m.encode()
            .lines()
            .filter(|l| {
                l.starts_with("offloading_webhook_reconcile_up")
                    || l.starts_with("offloading_webhook_problem")
            })
            .map(str::to_owned)
            // The registry keeps label sets in a hash map: compare them in one order, `up` first.
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .rev()
            .collect()
    }

    #[test]
    fn faults_are_exported_as_reconcile_up_and_one_gauge_per_part() {
        let (f, m) = (Faults::default(), Metrics::new());
        // A fault from before the export is published by it.
        f.set("lease", "the Lease's namespace does not exist".into());
        f.export(&m);
        assert_eq!(
            gauges(&m),
            ["offloading_webhook_reconcile_up 0", r#"offloading_webhook_problem{part="lease"} 1"#]
        );
        f.set("namespacemaps", "forbidden".into());
        f.clear("lease");
        assert_eq!(
            gauges(&m),
            [
                "offloading_webhook_reconcile_up 0",
                r#"offloading_webhook_problem{part="namespacemaps"} 1"#,
                r#"offloading_webhook_problem{part="lease"} 0"#
            ]
        );
        f.clear_loop();
        assert_eq!(gauges(&m)[0], "offloading_webhook_reconcile_up 1");
        assert_eq!(f.summary(), None);
    }
}

//! What keeps `serve` from doing its job, said so that the operator can fix it: API errors turned
//! into the verb, the resource and the fix (RBAC, CRDs, a missing namespace), and the faults that
//! `/readyz` reports as its reason.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::runtime::watcher;

/// The roles that manifests/deploy.yaml and the Helm chart give the webhook, for the fix to name.
pub const CLUSTER_ROLE: &str = "the ClusterRole offloading-webhook";
pub const LEASE_ROLE: &str = "the Role offloading-webhook-leader-election (in the Lease's namespace)";
pub const CLUSTER_ID_ROLE: &str = "the Role offloading-webhook-cluster-id (in the Liqo namespace)";

/// Faults by the part they concern (`lease`, `nodes`, ...); `/readyz` fails while any is set.
#[derive(Clone, Default, Debug)]
pub struct Faults(Arc<Mutex<BTreeMap<&'static str, String>>>);

impl Faults {
    /// Records a fault; returns whether it is new or changed (so that it is logged once).
    pub fn set(&self, part: &'static str, message: String) -> bool {
        let Ok(mut m) = self.0.lock() else { return false };
        m.insert(part, message.clone()).as_ref() != Some(&message)
    }

    /// Clears a fault; returns whether there was one.
    pub fn clear(&self, part: &'static str) -> bool {
        self.0.lock().is_ok_and(|mut m| m.remove(part).is_some())
    }

    /// Every fault, one sentence each, or `None` when there is none.
    pub fn summary(&self) -> Option<String> {
        let m = self.0.lock().ok()?;
        (!m.is_empty()).then(|| m.values().cloned().collect::<Vec<_>>().join("; "))
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

/// An answer that no retry will change until someone fixes the setup (RBAC, a missing namespace or
/// CRD, credentials): such a watch or request failure is a fault `/readyz` reports; any other (an
/// API server restarting) is only logged, so readiness does not flap with the API server.
pub fn is_misconfiguration(err: &watcher::Error) -> bool {
    let code = match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => match e {
            kube::Error::Api(s) => s.code,
            _ => return false,
        },
        watcher::Error::WatchError(s) => s.code,
        _ => return false,
    };
    matches!(code, 401 | 403 | 404)
}

/// Logs a failed watch of the reconcile loop with what to do about it.
pub fn warn_watch(err: &watcher::Error, resource: &str) {
    let access = Access { verb: "list and watch", resource, namespace: None, role: CLUSTER_ROLE };
    tracing::warn!(problem = %explain_watch(err, access), "{resource} watch failed; retrying");
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
        assert_eq!(f.summary().as_deref(), Some("b"));
    }
}

//! The reconcile loop's installs: only one may write.

use super::Finding;
use crate::diagnose::facts::{ClusterFacts, NamespaceFacts};
use crate::diagnose::report::{Problem, lease_reports};

/// Several installs live at once: only the oldest reconciles, the others stand by.
pub fn one_install_reconciles(c: &ClusterFacts, _: &NamespaceFacts, _: &[Problem]) -> Vec<Finding> {
    let leases = lease_reports(&c.leases, c.looked_at);
    let live: Vec<&str> = leases.iter().filter(|l| l.live).map(|l| l.lease.as_str()).collect();
    if live.len() < 2 {
        return Vec::new();
    }
    vec![Finding::Note(format!(
        "{} installs of offloading-webhook run a reconcile loop on this cluster (Leases {}): only the oldest, {}, reconciles, the others stand by; uninstall all but one",
        live.len(),
        live.join(", "),
        live[0]
    ))]
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::diagnose::facts::LeaseFact;
    use crate::reconcile::installs::Seniority;

    fn lease(ns: &str, created: i64, renewed_ago: i64) -> LeaseFact {
        LeaseFact {
            seniority: Seniority {
                created: Some(Timestamp::from_second(1_700_000_000 + created).unwrap()),
                namespace: ns.into(),
                name: "offloading-webhook-reconciler".into(),
            },
            holder: Some(format!("{ns}-1")),
            renew_time: Some(Timestamp::from_second(1_700_000_100 - renewed_ago).unwrap()),
            duration_seconds: Some(15),
        }
    }

    #[test]
    fn two_live_installs_are_a_note_one_is_not() {
        let mut f = crate::diagnose::facts::Facts::default();
        f.cluster.looked_at = Some(Timestamp::from_second(1_700_000_100).unwrap());
        f.cluster.leases = vec![lease("a", 1, 2), lease("gone", 2, 60)];
        assert!(one_install_reconciles(&f.cluster, &f.namespace, &[]).is_empty());
        f.cluster.leases.push(lease("b", 3, 1));
        let found = one_install_reconciles(&f.cluster, &f.namespace, &[]);
        assert!(
            matches!(&found[..], [Finding::Note(n)] if n.starts_with("2 installs of offloading-webhook run a reconcile loop on this cluster (Leases a/offloading-webhook-reconciler, b/offloading-webhook-reconciler)")),
            "{found:?}"
        );
    }
}

//! What `diagnose` says differently per Liqo generation, in one table beside the adapter: who keeps
//! the maps and the status, where the CRDs come from, and the sentences whose shape differs. The
//! checks ask the table; none branches on the generation itself.

use crate::liqo::v1::{REMOTE_ID_LABEL, REPLICATION_LABEL, TENANT_NAMESPACE_LABEL, namespace_map_name};
use crate::liqo::{Generation, REMOTE_CLUSTER_ID_LABEL, SCHEDULING_ENABLED};

/// One generation's wording.
pub struct Wording {
    /// Who keeps NamespaceMaps and status, in the words of a fix.
    pub controller: &'static str,
    /// Who leaves an object that does not decode alone until it is fixed.
    pub leaves_undecodable: &'static str,
    /// Where the generation's CRDs come from.
    pub crds: &'static str,
    /// Where the labels of the virtual nodes can be seen.
    pub node_labels: &'static str,
    /// A clusterSelector the webhook would refuse: (cause, fix).
    pub invalid_selector: fn(&InvalidSelector<'_>) -> (String, String),
    /// A virtual node without a NamespaceMap: (cause, fix).
    pub missing_map: fn(&MissingMap<'_>) -> (String, String),
    /// A remote namespace another cluster owns: `value` of the owner annotation `key`, as a phrase
    /// after "the remote namespace ... in cluster ...".
    pub owned_by_other: fn(value: &str, key: &str) -> String,
}

/// What is known of a clusterSelector the webhook would refuse.
pub struct InvalidSelector<'a> {
    pub namespace: &'a str,
    /// The webhook's message.
    pub message: &'a str,
    /// What the object's scheduling annotation says, when it has one.
    pub annotation: Option<&'a str>,
    /// Whether `spec.clusterSelector` is there at all.
    pub present: bool,
}

/// A remote cluster with a virtual node and no NamespaceMap.
pub struct MissingMap<'a> {
    pub id: &'a str,
    /// Its tenant namespace: the one labelled for it, else the conventional name.
    pub tenant: &'a str,
    /// Whether a tenant namespace is labelled for it.
    pub tenant_labelled: bool,
}

impl Wording {
    pub fn of(generation: Generation) -> &'static Self {
        match generation {
            Generation::V0_3 => &V0_3,
            Generation::V1 => &V1,
        }
    }
}

pub const V0_3: Wording = Wording {
    controller: "the reconcile loop (offloading-webhook serve, or Liqo)",
    leaves_undecodable: "the reconcile loop",
    crds: "offloading-webhook crds",
    node_labels: "kubectl get nodes -l liqo.io/type=virtual-node --show-labels",
    invalid_selector: v0_3_invalid_selector,
    missing_map: v0_3_missing_map,
    owned_by_other: |value, key| format!("is owned by cluster id {value} ({key})"),
};

pub const V1: Wording = Wording {
    controller: "Liqo's controller-manager",
    leaves_undecodable: "diagnose",
    crds: "Liqo's chart, liqo-crds",
    node_labels: "kubectl get virtualnodes -A -o yaml, spec.labels, or the labels of their Nodes",
    invalid_selector: v1_invalid_selector,
    missing_map: v1_missing_map,
    owned_by_other: |value, key| format!("is managed by NamespaceMap {value} ({key}), not by this cluster's"),
};

/// v0.3 writes the selector's error into the object's annotation: quoted as it stands.
fn v0_3_invalid_selector(s: &InvalidSelector<'_>) -> (String, String) {
    let shown =
        s.annotation.map_or_else(|| format!("Invalid Cluster Selector : {}", s.message), str::to_owned);
    (
        format!(
            "the clusterSelector is invalid, so no cluster is selected; the annotation {SCHEDULING_ENABLED} says: {shown}"
        ),
        "correct spec.clusterSelector as the message says and apply it again".to_owned(),
    )
}

/// v1.x refuses a missing selector for good, and never looks again at one it refused.
fn v1_invalid_selector(s: &InvalidSelector<'_>) -> (String, String) {
    if !s.present {
        return (
            format!(
                "the clusterSelector has no nodeSelectorTerms, so no cluster is selected, ever: {}",
                s.message
            ),
            format!(
                "kubectl patch nsof offloading -n {} --type merge -p '{{\"spec\":{{\"clusterSelector\":{{\"nodeSelectorTerms\":[]}}}}}}' (every cluster), or give the terms you mean",
                s.namespace
            ),
        );
    }
    (
        format!(
            "the clusterSelector is invalid, so Liqo selects no cluster (Event Invalid, never retried): {}",
            s.message
        ),
        "correct spec.clusterSelector as the message says and apply it again (the change makes Liqo look again)"
            .to_owned(),
    )
}

fn v0_3_missing_map(m: &MissingMap<'_>) -> (String, String) {
    (
        format!("cluster {} has no NamespaceMap in {}", m.id, m.tenant),
        format!("check that {} is running", V0_3.controller),
    )
}

/// v1.x makes a map only for a remote cluster whose tenant namespace it finds by label.
fn v1_missing_map(m: &MissingMap<'_>) -> (String, String) {
    let id = m.id;
    if !m.tenant_labelled {
        return (
            format!(
                "cluster {id} has no tenant namespace (labelled {TENANT_NAMESPACE_LABEL}=true and {REMOTE_CLUSTER_ID_LABEL}={id}), so Liqo makes no NamespaceMap for it"
            ),
            format!(
                "the peering with cluster {id} is incomplete: check it (liqoctl info peer {id}), or label its tenant namespace"
            ),
        );
    }
    (
        format!(
            "cluster {id} has no NamespaceMap that Liqo reads (named {}, labelled {REPLICATION_LABEL}=true and {REMOTE_ID_LABEL}={id}, in {})",
            namespace_map_name(id),
            m.tenant
        ),
        format!(
            "Liqo's VirtualNode controller creates it: check that liqo-controller-manager is running and that the VirtualNode of cluster {id} exists (kubectl get virtualnodes -A)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_generation_says_who_keeps_the_maps() {
        assert_eq!(
            Wording::of(Generation::V0_3).controller,
            "the reconcile loop (offloading-webhook serve, or Liqo)"
        );
        assert_eq!(Wording::of(Generation::V1).controller, "Liqo's controller-manager");
    }

    #[test]
    fn v0_3_quotes_the_annotation_when_there_is_one() {
        let s =
            InvalidSelector { namespace: "web", message: "m", annotation: Some("Invalid: x"), present: true };
        assert!((V0_3.invalid_selector)(&s).0.ends_with("says: Invalid: x"));
        let s = InvalidSelector { annotation: None, ..s };
        assert!((V0_3.invalid_selector)(&s).0.ends_with("says: Invalid Cluster Selector : m"));
    }

    #[test]
    fn v1_tells_a_missing_tenant_from_a_missing_map() {
        let m = MissingMap { id: "calm-sea", tenant: "liqo-tenant-calm-sea", tenant_labelled: false };
        assert!((V1.missing_map)(&m).0.contains("has no tenant namespace"));
        let m = MissingMap { tenant_labelled: true, ..m };
        assert!((V1.missing_map)(&m).0.contains("has no NamespaceMap that Liqo reads (named calm-sea,"));
        assert_eq!(
            (V0_3.missing_map)(&m).1,
            "check that the reconcile loop (offloading-webhook serve, or Liqo) is running"
        );
    }
}

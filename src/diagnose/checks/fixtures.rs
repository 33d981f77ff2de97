//! Facts written by hand, as each generation shows a namespace offloaded to one remote cluster.

use serde_json::json;

use super::{Finding, Subject};
use crate::crd::{NamespaceMap, NamespaceOffloading};
use crate::diagnose::facts::{ClusterFacts, Facts, NamespaceFacts};
use crate::liqo::Generation;
use crate::offloading::VirtualNode;

pub const LOCAL: &str = "frosty-bird";
pub const REMOTE: &str = "calm-sea";

pub fn offloading(spec: serde_json::Value, status: serde_json::Value) -> NamespaceOffloading {
    serde_json::from_value(json!({
        "apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
        "metadata": {"name": "offloading", "namespace": "web", "generation": 1},
        "spec": spec, "status": status
    }))
    .unwrap()
}

pub fn map(desired: Option<&str>, current: Option<(&str, &str)>) -> NamespaceMap {
    let mut m: NamespaceMap = serde_json::from_value(json!({
        "apiVersion": "virtualkubelet.liqo.io/v1alpha1", "kind": "NamespaceMap",
        "metadata": {"name": REMOTE, "namespace": format!("liqo-tenant-{REMOTE}")},
        "spec": {}
    }))
    .unwrap();
    if let Some(d) = desired {
        m.spec.desired_mapping.insert("web".into(), d.into());
    }
    if let Some((name, phase)) = current {
        m.status = Some(
            serde_json::from_value(
                json!({"currentMapping": {"web": {"remoteNamespace": name, "phase": phase}}}),
            )
            .unwrap(),
        );
    }
    m
}

pub fn node() -> VirtualNode {
    VirtualNode {
        name: REMOTE.into(),
        cluster_id: REMOTE.into(),
        labels: [("liqo.io/remote-cluster-id".to_string(), REMOTE.to_string())].into(),
    }
}

/// A namespace offloaded to one remote cluster, as each generation shows it.
pub fn facts(g: Generation, phase: &str, current: &str) -> Facts {
    let remote_name = format!("web-{LOCAL}");
    Facts {
        cluster: ClusterFacts {
            generation: g,
            liqo_namespace: "liqo".into(),
            local_cluster_id: Some(LOCAL.into()),
            tenants: [(REMOTE.to_string(), format!("liqo-tenant-{REMOTE}"))].into(),
            nodes: vec![node()].into(),
            maps: [(REMOTE.to_string(), map(Some(&remote_name), Some((&remote_name, current))))].into(),
            ..Default::default()
        },
        namespace: NamespaceFacts {
            name: "web".into(),
            offloading: Some(offloading(
                json!({"clusterSelector": {"nodeSelectorTerms": []}}),
                json!({"offloadingPhase": phase, "observedGeneration": 1, "remoteNamespaceName": remote_name,
                       "remoteNamespacesConditions": {REMOTE: [{"type": "Ready", "status": "True"}]}}),
            )),
            ..Default::default()
        },
    }
}

pub fn subject(f: &Facts) -> Subject<'_> {
    Subject::new(&f.cluster, &f.namespace).expect("the facts hold a NamespaceOffloading")
}

/// The causes of the problems found, and the notes prefixed with `note: `.
pub fn causes(found: Vec<Finding>) -> Vec<String> {
    found
        .into_iter()
        .map(|f| match f {
            Finding::Problem { cause, .. } => cause,
            Finding::Note(n) => format!("note: {n}"),
        })
        .collect()
}

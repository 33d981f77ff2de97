//! What the reconcile loop wants the world to look like for one NamespaceOffloading (docs/behaviour.md, "The reconcile loop"):
//! which clusters are selected, the desiredMapping entry of each, the per-cluster conditions and
//! the phase. Pure: the loop gathers the inputs from its caches and applies the differences.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::{
    MappingPhase, NamespaceOffloading, NamespaceOffloadingStatus, OffloadingPhase, RemoteNamespaceCondition,
    shared,
};

use super::field::aggregate;
use super::names::RemoteNameError;
use super::rules::{Generation, VirtualNodes, derived_name, scheduling_annotation, selector_errors};

pub const READY: &str = "Ready";
pub const OFFLOADING_REQUIRED: &str = "OffloadingRequired";

/// Why nothing is selected although clusters may exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// The selector is malformed: the annotation's value and the Event's message.
    InvalidSelector(String),
    /// The derived remote name is not a valid namespace name.
    InvalidRemoteName(String),
    /// The local cluster id is not known, so a DefaultName name cannot be derived.
    UnknownClusterId,
}

/// The desired state for one NamespaceOffloading.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The derived remote name, also when it is invalid (status shows it); `None` when unknown.
    pub remote_name: Option<String>,
    /// Remote cluster ids that get a desiredMapping entry.
    pub selected: BTreeSet<String>,
    /// Why nothing may be selected, if so.
    pub blocked: Option<Blocked>,
    /// The value of the `liqo.io/scheduling-enabled` annotation.
    pub annotation: String,
    /// Whether the Namespace carries `liqo.io/scheduling-enabled=true`.
    pub namespace_label: bool,
    pub status: NamespaceOffloadingStatus,
}

/// Plans one object. `clusters` are the remote cluster ids known (virtual nodes and NamespaceMaps);
/// `current` the currentMapping phase of this namespace per cluster id.
pub fn plan(
    obj: &NamespaceOffloading,
    namespace: &str,
    cluster_id: Option<&str>,
    nodes: &VirtualNodes,
    current: &BTreeMap<String, MappingPhase>,
    now: &Time,
) -> Plan {
    let deleting = obj.metadata.deletion_timestamp.is_some();
    // The reconcile loop runs on Liqo v0.3 only.
    let annotation = scheduling_annotation(&obj.spec, Generation::V0_3);
    let name = derived_name(&obj.spec, namespace, cluster_id);
    let remote_name = match &name {
        Ok(n) => Some(n.clone()),
        Err(
            RemoteNameError::DefaultNameTooLong { name, .. }
            | RemoteNameError::InvalidName { name, .. }
            | RemoteNameError::ExistsEverywhere { name, .. },
        ) => Some(name.clone()),
        Err(_) => None,
    };
    let selector_errs = selector_errors(&obj.spec);
    let blocked = if !selector_errs.is_empty() {
        Some(Blocked::InvalidSelector(aggregate(&selector_errs)))
    } else {
        match &name {
            Ok(_) => None,
            Err(RemoteNameError::UnknownClusterId) => Some(Blocked::UnknownClusterId),
            Err(e) => Some(Blocked::InvalidRemoteName(e.to_string())),
        }
    };
    let selected: BTreeSet<String> = if deleting || blocked.is_some() {
        BTreeSet::new()
    } else {
        let sel = obj.spec.cluster_selector.as_ref();
        nodes.selected(Generation::V0_3, sel).iter().map(|i| nodes[i].cluster_id.clone()).collect()
    };

    let none = BTreeMap::new();
    let old_conditions = obj.status.as_ref().map(|s| &s.remote_namespaces_conditions).unwrap_or(&none);
    let mut known: BTreeSet<String> = nodes.iter().map(|n| n.cluster_id.clone()).collect();
    known.extend(current.keys().cloned());
    let mut conditions = BTreeMap::new();
    for id in &known {
        let wanted = wanted_conditions(selected.contains(id), current.get(id));
        let previous = old_conditions.get(id.as_str()).map(|c| &c[..]).unwrap_or_default();
        conditions.insert(shared::intern(id), with_stable_times(wanted, previous, now).into());
    }
    let phase = phase(deleting, &selected, current);
    let status = NamespaceOffloadingStatus {
        remote_namespace_name: remote_name.clone(),
        offloading_phase: Some(phase),
        remote_namespaces_conditions: conditions,
        observed_generation: obj.metadata.generation,
    };
    let namespace_label =
        !deleting && !selected.is_empty() && obj.spec.pod_offloading_strategy.allows_remote();
    Plan { remote_name, selected, blocked, annotation, namespace_label, status }
}

/// The seed's table: selected and not created -> OffloadingRequired=True; Accepted -> Ready=True;
/// CreationLoopBackOff or Terminating -> Ready=False with that reason; not selected ->
/// OffloadingRequired=False. A cluster with a Ready condition has no OffloadingRequired=True.
fn wanted_conditions(
    selected: bool,
    phase: Option<&MappingPhase>,
) -> Vec<(&'static str, &'static str, &'static str)> {
    let ready = match phase {
        Some(MappingPhase::Accepted) => Some(("True", "RemoteNamespaceCreated")),
        Some(MappingPhase::CreationLoopBackOff) => Some(("False", "CreationLoopBackOff")),
        Some(MappingPhase::Terminating) => Some(("False", "Terminating")),
        // An unknown phase says neither created nor failed: still to be offloaded.
        Some(MappingPhase::Unsupported(_)) | None => None,
    };
    let mut out = Vec::new();
    match (selected, ready) {
        (true, None) => out.push((OFFLOADING_REQUIRED, "True", "ClusterSelected")),
        (true, Some(_)) => {}
        (false, _) => out.push((OFFLOADING_REQUIRED, "False", "ClusterNotSelected")),
    }
    if let Some((status, reason)) = ready {
        out.push((READY, status, reason));
    }
    out
}

fn message(type_: &str, status: &str, reason: &str) -> &'static str {
    match (type_, status, reason) {
        (OFFLOADING_REQUIRED, "True", _) => "The cluster is selected: its remote namespace is being created",
        (OFFLOADING_REQUIRED, _, _) => "The cluster is not selected by spec.clusterSelector",
        (READY, "True", _) => "The remote namespace is created",
        (_, _, "Terminating") => "The remote namespace is being deleted",
        _ => "The remote namespace could not be created: see the NamespaceMap's currentMapping",
    }
}

/// Keeps a condition's lastTransitionTime while its status and reason are unchanged.
fn with_stable_times(
    wanted: Vec<(&'static str, &'static str, &'static str)>,
    previous: &[RemoteNamespaceCondition],
    now: &Time,
) -> Vec<RemoteNamespaceCondition> {
    wanted
        .into_iter()
        .map(|(type_, status, reason)| {
            let same = previous
                .iter()
                .find(|c| c.type_ == type_ && c.status == status && c.reason.as_deref() == Some(reason));
            RemoteNamespaceCondition {
                type_: type_.into(),
                status: status.into(),
                last_transition_time: Some(
                    same.and_then(|c| c.last_transition_time.clone()).unwrap_or_else(|| now.clone()),
                ),
                reason: Some(reason.into()),
                message: Some(message(type_, status, reason).into()),
            }
        })
        .collect()
}

/// First match wins: deleting; none selected; all Accepted; all failed; some failed; in progress.
fn phase(
    deleting: bool,
    selected: &BTreeSet<String>,
    current: &BTreeMap<String, MappingPhase>,
) -> OffloadingPhase {
    if deleting {
        return OffloadingPhase::Terminating;
    }
    if selected.is_empty() {
        return OffloadingPhase::NoClusterSelected;
    }
    let phases: Vec<Option<&MappingPhase>> = selected.iter().map(|id| current.get(id)).collect();
    let failed = phases.iter().filter(|p| **p == Some(&MappingPhase::CreationLoopBackOff)).count();
    if phases.iter().all(|p| *p == Some(&MappingPhase::Accepted)) {
        OffloadingPhase::Ready
    } else if failed == phases.len() {
        OffloadingPhase::AllFailed
    } else if failed > 0 {
        OffloadingPhase::SomeFailed
    } else {
        OffloadingPhase::InProgress
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offloading::rules::VirtualNode;
    use MappingPhase::*;
    use serde_json::json;

    const UUID: &str = "b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a";

    fn node(id: &str, region: &str) -> VirtualNode {
        VirtualNode {
            name: format!("liqo-{id}"),
            cluster_id: id.into(),
            labels: [
                ("region".to_string(), region.to_string()),
                ("liqo.io/remote-cluster-id".to_string(), id.to_string()),
            ]
            .into(),
        }
    }

    fn obj(spec: serde_json::Value) -> NamespaceOffloading {
        serde_json::from_value(json!({
            "apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
            "metadata": {"name": "offloading", "namespace": "web", "generation": 3}, "spec": spec
        }))
        .unwrap()
    }

    fn t(s: &str) -> Time {
        serde_json::from_value(json!(s)).unwrap()
    }

    fn eu() -> NamespaceOffloading {
        obj(json!({"clusterSelector": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "region", "operator": "In", "values": ["eu"]}]}]}}))
    }

    fn nodes() -> VirtualNodes {
        VirtualNodes::new(vec![node("a", "eu"), node("b", "eu"), node("c", "us")])
    }

    fn conds(p: &Plan, id: &str) -> Vec<(String, String)> {
        p.status.remote_namespaces_conditions[id]
            .iter()
            .map(|c| (c.type_.to_string(), c.status.to_string()))
            .collect()
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.into(), b.into())
    }

    #[test]
    fn two_of_three_selected_in_progress() {
        let now = t("2026-11-25T08:00:00Z");
        let p = plan(&eu(), "web", Some(UUID), &nodes(), &BTreeMap::new(), &now);
        assert_eq!(p.selected, ["a".to_string(), "b".to_string()].into());
        assert_eq!(p.status.offloading_phase, Some(OffloadingPhase::InProgress));
        assert_eq!(p.status.remote_namespace_name.as_deref(), Some(format!("web-{UUID}").as_str()));
        assert_eq!(p.status.observed_generation, Some(3));
        assert_eq!(conds(&p, "a"), vec![pair("OffloadingRequired", "True")]);
        assert_eq!(conds(&p, "c"), vec![pair("OffloadingRequired", "False")]);
        assert!(p.namespace_label);
        assert_eq!(p.annotation, "true");
    }

    #[test]
    fn phases_follow_the_current_mapping() {
        let now = t("2026-11-25T08:00:00Z");
        let cur = |a, b| BTreeMap::from([("a".to_string(), a), ("b".to_string(), b)]);
        let phase = |c| plan(&eu(), "web", Some(UUID), &nodes(), &c, &now).status.offloading_phase.unwrap();
        assert_eq!(phase(cur(Accepted, Accepted)), OffloadingPhase::Ready);
        assert_eq!(phase(cur(Accepted, CreationLoopBackOff)), OffloadingPhase::SomeFailed);
        assert_eq!(phase(cur(CreationLoopBackOff, CreationLoopBackOff)), OffloadingPhase::AllFailed);
        assert_eq!(phase(cur(Accepted, Terminating)), OffloadingPhase::InProgress);

        let p = plan(&eu(), "web", Some(UUID), &nodes(), &cur(Accepted, CreationLoopBackOff), &now);
        // Once Ready exists, OffloadingRequired=True is gone (the seed's table).
        assert_eq!(conds(&p, "a"), vec![pair("Ready", "True")]);
        assert_eq!(conds(&p, "b"), vec![pair("Ready", "False")]);
        assert_eq!(
            p.status.remote_namespaces_conditions["b"][0].reason.as_deref(),
            Some("CreationLoopBackOff")
        );
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let first = plan(&eu(), "web", Some(UUID), &nodes(), &BTreeMap::new(), &t("2026-11-25T08:00:00Z"));
        let mut o = eu();
        o.status = Some(first.status.clone());
        let cur = BTreeMap::from([("a".to_string(), Accepted)]);
        let later = t("2026-11-25T09:00:00Z");
        let second = plan(&o, "web", Some(UUID), &nodes(), &cur, &later);
        let time =
            |p: &Plan, id: &str| p.status.remote_namespaces_conditions[id][0].last_transition_time.clone();
        assert_eq!(time(&second, "b"), time(&first, "b"));
        assert_eq!(time(&second, "c"), time(&first, "c"));
        assert_eq!(time(&second, "a"), Some(later));
        // Planning again with the same inputs changes nothing: no write.
        o.status = Some(second.status.clone());
        assert_eq!(
            plan(&o, "web", Some(UUID), &nodes(), &cur, &t("2026-11-25T10:00:00Z")).status,
            second.status
        );
    }

    #[test]
    fn nothing_selected_when_blocked_or_deleting() {
        let now = t("2026-11-25T08:00:00Z");
        let bad = obj(json!({"clusterSelector": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "region", "operator": "Equals", "values": ["eu"]}]}]}}));
        let p = plan(&bad, "web", Some(UUID), &nodes(), &BTreeMap::new(), &now);
        assert!(p.selected.is_empty());
        assert_eq!(p.status.offloading_phase, Some(OffloadingPhase::NoClusterSelected));
        assert!(matches!(p.blocked, Some(Blocked::InvalidSelector(_))));
        assert!(p.annotation.starts_with("Invalid Cluster Selector : "));
        assert!(!p.namespace_label);

        let long = "payments-processing-europe-1";
        let p = plan(&eu(), long, Some(UUID), &nodes(), &BTreeMap::new(), &now);
        assert!(p.selected.is_empty());
        assert!(matches!(&p.blocked, Some(Blocked::InvalidRemoteName(m)) if m.contains("is 65 characters")));
        assert_eq!(p.remote_name, Some(format!("{long}-{UUID}")));

        let mut gone = eu();
        gone.metadata.deletion_timestamp = Some(now.clone());
        let cur = BTreeMap::from([("a".to_string(), Terminating)]);
        let p = plan(&gone, "web", Some(UUID), &nodes(), &cur, &now);
        assert!(p.selected.is_empty());
        assert_eq!(p.status.offloading_phase, Some(OffloadingPhase::Terminating));
        assert!(!p.namespace_label);
    }

    #[test]
    fn local_pod_strategy_never_labels_the_namespace() {
        let mut o = eu();
        o.spec.pod_offloading_strategy = crate::crd::PodOffloadingStrategy::Local;
        let p = plan(&o, "web", Some(UUID), &nodes(), &BTreeMap::new(), &t("2026-11-25T08:00:00Z"));
        assert_eq!(p.selected.len(), 2);
        assert!(!p.namespace_label);
    }
}

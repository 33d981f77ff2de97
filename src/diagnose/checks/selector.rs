//! The clusterSelector: is it one the webhook would admit, has the controller looked at it since,
//! and does it select any cluster (and if not, which requirement failed where).

use super::{Finding, Subject};
use crate::diagnose::report::Problem;
use crate::diagnose::wording::InvalidSelector;
use crate::liqo::SCHEDULING_ENABLED;
use crate::offloading::{VirtualNode, aggregate, selector};
use k8s_openapi::api::core::v1::NodeSelector;
use kube::ResourceExt;

/// The selector judged as the webhook would; what works by luck today is a note.
pub fn selector_valid(s: &Subject<'_>, _: &[Problem]) -> Vec<Finding> {
    let mut found = Vec::new();
    if !s.selector.allowed() {
        let (cause, fix) = (s.wording.invalid_selector)(&InvalidSelector {
            namespace: &s.namespace.name,
            message: &aggregate(&s.selector.errors),
            annotation: s.offloading.annotations().get(SCHEDULING_ENABLED).map(String::as_str),
            present: s.offloading.spec.cluster_selector.is_some(),
        });
        found.push(Finding::problem(cause, fix));
    }
    found.extend(s.selector.warnings.iter().cloned().map(Finding::Note));
    found
}

/// A controller that never retries after an `Invalid` Event (v1.x) stays at NoClusterSelected even
/// once the selector would work.
pub fn selector_looked_at_again(s: &Subject<'_>, _: &[Problem]) -> Vec<Finding> {
    if s.names.retries_invalid_selector || !s.selector.allowed() || s.phase() != Some("NoClusterSelected") {
        return Vec::new();
    }
    let events = &s.namespace.events;
    let Some(e) = events.iter().rev().find(|e| e.type_ == "Warning" && e.reason == "Invalid") else {
        return Vec::new();
    };
    vec![Finding::problem(
        format!(
            "Liqo's controller refused the clusterSelector ({}) and does not retry, although it reads well with the virtual nodes known now",
            e.note
        ),
        "apply any change to spec.clusterSelector (or delete and create the NamespaceOffloading) to make Liqo look again",
    )]
}

/// A valid selector that selects nothing (and an object not being deleted): which requirement
/// failed on which cluster.
pub fn some_cluster_selected(s: &Subject<'_>, _: &[Problem]) -> Vec<Finding> {
    let deleting = s.offloading.metadata.deletion_timestamp.is_some();
    if !s.selector.allowed() || s.clusters.iter().any(|c| c.selected) || deleting {
        return Vec::new();
    }
    let nodes = &s.cluster.nodes;
    if nodes.is_empty() {
        return vec![Finding::problem(
            "no remote cluster is known (no virtual node): nothing can be selected",
            "peer with a remote cluster first (liqoctl peer), then check that its virtual node exists",
        )];
    }
    let wanted = s.offloading.spec.cluster_selector.as_ref();
    let mut lines = Vec::new();
    for n in nodes.iter() {
        for why in why_not(wanted, n) {
            lines.push(format!("cluster {} (node {}): {why}", n.cluster_id, n.name));
        }
    }
    vec![Finding::problem(
        format!(
            "the clusterSelector matches none of the {} virtual nodes:\n      {}",
            nodes.len(),
            lines.join("\n      ")
        ),
        format!(
            "change spec.clusterSelector to match the labels of the virtual nodes ({}), or label the clusters",
            s.wording.node_labels
        ),
    )]
}

/// Why a (valid) selector does not select the virtual node: per term, the requirement that failed
/// and the node's actual value. Empty when it selects it. Also what `plan` says of each cluster.
pub fn why_not(wanted: Option<&NodeSelector>, node: &VirtualNode) -> Vec<String> {
    let Err(misses) = selector::explain(wanted, &node.facts()) else { return Vec::new() };
    misses
        .iter()
        .enumerate()
        .map(|(i, miss)| match miss {
            Some(u) => format!("{} wants {}, but {}", u.path, u.requirement, u.found),
            None => format!("term {i} is empty and matches nothing"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixtures::{causes, facts, offloading, subject};
    use super::*;
    use crate::diagnose::facts::EventFact;
    use crate::liqo::Generation;

    fn region(value: &str) -> serde_json::Value {
        json!({"clusterSelector": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "region", "operator": "In", "values": [value]}]}]}})
    }

    #[test]
    fn a_selector_the_webhook_would_refuse() {
        let bad = json!({"clusterSelector": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "region", "operator": "Equals", "values": ["eu"]}]}]}});
        let mut f = facts(Generation::V0_3, "NoClusterSelected", "Accepted");
        f.namespace.offloading = Some(offloading(bad, json!({})));
        let found = causes(selector_valid(&subject(&f), &[]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("the clusterSelector is invalid, so no cluster is selected; the annotation liqo.io/scheduling-enabled says: Invalid Cluster Selector : "), "{found:?}");
        assert!(selector_valid(&subject(&facts(Generation::V1, "Ready", "Accepted")), &[]).is_empty());
    }

    #[test]
    fn only_a_controller_that_never_retries_is_stuck_on_an_old_invalid_event() {
        for (g, stuck) in [(Generation::V0_3, false), (Generation::V1, true)] {
            let mut f = facts(g, "NoClusterSelected", "Accepted");
            f.namespace.events = vec![EventFact {
                type_: "Warning".into(),
                reason: "Invalid".into(),
                note: "Invalid ClusterSelector: x".into(),
            }];
            assert_eq!(!selector_looked_at_again(&subject(&f), &[]).is_empty(), stuck, "{g:?}");
        }
        // No such Event: nothing to say.
        let f = facts(Generation::V1, "NoClusterSelected", "Accepted");
        assert!(selector_looked_at_again(&subject(&f), &[]).is_empty());
    }

    #[test]
    fn a_selector_that_matches_nothing_says_which_requirement_failed_where() {
        let mut f = facts(Generation::V1, "NoClusterSelected", "Accepted");
        f.namespace.offloading =
            Some(offloading(region("eu"), json!({"offloadingPhase": "NoClusterSelected"})));
        let found = some_cluster_selected(&subject(&f), &[]);
        let Finding::Problem { cause, fix, .. } = &found[0] else { panic!("{found:?}") };
        assert!(cause.starts_with("the clusterSelector matches none of the 1 virtual nodes:\n      cluster calm-sea (node calm-sea): "), "{cause}");
        assert!(fix.contains("kubectl get virtualnodes -A -o yaml"), "{fix}");
        // No virtual node at all.
        f.cluster.nodes = Vec::new().into();
        assert_eq!(
            causes(some_cluster_selected(&subject(&f), &[])),
            ["no remote cluster is known (no virtual node): nothing can be selected"]
        );
        // Selected: nothing to say.
        assert!(
            some_cluster_selected(&subject(&facts(Generation::V0_3, "Ready", "Accepted")), &[]).is_empty()
        );
    }
}

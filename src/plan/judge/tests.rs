use serde_json::json;

use super::*;
use crate::diagnose::checks::fixtures::{LOCAL, REMOTE, facts, node};
use crate::liqo::Generation;
use crate::offloading::VirtualNode;

fn object(g: Generation, spec: serde_json::Value) -> NamespaceOffloading {
    serde_json::from_value(json!({
        "apiVersion": g.names().offloadings.group_version(), "kind": "NamespaceOffloading",
        "metadata": {"name": "offloading", "namespace": "web"}, "spec": spec
    }))
    .unwrap()
}

fn every() -> serde_json::Value {
    json!({"clusterSelector": {"nodeSelectorTerms": []}})
}

fn region(op: &str, value: &str) -> serde_json::Value {
    json!({"clusterSelector": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "region", "operator": op, "values": [value]}]}]}})
}

/// The cluster of the diagnose fixtures (one remote cluster, calm-sea, no region label), and an
/// object to apply in `web`.
fn apply(g: Generation, spec: serde_json::Value) -> (ClusterFacts, ObjectFacts) {
    let cluster = facts(g, "Ready", "Accepted").cluster;
    let f = ObjectFacts {
        source: "f.yaml, document 1".into(),
        namespace: "web".into(),
        name: "offloading".into(),
        api_version: g.names().offloadings.group_version(),
        object: Some(Ok(object(g, spec))),
        namespace_exists: true,
        ..Default::default()
    };
    (cluster, f)
}

#[test]
fn a_good_object_selects_its_cluster_and_the_name_is_free() {
    for g in [Generation::V0_3, Generation::V1] {
        let (cluster, mut f) = apply(g, every());
        let name = format!("web-{LOCAL}");
        f.remotes.insert(REMOTE.into(), RemoteFact::Missing { name: name.clone() });
        let p = judge(&cluster, &f);
        assert_eq!(p.outcome, Outcome::Succeeds, "{g:?}: {p:?}");
        assert_eq!(p.exit_code(), 0);
        assert_eq!(p.operation, "create");
        assert_eq!(p.remote_namespace, Some(RemoteName { name: name.clone(), length: 15, limit: 63 }));
        assert_eq!(p.clusters.len(), 1);
        assert!(p.clusters[0].selected && p.clusters[0].remote == Some(RemoteState::Free));
        assert_eq!(p.summary, format!("would offload to {REMOTE} as namespace {name} (phase Ready)"));
        // Without a way to reach the cluster, it is not checked, and says so.
        f.remotes.clear();
        let p = judge(&cluster, &f);
        assert_eq!(p.outcome, Outcome::Succeeds);
        assert!(p.summary.ends_with(&format!("(phase Ready); not checked in {REMOTE}")), "{}", p.summary);
    }
}

#[test]
fn a_selector_that_matches_nothing_says_which_requirement_failed_with_the_actual_value() {
    let (mut cluster, f) = apply(Generation::V1, region("In", "us-east"));
    let mut labelled = node();
    labelled.labels.insert("region".into(), "eu-west".into());
    cluster.nodes = vec![labelled].into();
    let p = judge(&cluster, &f);
    assert_eq!(p.outcome, Outcome::SelectsNothing);
    assert_eq!(p.exit_code(), 1);
    assert_eq!(
        p.clusters[0].why_not,
        [
            "spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0] wants region In [us-east], but the node's label region is \"eu-west\""
        ]
    );
    assert_eq!(p.summary, "would select none of the 1 remote clusters (phase NoClusterSelected)");
    assert!(p.refusals.is_empty(), "the webhook only warns: {:?}", p.refusals);
    assert!(p.warnings.iter().any(|w| w.contains("matches none of the 1 virtual nodes")), "{:?}", p.warnings);
}

#[test]
fn a_selector_the_webhook_refuses_is_refused_with_its_message() {
    for g in [Generation::V0_3, Generation::V1] {
        let (cluster, f) = apply(g, region("Equals", "eu"));
        let p = judge(&cluster, &f);
        assert_eq!(p.outcome, Outcome::Refused, "{g:?}");
        assert!(
            p.refusals[0].starts_with("spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Equals\""),
            "{:?}",
            p.refusals
        );
        assert!(!p.clusters[0].selected);
        assert!(p.clusters[0].why_not[0].starts_with("the clusterSelector is refused"));
        assert_eq!(p.summary, "kubectl apply would be refused (1 reason)");
    }
}

#[test]
fn a_remote_name_taken_fails_later_and_one_of_ours_does_not() {
    for (g, ours) in
        [(Generation::V0_3, LOCAL.to_string()), (Generation::V1, format!("liqo-tenant-{LOCAL}/{REMOTE}"))]
    {
        let (cluster, mut f) = apply(g, every());
        let name = format!("web-{LOCAL}");
        f.remotes.insert(REMOTE.into(), RemoteFact::Exists { name: name.clone(), owner: None });
        let p = judge(&cluster, &f);
        assert_eq!(p.outcome, Outcome::FailsLater, "{g:?}");
        assert_eq!(
            p.summary,
            format!(
                "would select {REMOTE} but the remote namespace cannot be created in {REMOTE} (phase AllFailed)"
            )
        );
        assert!(p.clusters[0].remote_detail.as_deref().unwrap().contains("exists without liqo.io/"));
        f.remotes.insert(REMOTE.into(), RemoteFact::Exists { name: name.clone(), owner: Some(ours) });
        assert_eq!(judge(&cluster, &f).outcome, Outcome::Succeeds, "{g:?}");
        f.remotes.insert(REMOTE.into(), RemoteFact::Unreachable("connection refused".into()));
        assert_eq!(judge(&cluster, &f).outcome, Outcome::FailsLater, "{g:?}");
    }
}

#[test]
fn an_update_says_which_clusters_it_gains_and_loses_and_the_immutable_fields() {
    let (mut cluster, mut f) = apply(Generation::V0_3, region("In", "eu"));
    let other = |id: &str, region: &str| VirtualNode {
        name: id.into(),
        cluster_id: id.into(),
        labels: [("region".to_string(), region.to_string())].into(),
    };
    cluster.nodes = vec![other("eu-1", "eu"), other("us-1", "us")].into();
    f.stored = Some(object(Generation::V0_3, region("In", "us")));
    let p = judge(&cluster, &f);
    assert_eq!(p.operation, "update");
    let c = p.changes.clone().unwrap();
    assert_eq!((c.gained, c.lost), (vec!["eu-1".to_string()], vec!["us-1".to_string()]));
    assert!(c.immutable.is_empty());
    let mut selected = region("In", "eu");
    selected["namespaceMappingStrategy"] = json!("SelectedName");
    selected["remoteNamespaceName"] = json!("chosen");
    f.object = Some(Ok(object(Generation::V0_3, selected)));
    let p = judge(&cluster, &f);
    assert_eq!(p.outcome, Outcome::Refused);
    assert_eq!(
        p.changes.unwrap().immutable,
        [
            "spec.namespaceMappingStrategy: DefaultName -> SelectedName",
            "spec.remoteNamespaceName: (none) -> \"chosen\""
        ]
    );
    assert!(
        p.refusals.iter().any(|r| r.starts_with(
            "spec.namespaceMappingStrategy: Invalid value: \"SelectedName\": field is immutable"
        )),
        "{:?}",
        p.refusals
    );
}

#[test]
fn what_the_api_server_refuses_before_the_webhook() {
    let (cluster, mut f) = apply(Generation::V1, every());
    f.api_version = "offloading.liqo.io/v1alpha1".into();
    f.namespace_exists = false;
    let p = judge(&cluster, &f);
    assert_eq!(p.outcome, Outcome::Refused);
    assert_eq!(
        p.refusals,
        [
            "no matches for kind \"NamespaceOffloading\" in version \"offloading.liqo.io/v1alpha1\": this cluster runs Liqo v1.x, which serves NamespaceOffloadings in offloading.liqo.io/v1beta1; set apiVersion: offloading.liqo.io/v1beta1",
            "namespaces \"web\" not found: create the namespace first (or put it in the same input, before the NamespaceOffloading)",
        ]
    );
    f.object = Some(Err("spec.clusterSelector: invalid type".into()));
    f.api_version = "offloading.liqo.io/v1beta1".into();
    f.namespace_exists = true;
    let p = judge(&cluster, &f);
    assert_eq!(
        p.refusals,
        ["the object does not decode as a NamespaceOffloading: spec.clusterSelector: invalid type"]
    );
    assert!(p.clusters.is_empty());
}

#[test]
fn a_name_too_long_is_refused_with_its_length() {
    let (cluster, mut f) = apply(Generation::V0_3, every());
    f.namespace = "n".repeat(60);
    let p = judge(&cluster, &f);
    assert_eq!(p.outcome, Outcome::Refused);
    assert!(p.refusals[0].contains("is 72 characters, over the limit of 63"), "{:?}", p.refusals);
    assert_eq!(p.remote_namespace, None);
}

//! The judge as a whole: the facts of one namespace in, the report (and its text) out.

use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::fixtures::{LOCAL, REMOTE, facts, offloading};
use crate::diagnose::facts::{EventFact, Facts, LeaseFact, NamespaceFacts, RemoteFact};
use crate::diagnose::render::text as render;
use crate::diagnose::report::Report;
use crate::liqo::Generation;
use crate::reconcile::installs::Seniority;

/// The whole judgment of facts held together.
fn judge(f: &Facts) -> Report {
    super::judge(&f.cluster, &f.namespace)
}

fn owner_annotation(g: Generation) -> &'static str {
    g.names().owner_annotation
}

#[test]
fn a_healthy_namespace_on_both_generations() {
    for g in [Generation::V0_3, Generation::V1] {
        let r = judge(&facts(g, "Ready", "Accepted"));
        assert!(r.healthy, "{g:?}: {:?}", r.problems);
        assert_eq!(r.clusters[0].current.as_deref(), Some("web-frosty-bird Accepted"));
        assert!(r.clusters[0].selected);
    }
}

#[test]
fn creation_loop_back_off_names_each_generation_s_annotation() {
    let r = judge(&facts(Generation::V0_3, "AllFailed", "CreationLoopBackOff"));
    assert_eq!(
        r.problems[0].cause,
        "the remote namespace cannot be created in cluster calm-sea (CreationLoopBackOff)"
    );
    assert!(
        r.problems[0].fix.contains("without liqo.io/remote-namespace=frosty-bird"),
        "{}",
        r.problems[0].fix
    );
    let r = judge(&facts(Generation::V1, "AllFailed", "CreationLoopBackOff"));
    assert_eq!(
        r.problems[0].cause,
        "the remote namespace cannot be created in cluster calm-sea (CreationLoopBackOff)"
    );
    assert!(
        r.problems[0]
            .fix
            .contains("without liqo.io/managed-by-namespace-map=liqo-tenant-frosty-bird/calm-sea"),
        "{}",
        r.problems[0].fix
    );
}

#[test]
fn a_taken_remote_name_on_both_generations() {
    for (g, ours) in
        [(Generation::V0_3, LOCAL.to_string()), (Generation::V1, format!("liqo-tenant-{LOCAL}/{REMOTE}"))]
    {
        let mut f = facts(g, "AllFailed", "CreationLoopBackOff");
        let name = format!("web-{LOCAL}");
        f.namespace.remotes.insert(REMOTE.into(), RemoteFact::Exists { name: name.clone(), owner: None });
        let r = judge(&f);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(
            r.problems[0].cause.starts_with(&format!("the remote namespace \"{name}\" in cluster calm-sea exists without the annotation {}, so Liqo did not create it", owner_annotation(g))),
            "{}",
            r.problems[0].cause
        );
        assert!(
            r.problems[0].fix.starts_with(&format!("rename or remove namespace {name} in cluster calm-sea"))
        );
        // The generation's own annotation value: no problem.
        let mut f = facts(g, "Ready", "Accepted");
        f.namespace.remotes.insert(REMOTE.into(), RemoteFact::Exists { name, owner: Some(ours) });
        assert!(judge(&f).healthy, "{g:?}");
    }
    // On v1.x, another consumer's map.
    let mut f = facts(Generation::V1, "AllFailed", "CreationLoopBackOff");
    f.namespace.remotes.insert(
        REMOTE.into(),
        RemoteFact::Exists { name: format!("web-{LOCAL}"), owner: Some("liqo-tenant-other/calm-sea".into()) },
    );
    assert!(judge(&f).problems[0].cause.contains("is managed by NamespaceMap liqo-tenant-other/calm-sea (liqo.io/managed-by-namespace-map), not by this cluster's"));
}

#[test]
fn a_too_long_name_on_both_generations() {
    for g in [Generation::V0_3, Generation::V1] {
        let mut f = facts(g, "AllFailed", "CreationLoopBackOff");
        let ns = "a-namespace-much-longer-than-fits-with-any-cluster-id-x";
        f.namespace.name = ns.into();
        let r = judge(&f);
        assert!(
            r.problems[0].cause.contains("over the limit of 63 for a namespace name"),
            "{g:?}: {:?}",
            r.problems
        );
        assert!(r.problems[0].fix.starts_with(
            "delete the NamespaceOffloading and create it again with namespaceMappingStrategy EnforceSameName"
        ));
    }
}

#[test]
fn a_broken_selector_on_both_generations() {
    let bad = json!({"clusterSelector": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "region", "operator": "Equals", "values": ["eu"]}]}]}});
    for g in [Generation::V0_3, Generation::V1] {
        let mut f = facts(g, "NoClusterSelected", "Accepted");
        f.cluster.maps.clear();
        f.namespace.offloading =
            Some(offloading(bad.clone(), json!({"offloadingPhase": "NoClusterSelected"})));
        f.namespace.events = vec![EventFact {
            type_: "Warning".into(),
            reason: "Invalid".into(),
            note: "Invalid ClusterSelector: nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Equals\"".into(),
        }];
        let r = judge(&f);
        assert!(
            r.problems[0].cause.contains(r#"operator: Unsupported value: "Equals""#),
            "{g:?} {:?}",
            r.problems
        );
        assert!(
            r.problems[0]
                .fix
                .starts_with("correct spec.clusterSelector as the message says and apply it again")
        );
        assert_eq!(r.events, vec!["Warning Invalid: Invalid ClusterSelector: nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Equals\"".to_string()]);
    }
}

#[test]
fn v1_without_node_selector_terms_says_how_to_patch() {
    let mut f = facts(Generation::V1, "NoClusterSelected", "Accepted");
    f.cluster.maps.clear();
    f.namespace.offloading = Some(offloading(json!({}), json!({"offloadingPhase": "NoClusterSelected"})));
    let r = judge(&f);
    assert!(
        r.problems[0]
            .cause
            .starts_with("the clusterSelector has no nodeSelectorTerms, so no cluster is selected, ever")
    );
    assert_eq!(
        r.problems[0].fix,
        r#"kubectl patch nsof offloading -n web --type merge -p '{"spec":{"clusterSelector":{"nodeSelectorTerms":[]}}}' (every cluster), or give the terms you mean"#
    );
    // v0.3 selects every cluster with it.
    let mut f = facts(Generation::V0_3, "Ready", "Accepted");
    f.namespace.offloading =
        Some(offloading(json!({}), json!({"offloadingPhase": "Ready", "observedGeneration": 1})));
    assert!(judge(&f).healthy);
}

#[test]
fn v1_an_invalid_event_that_liqo_never_retries() {
    let mut f = facts(Generation::V1, "NoClusterSelected", "Accepted");
    f.cluster.maps.clear();
    f.namespace.offloading.as_mut().unwrap().status.as_mut().unwrap().offloading_phase =
        Some(crate::crd::OffloadingPhase::NoClusterSelected);
    f.namespace.events = vec![EventFact {
        type_: "Warning".into(),
        reason: "Invalid".into(),
        note: "Invalid ClusterSelector: x".into(),
    }];
    let r = judge(&f);
    assert!(
        r.problems.iter().any(|p| p.cause.starts_with(
            "Liqo's controller refused the clusterSelector (Invalid ClusterSelector: x) and does not retry"
        )),
        "{:?}",
        r.problems
    );
}

#[test]
fn a_missing_map_names_who_makes_it() {
    let mut f = facts(Generation::V1, "InProgress", "Accepted");
    f.cluster.maps.clear();
    let r = judge(&f);
    assert!(r.problems[0].cause.starts_with("cluster calm-sea has no NamespaceMap that Liqo reads (named calm-sea, labelled liqo.io/replication=true and liqo.io/remoteID=calm-sea"), "{:?}", r.problems);
    let mut f = facts(Generation::V0_3, "InProgress", "Accepted");
    f.cluster.maps.clear();
    assert_eq!(judge(&f).problems[0].cause, "cluster calm-sea has no NamespaceMap in liqo-tenant-calm-sea");
    // v1.x finds the tenant namespace by label; without one the peering is incomplete.
    let mut f = facts(Generation::V1, "InProgress", "Accepted");
    f.cluster.maps.clear();
    f.cluster.tenants.clear();
    assert_eq!(
        judge(&f).problems[0].cause,
        "cluster calm-sea has no tenant namespace (labelled liqo.io/tenant-namespace=true and liqo.io/remote-cluster-id=calm-sea), so Liqo makes no NamespaceMap for it"
    );
}

#[test]
fn no_offloading_at_all() {
    let mut f = Facts::default();
    f.namespace.name = "web".into();
    f.cluster.generation = Generation::V1;
    let r = judge(&f);
    assert_eq!(r.problems[0].cause, "namespace web has no NamespaceOffloading: it is not offloaded");
    assert!(render(&r).contains("liqo API:            v1.x"));
}

#[test]
fn the_reconcile_leases_say_who_holds_them_and_which_install_reconciles() {
    let now = Timestamp::from_second(1_700_000_100).unwrap();
    let lease = |ns: &str, created: i64, holder: Option<&str>, renewed: i64| LeaseFact {
        seniority: Seniority {
            created: Some(Timestamp::from_second(1_700_000_000 + created).unwrap()),
            namespace: ns.into(),
            name: "offloading-webhook-reconciler".into(),
        },
        holder: holder.map(str::to_owned),
        renew_time: Some(Timestamp::from_second(1_700_000_100 - renewed).unwrap()),
        duration_seconds: Some(15),
    };
    let mut f = Facts {
        namespace: NamespaceFacts { name: "web".into(), ..Default::default() },
        ..Default::default()
    };
    f.cluster.looked_at = Some(now);
    f.cluster.leases = vec![
        lease("old", 1, None, 900),
        lease("team-a", 10, Some("a-1"), 2),
        lease("team-b", 20, Some("b-1"), 1),
        lease("gone", 30, Some("g-1"), 60),
    ];
    let r = judge(&f);
    let text = render(&r);
    assert!(text.contains("reconcile leases:\n  old/offloading-webhook-reconciler  holder -, renewed 900 s ago (lease 15 s): released\n  team-a/offloading-webhook-reconciler  holder a-1, renewed 2 s ago (lease 15 s): reconciles\n  team-b/offloading-webhook-reconciler  holder b-1, renewed 1 s ago (lease 15 s): stands by: another install is older\n  gone/offloading-webhook-reconciler  holder g-1, renewed 60 s ago (lease 15 s): expired\n"), "{text}");
    assert!(r.notes.contains(&"2 installs of offloading-webhook run a reconcile loop on this cluster (Leases team-a/offloading-webhook-reconciler, team-b/offloading-webhook-reconciler): only the oldest, team-a/offloading-webhook-reconciler, reconciles, the others stand by; uninstall all but one".to_owned()), "{:?}", r.notes);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["reconcileLeases"][1]["holder"], "a-1");
    assert_eq!(json["reconcileLeases"][1]["renewedSecondsAgo"], 2);
    assert_eq!(json["reconcileLeases"][1]["reconciles"], true);
    // One install: no note; none readable: no section.
    f.cluster.leases.truncate(2);
    let r = judge(&f);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    f.cluster.leases.clear();
    assert!(!render(&judge(&f)).contains("reconcile leases"));
}

//! One remote cluster: its virtual node, its NamespaceMap, what it says of the remote namespace,
//! and whether the namespace is stuck in CreationLoopBackOff for a reason no other check gave.
//! Every problem here is about the cluster, and says so in its `cluster` field.

use super::{Cluster, ClusterCheck, Finding, Subject};
use crate::crd::MappingPhase;
use crate::diagnose::facts::{RemoteFact, wanted_name};
use crate::diagnose::report::Problem;
use crate::diagnose::wording::MissingMap;

/// The checks of one remote cluster, in order.
pub const CHECKS: &[ClusterCheck] = &[
    super::Check { name: "virtual-node-present", run: virtual_node_present },
    super::Check { name: "map-present", run: map_present },
    super::Check { name: "remote-namespace-ours", run: remote_namespace_ours },
    super::Check { name: "remote-cluster-reachable", run: remote_cluster_reachable },
    super::Check { name: "creation-explained", run: creation_explained },
];

/// A cluster known from a map or a condition only: the peering may be gone.
pub fn virtual_node_present(_: &Subject<'_>, c: &Cluster<'_>, _: &[Problem]) -> Vec<Finding> {
    match c.node {
        Some(_) => Vec::new(),
        None => vec![Finding::Note(format!("cluster {} has no virtual node: the peering may be gone", c.id))],
    }
}

/// A virtual node without the NamespaceMap the generation's controller reads (unless its map does
/// not decode: said already).
pub fn map_present(s: &Subject<'_>, c: &Cluster<'_>, _: &[Problem]) -> Vec<Finding> {
    let undecodable = s.cluster.undecodable.iter().any(|u| u.namespace == c.tenant);
    if c.map.is_some() || c.node.is_none() || undecodable {
        return Vec::new();
    }
    let (cause, fix) = (s.wording.missing_map)(&MissingMap {
        id: &c.id,
        tenant: &c.tenant,
        tenant_labelled: s.cluster.tenants.contains_key(&c.id),
    });
    vec![Finding::problem_of(&c.id, cause, fix)]
}

/// A remote namespace of the wanted name that the generation's controller did not create for this
/// cluster: it can never be created (CreationLoopBackOff).
pub fn remote_namespace_ours(s: &Subject<'_>, c: &Cluster<'_>, _: &[Problem]) -> Vec<Finding> {
    let Some(RemoteFact::Exists { name, owner }) = c.remote else { return Vec::new() };
    let local_id = s.cluster.local_cluster_id.as_deref().unwrap_or_default();
    let ours = owner.as_deref().is_some_and(|a| s.names.owned_by(a, local_id));
    if ours || local_id.is_empty() {
        return Vec::new();
    }
    let key = s.names.owner_annotation;
    let whose = match owner {
        Some(a) => (s.wording.owned_by_other)(a, key),
        None => format!("exists without the annotation {key}, so Liqo did not create it"),
    };
    let id = &c.id;
    vec![Finding::problem_of(
        id,
        format!(
            "the remote namespace {name:?} in cluster {id} {whose}: the remote namespace cannot be created (CreationLoopBackOff)"
        ),
        format!(
            "rename or remove namespace {name} in cluster {id}, or offload with namespaceMappingStrategy SelectedName and another remoteNamespaceName"
        ),
    )]
}

/// A remote cluster whose kubeconfig works but whose API server does not answer: a problem of the
/// namespace when it is offloaded there (selected, or an entry in the cluster's map), a note
/// otherwise (another namespace's trouble, not this one's).
pub fn remote_cluster_reachable(s: &Subject<'_>, c: &Cluster<'_>, _: &[Problem]) -> Vec<Finding> {
    let Some(RemoteFact::Unreachable(e)) = c.remote else { return Vec::new() };
    let id = &c.id;
    if !c.selected && wanted_name(c.map, &s.namespace.name).is_none() {
        return vec![Finding::Note(format!(
            "remote cluster {id} cannot be reached ({e}); this namespace is not offloaded there"
        ))];
    }
    vec![Finding::problem_of(
        id,
        format!("remote cluster {id} cannot be reached: {e}"),
        format!(
            "check the peering with cluster {id} and its API server; the other clusters are not affected"
        ),
    )]
}

/// CreationLoopBackOff that no earlier check of this cluster explained: what to look for in the
/// remote cluster.
pub fn creation_explained(s: &Subject<'_>, c: &Cluster<'_>, found: &[Problem]) -> Vec<Finding> {
    let backing_off = c.current.is_some_and(|m| m.phase == MappingPhase::CreationLoopBackOff);
    let explained = found.iter().any(|p| p.cluster.as_deref() == Some(c.id.as_str()));
    if !backing_off || explained {
        return Vec::new();
    }
    let id = &c.id;
    let wanted = wanted_name(c.map, &s.namespace.name);
    let wanted = wanted.as_deref().unwrap_or("?");
    let local_id = s.cluster.local_cluster_id.as_deref().unwrap_or_default();
    let whose = format!("{}={}", s.names.owner_annotation, s.names.owner_value(local_id, id));
    vec![Finding::problem_of(
        id,
        format!("the remote namespace cannot be created in cluster {id} (CreationLoopBackOff)"),
        format!(
            "look at namespace {wanted} in cluster {id}: if it exists without {whose}, rename or remove it (diagnose checks this itself given --remote-kubeconfig {id}=PATH)"
        ),
    )]
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{LOCAL, REMOTE, causes, facts, subject};
    use super::*;
    use crate::liqo::Generation;

    fn run(
        check: fn(&Subject<'_>, &Cluster<'_>, &[Problem]) -> Vec<Finding>,
        f: &crate::diagnose::facts::Facts,
    ) -> Vec<String> {
        let s = subject(f);
        causes(check(&s, &s.clusters[0], &[]))
    }

    #[test]
    fn a_cluster_known_only_from_its_map_has_no_virtual_node() {
        let mut f = facts(Generation::V0_3, "Ready", "Accepted");
        assert!(run(virtual_node_present, &f).is_empty());
        f.cluster.nodes = Vec::new().into();
        assert_eq!(
            run(virtual_node_present, &f),
            ["note: cluster calm-sea has no virtual node: the peering may be gone"]
        );
    }

    #[test]
    fn a_missing_map_is_a_problem_of_its_cluster() {
        let mut f = facts(Generation::V0_3, "InProgress", "Accepted");
        f.cluster.maps.clear();
        let s = subject(&f);
        let found = map_present(&s, &s.clusters[0], &[]);
        assert!(matches!(&found[0], Finding::Problem { cluster: Some(id), .. } if id == REMOTE), "{found:?}");
        // Without a virtual node, the note says it all.
        f.cluster.nodes = Vec::new().into();
        assert!(run(map_present, &f).is_empty());
    }

    #[test]
    fn a_remote_namespace_is_ours_by_the_generation_s_annotation() {
        for (g, ours) in
            [(Generation::V0_3, LOCAL.to_string()), (Generation::V1, format!("liqo-tenant-{LOCAL}/{REMOTE}"))]
        {
            let mut f = facts(g, "Ready", "Accepted");
            let name = format!("web-{LOCAL}");
            f.namespace
                .remotes
                .insert(REMOTE.into(), RemoteFact::Exists { name: name.clone(), owner: Some(ours) });
            assert!(run(remote_namespace_ours, &f).is_empty(), "{g:?}");
            f.namespace
                .remotes
                .insert(REMOTE.into(), RemoteFact::Exists { name, owner: Some("someone".into()) });
            assert_eq!(run(remote_namespace_ours, &f).len(), 1, "{g:?}");
            // Without the local cluster id, ownership cannot be told.
            f.cluster.local_cluster_id = None;
            assert!(run(remote_namespace_ours, &f).is_empty(), "{g:?}");
        }
    }

    #[test]
    fn an_unreachable_cluster() {
        let mut f = facts(Generation::V1, "SomeFailed", "Accepted");
        f.namespace.remotes.insert(REMOTE.into(), RemoteFact::Unreachable("connection refused".into()));
        assert_eq!(
            run(remote_cluster_reachable, &f),
            ["remote cluster calm-sea cannot be reached: connection refused"]
        );
        // Not offloaded there (not selected, nothing in its map): another namespace's trouble.
        f.namespace.offloading = Some(crate::diagnose::checks::fixtures::offloading(
            serde_json::json!({"clusterSelector": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "region", "operator": "In", "values": ["us"]}]}]}}),
            serde_json::json!({}),
        ));
        f.cluster.maps.clear();
        assert_eq!(
            run(remote_cluster_reachable, &f),
            [
                "note: remote cluster calm-sea cannot be reached (connection refused); this namespace is not offloaded there"
            ]
        );
    }

    #[test]
    fn creation_loop_back_off_is_explained_once_per_cluster() {
        let f = facts(Generation::V0_3, "AllFailed", "CreationLoopBackOff");
        let s = subject(&f);
        assert_eq!(creation_explained(&s, &s.clusters[0], &[]).len(), 1);
        let other =
            |id: &str| Problem { cause: "c".into(), fix: "f".into(), cluster: Some(id.into()), check: "x" };
        // Another cluster's problem explains nothing here; this cluster's does.
        assert_eq!(creation_explained(&s, &s.clusters[0], &[other("calm")]).len(), 1);
        assert!(creation_explained(&s, &s.clusters[0], &[other(REMOTE)]).is_empty());
        assert!(run(creation_explained, &facts(Generation::V0_3, "Ready", "Accepted")).is_empty());
    }
}

//! The objects themselves: do they decode, is the NamespaceOffloading there under the one name
//! Liqo reads, and does its strategy derive a remote name that can exist.

use super::{Finding, Subject};
use crate::diagnose::facts::{ClusterFacts, NamespaceFacts};
use crate::diagnose::report::Problem;
use crate::diagnose::wording::Wording;
use crate::liqo::CLUSTER_ID_CONFIGMAP;
use crate::offloading::RemoteNameError;

/// Every NamespaceOffloading and NamespaceMap that does not decode: the field, and who leaves it
/// alone meanwhile.
pub fn objects_decode(c: &ClusterFacts, ns: &NamespaceFacts, _: &[Problem]) -> Vec<Finding> {
    let w = Wording::of(c.generation);
    ns.undecodable
        .iter()
        .chain(&c.undecodable)
        .map(|u| {
            Finding::problem(
                format!(
                    "the {} {}/{} does not decode: {}: {}; {} leaves it alone (nothing reconciled, nothing removed) until it is fixed",
                    u.kind, u.namespace, u.name, u.path, u.message, w.leaves_undecodable
                ),
                format!(
                    "correct {} (kubectl edit {} {} -n {}); is the CRD the one of this Liqo version ({})?",
                    u.path, u.plural, u.name, u.namespace, w.crds
                ),
            )
        })
        .collect()
}

/// A namespace without a NamespaceOffloading named `offloading` (unless the one it has does not
/// decode: said already).
pub fn offloading_exists(_: &ClusterFacts, ns: &NamespaceFacts, found: &[Problem]) -> Vec<Finding> {
    if ns.offloading.is_some() || !found.is_empty() {
        return Vec::new();
    }
    let namespace = &ns.name;
    vec![match ns.other_names.first() {
        Some(other) => Finding::problem(
            format!(
                "the NamespaceOffloading in {namespace} is named {other:?}: Liqo only reads the one named \"offloading\""
            ),
            format!(
                "create it again with metadata.name: offloading (kubectl get nsof {other} -n {namespace} -o yaml, rename, apply), and delete the old one"
            ),
        ),
        None => Finding::problem(
            format!("namespace {namespace} has no NamespaceOffloading: it is not offloaded"),
            format!(
                "create a NamespaceOffloading named offloading in {namespace} (or run liqoctl offload namespace {namespace})"
            ),
        ),
    }]
}

/// The remote name the strategy derives, judged as the webhook would.
pub fn remote_name_valid(s: &Subject<'_>, _: &[Problem]) -> Vec<Finding> {
    let Err(e) = &s.remote_name else { return Vec::new() };
    vec![match e {
        RemoteNameError::UnknownClusterId => Finding::Note(format!(
            "the local cluster id is unknown (no --cluster-id, no {CLUSTER_ID_CONFIGMAP} in {}): the DefaultName remote name was not checked",
            s.cluster.liqo_namespace
        )),
        RemoteNameError::DefaultNameTooLong { .. } => Finding::problem(
            e.to_string(),
            "delete the NamespaceOffloading and create it again with namespaceMappingStrategy EnforceSameName, or SelectedName with a remoteNamespaceName of at most 63 characters, or offload a namespace with a shorter name",
        ),
        _ => Finding::problem(
            e.to_string(),
            "delete the NamespaceOffloading and create it again with a valid spec.remoteNamespaceName",
        ),
    }]
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{causes, facts, subject};
    use super::*;
    use crate::diagnose::facts::Undecodable;
    use crate::liqo::Generation;

    #[test]
    fn an_object_that_does_not_decode_names_the_field_and_the_crds() {
        let mut f = facts(Generation::V1, "Ready", "Accepted");
        f.cluster.undecodable.push(Undecodable {
            kind: "NamespaceMap".into(),
            plural: "namespacemaps".into(),
            namespace: "liqo-tenant-calm-sea".into(),
            name: "calm-sea".into(),
            path: "spec.desiredMapping".into(),
            message: "invalid type".into(),
        });
        let found = objects_decode(&f.cluster, &f.namespace, &[]);
        let Finding::Problem { cause, fix, cluster } = &found[0] else { panic!("{found:?}") };
        assert_eq!(
            cause,
            "the NamespaceMap liqo-tenant-calm-sea/calm-sea does not decode: spec.desiredMapping: invalid type; diagnose leaves it alone (nothing reconciled, nothing removed) until it is fixed"
        );
        assert!(fix.ends_with("(Liqo's chart, liqo-crds)?"), "{fix}");
        assert_eq!(cluster, &None);
    }

    #[test]
    fn a_namespace_offloading_under_another_name() {
        let mut f = facts(Generation::V0_3, "Ready", "Accepted");
        f.namespace.offloading = None;
        f.namespace.other_names = vec!["mine".into()];
        assert_eq!(
            causes(offloading_exists(&f.cluster, &f.namespace, &[])),
            [
                "the NamespaceOffloading in web is named \"mine\": Liqo only reads the one named \"offloading\""
            ]
        );
        // One that does not decode was reported already.
        let said = Problem { cause: "x".into(), fix: "y".into(), cluster: None, check: "objects-decode" };
        assert!(offloading_exists(&f.cluster, &f.namespace, &[said]).is_empty());
    }

    #[test]
    fn an_unknown_cluster_id_is_a_note_and_a_long_name_a_problem() {
        let mut f = facts(Generation::V0_3, "Ready", "Accepted");
        f.cluster.local_cluster_id = None;
        let found = causes(remote_name_valid(&subject(&f), &[]));
        assert_eq!(
            found,
            [
                "note: the local cluster id is unknown (no --cluster-id, no liqo-clusterid-configmap in liqo): the DefaultName remote name was not checked"
            ]
        );
        let mut f = facts(Generation::V0_3, "Ready", "Accepted");
        f.namespace.name = "n".repeat(60);
        let found = causes(remote_name_valid(&subject(&f), &[]));
        assert!(found[0].contains("over the limit of 63"), "{found:?}");
        assert!(remote_name_valid(&subject(&facts(Generation::V1, "Ready", "Accepted")), &[]).is_empty());
    }
}

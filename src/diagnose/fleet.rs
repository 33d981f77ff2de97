//! `diagnose -A`: every NamespaceOffloading of the cluster judged by the same checks as one
//! namespace, against one reading of the cluster's facts, and summed up: one line per namespace,
//! then the problems grouped by the check that found them. Pure: the facts in, the report out.

use serde::Serialize;

use super::checks::judge;
use super::facts::{ClusterFacts, NamespaceFacts};
use super::report::Problem;
use crate::crd::MappingPhase;

/// What `diagnose -A` found, also printed as JSON with `-o json`.
#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct FleetReport {
    /// No problem in any namespace.
    pub healthy: bool,
    /// The Liqo generation judged by (`v0.3` or `v1.x`).
    pub liqo_api: String,
    pub local_cluster_id: Option<String>,
    /// One per namespace holding a NamespaceOffloading, by name.
    pub namespaces: Vec<NamespaceLine>,
    /// The problems, grouped by the check that found them (and the remote cluster they are about),
    /// in the order the checks run.
    pub groups: Vec<ProblemGroup>,
    /// How facts were read when one list for the whole cluster was refused (one sentence each).
    pub notes: Vec<String>,
}

/// One namespace in one line.
#[derive(Debug, Serialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceLine {
    pub namespace: String,
    pub phase: Option<String>,
    /// Remote clusters the generation's controller selects for it.
    pub selected: usize,
    /// Of those, the ones whose remote namespace exists (currentMapping Accepted).
    pub ready: usize,
    pub healthy: bool,
    pub problems: Vec<FleetProblem>,
}

/// A problem of one namespace, with the check that found it.
#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FleetProblem {
    pub check: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub cause: String,
    pub fix: String,
}

/// Namespaces with a problem found by the same check (about the same remote cluster, if any).
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProblemGroup {
    pub check: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub namespaces: Vec<String>,
    /// The first namespace's cause and fix, as an example of the group.
    pub cause: String,
    pub fix: String,
}

impl From<Problem> for FleetProblem {
    fn from(p: Problem) -> Self {
        Self { check: p.check, cluster: p.cluster, cause: p.cause, fix: p.fix }
    }
}

impl NamespaceLine {
    /// The first line of the first problem's cause.
    pub fn first_problem(&self) -> Option<&str> {
        self.problems.first().and_then(|p| p.cause.lines().next())
    }
}

/// Judges every namespace against the one reading of the cluster's facts.
pub fn judge_all(cluster: &ClusterFacts, namespaces: &[NamespaceFacts]) -> FleetReport {
    let mut r = FleetReport {
        liqo_api: cluster.generation.as_str().to_owned(),
        local_cluster_id: cluster.local_cluster_id.clone(),
        notes: cluster.read_notes.clone(),
        ..Default::default()
    };
    for ns in namespaces {
        let report = judge(cluster, ns);
        let selected: Vec<&str> =
            report.clusters.iter().filter(|c| c.selected).map(|c| c.cluster_id.as_str()).collect();
        let ready = selected
            .iter()
            .filter(|id| {
                let entry =
                    cluster.maps.get(**id).and_then(|m| m.status.as_ref()?.current_mapping.get(&ns.name));
                entry.is_some_and(|e| e.phase == MappingPhase::Accepted)
            })
            .count();
        r.namespaces.push(NamespaceLine {
            namespace: ns.name.clone(),
            phase: report.phase,
            selected: selected.len(),
            ready,
            healthy: report.healthy,
            problems: report.problems.into_iter().map(FleetProblem::from).collect(),
        });
    }
    r.groups = group(&r.namespaces);
    r.healthy = r.namespaces.iter().all(|n| n.healthy);
    r
}

/// The problems by (check, cluster), each group in the order its first member was found, and
/// each group's namespaces once.
fn group(lines: &[NamespaceLine]) -> Vec<ProblemGroup> {
    let mut groups: Vec<ProblemGroup> = Vec::new();
    for line in lines {
        for p in &line.problems {
            let same = |g: &&mut ProblemGroup| g.check == p.check && g.cluster == p.cluster;
            match groups.iter_mut().find(same) {
                Some(g) => {
                    if g.namespaces.last() != Some(&line.namespace) {
                        g.namespaces.push(line.namespace.clone());
                    }
                }
                None => groups.push(ProblemGroup {
                    check: p.check,
                    cluster: p.cluster.clone(),
                    namespaces: vec![line.namespace.clone()],
                    cause: p.cause.clone(),
                    fix: p.fix.clone(),
                }),
            }
        }
    }
    // The checks' own order: a group's rank is where its check first appears in any namespace.
    let rank = |g: &ProblemGroup| crate::diagnose::checks::order(g.check);
    groups.sort_by_key(|g| (rank(g), g.cluster.clone()));
    groups
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::diagnose::checks::fixtures::{REMOTE, facts, offloading};
    use crate::liqo::Generation;

    /// Three namespaces against one cluster: healthy, backing off, and a selector that matches
    /// nothing.
    fn fleet(g: Generation) -> (ClusterFacts, Vec<NamespaceFacts>) {
        let f = facts(g, "Ready", "Accepted");
        let mut cluster = f.cluster.clone();
        let healthy = f.namespace.clone();
        let mut failing = f.namespace.clone();
        failing.name = "api".into();
        let mut nomatch = f.namespace.clone();
        nomatch.name = "zz-nomatch".into();
        nomatch.offloading = Some(offloading(
            json!({"clusterSelector": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "region", "operator": "In", "values": ["us"]}]}]}}),
            json!({"offloadingPhase": "NoClusterSelected"}),
        ));
        let map = cluster.maps.get_mut(REMOTE).unwrap();
        let status = map.status.as_mut().unwrap();
        let mut entry = status.current_mapping["web"].clone();
        entry.phase = MappingPhase::CreationLoopBackOff;
        status.current_mapping.insert("api".into(), entry);
        map.spec.desired_mapping.insert("api".into(), "api-x".into());
        let mut failing_obj = failing.offloading.take().unwrap();
        failing_obj.status.as_mut().unwrap().offloading_phase = Some(crate::crd::OffloadingPhase::AllFailed);
        failing.offloading = Some(failing_obj);
        (cluster, vec![failing, healthy, nomatch])
    }

    #[test]
    fn one_line_per_namespace_and_the_problems_grouped() {
        for g in [Generation::V0_3, Generation::V1] {
            let (cluster, namespaces) = fleet(g);
            let r = judge_all(&cluster, &namespaces);
            assert!(!r.healthy);
            let lines: Vec<(&str, bool, usize, usize)> =
                r.namespaces.iter().map(|l| (l.namespace.as_str(), l.healthy, l.selected, l.ready)).collect();
            assert_eq!(
                lines,
                [("api", false, 1, 0), ("web", true, 1, 1), ("zz-nomatch", false, 0, 0)],
                "{g:?}"
            );
            assert_eq!(r.namespaces[1].first_problem(), None);
            assert_eq!(
                r.namespaces[2].first_problem(),
                Some("the clusterSelector matches none of the 1 virtual nodes:")
            );
            let groups: Vec<(&str, Option<&str>, Vec<&str>)> = r
                .groups
                .iter()
                .map(|g| (g.check, g.cluster.as_deref(), g.namespaces.iter().map(String::as_str).collect()))
                .collect();
            assert_eq!(
                groups,
                [
                    ("creation-explained", Some(REMOTE), vec!["api"]),
                    ("some-cluster-selected", None, vec!["zz-nomatch"]),
                ],
                "{g:?}"
            );
        }
    }

    #[test]
    fn a_fleet_without_problems_is_healthy() {
        let f = facts(Generation::V1, "Ready", "Accepted");
        let r = judge_all(&f.cluster, std::slice::from_ref(&f.namespace));
        assert!(r.healthy);
        assert!(r.groups.is_empty());
        let r = judge_all(&f.cluster, &[]);
        assert!(r.healthy && r.namespaces.is_empty());
    }
}

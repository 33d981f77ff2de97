//! The judgment, as a list of named checks over the facts, in the order their findings are told.
//!
//! Each check is a small pure function that returns what it found: problems (a cause and a fix)
//! and notes. The driver ([`judge`]) runs them in order, stamps each problem with the check's name
//! (and a per-cluster check's problems with their cluster), and hands each check the problems found
//! before it: a hint that only helps when nothing else explained a cluster asks for that cluster's
//! problems by their `cluster` field, never by reading another problem's prose. Wording that
//! differs per Liqo generation comes from [`Wording`] and `crate::liqo::Names`; no check branches
//! on the generation.
//!
//! - [`leases`]: the installs of the reconcile loop;
//! - [`objects`]: do the objects decode, is the NamespaceOffloading there, its remote name;
//! - [`selector`]: the clusterSelector, and what it selects;
//! - [`clusters`]: each remote cluster (virtual node, NamespaceMap, remote namespace);
//! - [`status`]: what the controller wrote, and a failed phase nothing else explained.

pub mod clusters;
pub mod leases;
pub mod objects;
pub mod selector;
pub mod status;

use super::facts::{ClusterFacts, NamespaceFacts, RemoteFact};
use super::report::{Problem, Report, describe};
use super::wording::Wording;
use crate::crd::{NamespaceMap, NamespaceOffloading, NamespaceOffloadingStatus, RemoteNamespaceStatus};
use crate::liqo::Names;
use crate::offloading::names::RemoteNameError;
use crate::offloading::rules::{derived_name, judge_selector};
use crate::offloading::{Context, Verdict, VirtualNode};

/// One thing a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Something wrong, with its cause and fix, and the remote cluster it is about if it is.
    Problem { cause: String, fix: String, cluster: Option<String> },
    /// Worth saying, no problem by itself.
    Note(String),
}

impl Finding {
    pub fn problem(cause: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::Problem { cause: cause.into(), fix: fix.into(), cluster: None }
    }

    /// A problem about the remote cluster `id`.
    pub fn problem_of(id: &str, cause: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::Problem { cause: cause.into(), fix: fix.into(), cluster: Some(id.to_owned()) }
    }
}

/// A named check; `run` is given the problems found by the checks before it.
pub struct Check<F> {
    pub name: &'static str,
    pub run: F,
}

/// A check of the facts alone: it runs whether or not there is a NamespaceOffloading.
pub type FactsCheck = Check<fn(&ClusterFacts, &NamespaceFacts, &[Problem]) -> Vec<Finding>>;
/// A check of the NamespaceOffloading.
pub type ObjectCheck = Check<fn(&Subject<'_>, &[Problem]) -> Vec<Finding>>;
/// A check of one remote cluster, run for each in turn.
pub type ClusterCheck = Check<fn(&Subject<'_>, &Cluster<'_>, &[Problem]) -> Vec<Finding>>;

/// First, with or without an object.
pub const ON_FACTS: &[FactsCheck] = &[
    Check { name: "one-install-reconciles", run: leases::one_install_reconciles },
    Check { name: "objects-decode", run: objects::objects_decode },
    Check { name: "offloading-exists", run: objects::offloading_exists },
];

/// Then, when there is a NamespaceOffloading: the object, before its clusters.
pub const ON_OBJECT: &[ObjectCheck] = &[
    Check { name: "kubeconfigs-usable", run: status::kubeconfigs_usable },
    Check { name: "selector-valid", run: selector::selector_valid },
    Check { name: "selector-looked-at-again", run: selector::selector_looked_at_again },
    Check { name: "remote-name-valid", run: objects::remote_name_valid },
];

/// Then [`clusters::CHECKS`] for each remote cluster; last, what the whole status says.
pub const AFTER_CLUSTERS: &[ObjectCheck] = &[
    Check { name: "some-cluster-selected", run: selector::some_cluster_selected },
    Check { name: "status-up-to-date", run: status::status_up_to_date },
    Check { name: "status-present", run: status::status_present },
    Check { name: "phase-explained", run: status::phase_explained },
];

/// Where a check runs among all the checks (by name): its findings' place in a report. Unknown
/// names come last.
pub fn order(check: &str) -> usize {
    let names = ON_FACTS
        .iter()
        .map(|c| c.name)
        .chain(ON_OBJECT.iter().map(|c| c.name))
        .chain(clusters::CHECKS.iter().map(|c| c.name))
        .chain(AFTER_CLUSTERS.iter().map(|c| c.name));
    names.into_iter().position(|n| n == check).unwrap_or(usize::MAX)
}

/// What the checks found so far, in order.
#[derive(Default)]
struct Found {
    problems: Vec<Problem>,
    notes: Vec<String>,
}

impl Found {
    /// Adds a check's findings; a per-cluster check's problems are about `cluster`.
    fn add(&mut self, check: &'static str, cluster: Option<&str>, findings: Vec<Finding>) {
        for f in findings {
            match f {
                Finding::Problem { cause, fix, cluster: of } => {
                    let cluster = of.or_else(|| cluster.map(str::to_owned));
                    self.problems.push(Problem { cause, fix, cluster, check });
                }
                Finding::Note(n) => self.notes.push(n),
            }
        }
    }
}

/// Turns the facts about one namespace into the report: the state found, then every check's
/// findings, in order. Pure. The cluster's facts are borrowed, so that one reading of them serves
/// every namespace judged.
pub fn judge(cluster: &ClusterFacts, namespace: &NamespaceFacts) -> Report {
    let subject = Subject::new(cluster, namespace);
    let mut found = Found::default();
    for c in ON_FACTS {
        found.add(c.name, None, (c.run)(cluster, namespace, &found.problems));
    }
    if let Some(s) = &subject {
        for c in ON_OBJECT {
            found.add(c.name, None, (c.run)(s, &found.problems));
        }
        for each in &s.clusters {
            for c in clusters::CHECKS {
                found.add(c.name, Some(&each.id), (c.run)(s, each, &found.problems));
            }
        }
        for c in AFTER_CLUSTERS {
            found.add(c.name, None, (c.run)(s, &found.problems));
        }
    }
    let mut r = describe(cluster, namespace, subject.as_ref());
    r.notes = found.notes;
    r.problems = found.problems;
    r.healthy = r.problems.is_empty();
    r
}

/// A NamespaceOffloading and what follows from the facts about it, worked out once for every
/// check: the webhook's verdict on its selector, its remote name, and each remote cluster.
pub struct Subject<'a> {
    pub cluster: &'a ClusterFacts,
    pub namespace: &'a NamespaceFacts,
    pub names: &'static Names,
    pub wording: &'static Wording,
    pub offloading: &'a NamespaceOffloading,
    /// Its status, empty when it has none.
    pub status: NamespaceOffloadingStatus,
    /// The clusterSelector's part of the webhook's verdict, by the generation's rule.
    pub selector: Verdict,
    /// The remote namespace name its spec derives.
    pub remote_name: Result<String, RemoteNameError>,
    /// Every remote cluster known (virtual nodes, maps, conditions), by id.
    pub clusters: Vec<Cluster<'a>>,
}

/// One remote cluster, as the facts show it for the subject's namespace.
pub struct Cluster<'a> {
    pub id: String,
    pub node: Option<&'a VirtualNode>,
    /// Whether the generation's controller selects it (never, with a selector it refuses).
    pub selected: bool,
    /// Its NamespaceMap, as the generation's controller finds it.
    pub map: Option<&'a NamespaceMap>,
    /// That map's currentMapping entry for the namespace.
    pub current: Option<&'a RemoteNamespaceStatus>,
    /// What the remote cluster itself says, when it could be asked.
    pub remote: Option<&'a RemoteFact>,
    /// Its tenant namespace: the one labelled for it, else the conventional name.
    pub tenant: String,
}

impl<'a> Subject<'a> {
    /// `None` when the namespace has no NamespaceOffloading named `offloading` that decodes.
    pub fn new(cluster: &'a ClusterFacts, namespace: &'a NamespaceFacts) -> Option<Self> {
        let offloading = namespace.offloading.as_ref()?;
        let generation = cluster.generation;
        let status = offloading.status.clone().unwrap_or_default();
        let local_id = cluster.local_cluster_id.as_deref();
        let ctx = Context { cluster_id: local_id, virtual_nodes: Some(&cluster.nodes), generation };
        let selector = judge_selector(&offloading.spec, &ctx);
        let chosen = cluster.nodes.selected(generation, offloading.spec.cluster_selector.as_ref());
        let clusters = cluster
            .cluster_ids(status.remote_namespaces_conditions.keys())
            .into_iter()
            .map(|id| {
                let node = cluster.nodes.iter().position(|n| n.cluster_id == id);
                let map = cluster.maps.get(&id);
                Cluster {
                    node: node.map(|i| &cluster.nodes[i]),
                    selected: selector.allowed() && node.is_some_and(|i| chosen.contains(i)),
                    map,
                    current: map.and_then(|m| m.status.as_ref()?.current_mapping.get(&namespace.name)),
                    remote: namespace.remotes.get(&id),
                    tenant: cluster.tenant_of(&id),
                    id,
                }
            })
            .collect();
        Some(Self {
            cluster,
            namespace,
            names: generation.names(),
            wording: Wording::of(generation),
            offloading,
            status,
            remote_name: derived_name(&offloading.spec, &namespace.name, local_id),
            selector,
            clusters,
        })
    }

    /// The status's offloadingPhase.
    pub fn phase(&self) -> Option<&str> {
        self.status.offloading_phase.as_ref().map(|p| p.as_str())
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;

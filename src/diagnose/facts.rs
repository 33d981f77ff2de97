//! What `diagnose` reads, as plain data: no IO here, so that the checks can be tested on facts
//! written by hand for either Liqo generation.
//!
//! The facts are split by how far they reach: [`ClusterFacts`] hold what the cluster says to every
//! namespace (the generation, the local cluster id, the virtual nodes, the NamespaceMaps, the
//! Leases), read once however many namespaces are judged; [`NamespaceFacts`] hold what concerns one
//! namespace (its NamespaceOffloading, Events, remote namespaces).

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use crate::crd::{NamespaceMap, NamespaceOffloading, Shared};
use crate::liqo::{Generation, tenant_namespace};
use crate::offloading::VirtualNodes;
use crate::reconcile::installs::Seniority;

/// Everything known about one namespace.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub cluster: ClusterFacts,
    pub namespace: NamespaceFacts,
}

/// What the cluster says, the same for every namespace.
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    pub generation: Generation,
    pub liqo_namespace: String,
    pub local_cluster_id: Option<String>,
    /// The tenant namespace of each remote cluster, found by the generation's labels.
    pub tenants: BTreeMap<String, String>,
    /// The remote clusters as the generation's controller matches them.
    pub nodes: VirtualNodes,
    /// The NamespaceMap of each remote cluster, as the generation's controller finds it.
    pub maps: BTreeMap<String, NamespaceMap>,
    /// NamespaceMaps that do not decode.
    pub undecodable: Vec<Undecodable>,
    /// The reconcile Leases of every install that could be read, and when.
    pub leases: Vec<LeaseFact>,
    pub looked_at: Option<Timestamp>,
    /// What could not be read in one list for every namespace, and how it was read instead (one
    /// sentence each): `diagnose -A` says so beside its verdict.
    pub read_notes: Vec<String>,
}

/// What one namespace holds, and what the remote clusters say of it.
#[derive(Debug, Clone, Default)]
pub struct NamespaceFacts {
    pub name: String,
    /// The NamespaceOffloading named `offloading`, when there is one that decodes.
    pub offloading: Option<NamespaceOffloading>,
    /// Names of the other NamespaceOffloadings of the namespace.
    pub other_names: Vec<String>,
    /// NamespaceOffloadings that do not decode.
    pub undecodable: Vec<Undecodable>,
    /// Events about the NamespaceOffloading, oldest first.
    pub events: Vec<EventFact>,
    /// What each reachable remote cluster says of the remote namespace.
    pub remotes: BTreeMap<String, RemoteFact>,
    /// Why a remote cluster's kubeconfig could not be used, one sentence each.
    pub unusable_kubeconfigs: Vec<String>,
}

/// One install's reconcile Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseFact {
    pub seniority: Seniority,
    pub holder: Option<String>,
    pub renew_time: Option<Timestamp>,
    pub duration_seconds: Option<i32>,
}

/// An object that does not decode as the type it claims to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    pub kind: String,
    pub plural: String,
    pub namespace: String,
    pub name: String,
    /// The field that does not fit, and why.
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFact {
    pub type_: String,
    pub reason: String,
    pub note: String,
}

/// What a remote cluster says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteFact {
    /// It answered; no remote namespace name was known to look for.
    Reachable,
    /// The remote namespace does not exist.
    Missing {
        name: String,
    },
    /// It exists, with this value of the generation's ownership annotation.
    Exists {
        name: String,
        owner: Option<String>,
    },
    Unreachable(String),
}

impl ClusterFacts {
    /// Every remote cluster id known: virtual nodes, maps and the conditions of a status.
    pub fn cluster_ids<'a>(&self, conditions: impl Iterator<Item = &'a Shared>) -> Vec<String> {
        let mut ids: Vec<String> = self.nodes.iter().map(|n| n.cluster_id.clone()).collect();
        ids.extend(self.maps.keys().cloned());
        ids.extend(conditions.map(|id| id.to_string()));
        ids.sort();
        ids.dedup();
        ids
    }

    /// The tenant namespace of a remote cluster: the one labelled for it, else the conventional
    /// name.
    pub fn tenant_of(&self, id: &str) -> String {
        self.tenants.get(id).cloned().unwrap_or_else(|| tenant_namespace(id))
    }
}

/// The remote name a map has for `namespace`, else the one it wants.
pub fn wanted_name(map: Option<&NamespaceMap>, namespace: &str) -> Option<String> {
    let map = map?;
    map.status
        .as_ref()
        .and_then(|s| s.current_mapping.get(namespace))
        .map(|s| s.remote_namespace.clone())
        .or_else(|| map.spec.desired_mapping.get(namespace).cloned())
}

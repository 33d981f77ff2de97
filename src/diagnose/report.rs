//! What `diagnose` says: the state it found ([`describe`]) and the problems and notes the checks
//! found. Printed as text or, with `-o json`, as this structure itself.

use serde::Serialize;

use super::checks::{Cluster, Subject};
use super::facts::{ClusterFacts, LeaseFact, NamespaceFacts, RemoteFact};
use crate::liqo::SCHEDULING_ENABLED;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

/// What `diagnose` found, also printed as JSON with `-o json`.
#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub namespace: String,
    pub healthy: bool,
    /// The Liqo generation judged by (`v0.3` or `v1.x`).
    pub liqo_api: String,
    pub phase: Option<String>,
    pub remote_namespace_name: Option<String>,
    pub mapping_strategy: Option<String>,
    pub local_cluster_id: Option<String>,
    pub scheduling_enabled: Option<String>,
    pub clusters: Vec<ClusterReport>,
    pub events: Vec<String>,
    pub notes: Vec<String>,
    pub problems: Vec<Problem>,
    /// The reconcile loop's Leases (one per install), as far as they could be read.
    pub reconcile_leases: Vec<LeaseReport>,
}

/// One install's reconcile Lease, as `diagnose` saw it.
#[derive(Debug, Serialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LeaseReport {
    /// `namespace/name`.
    pub lease: String,
    pub holder: Option<String>,
    /// Seconds from its renewTime to this machine's clock when `diagnose` read it.
    pub renewed_seconds_ago: Option<i64>,
    pub lease_duration_seconds: Option<i32>,
    /// Held, and renewed within its duration (by this machine's clock).
    pub live: bool,
    /// The live install that reconciles (the oldest Lease); the other live ones stand by.
    pub reconciles: bool,
}

#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReport {
    pub cluster_id: String,
    pub virtual_node: Option<String>,
    pub selected: bool,
    pub conditions: Vec<String>,
    pub desired: Option<String>,
    pub current: Option<String>,
    /// What the remote cluster says of the remote namespace, when it could be asked.
    pub remote: Option<String>,
}

/// Something wrong, with its cause and the fix.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Problem {
    pub cause: String,
    pub fix: String,
    /// The remote cluster it is about, when it is about one.
    #[serde(skip)]
    pub cluster: Option<String>,
    /// The name of the check that found it.
    #[serde(skip)]
    pub check: &'static str,
}

/// The state found, before any check: the NamespaceOffloading's status and spec, the Events, each
/// remote cluster, the Leases.
pub fn describe(cluster: &ClusterFacts, namespace: &NamespaceFacts, subject: Option<&Subject<'_>>) -> Report {
    let mut r = Report {
        namespace: namespace.name.clone(),
        liqo_api: cluster.generation.as_str().to_owned(),
        reconcile_leases: lease_reports(&cluster.leases, cluster.looked_at),
        ..Default::default()
    };
    let Some(s) = subject else { return r };
    r.phase = s.phase().map(str::to_owned);
    r.remote_namespace_name = s.status.remote_namespace_name.clone().or_else(|| s.remote_name.clone().ok());
    r.mapping_strategy = Some(s.offloading.spec.namespace_mapping_strategy.as_str().to_owned());
    r.scheduling_enabled = s.offloading.annotations().get(SCHEDULING_ENABLED).cloned();
    r.local_cluster_id = cluster.local_cluster_id.clone();
    r.events = namespace.events.iter().map(|e| format!("{} {}: {}", e.type_, e.reason, e.note)).collect();
    r.clusters = s.clusters.iter().map(|c| cluster_report(s, c)).collect();
    r
}

/// One remote cluster: its virtual node, whether it is selected, its conditions, its map's entries
/// and what it says itself.
fn cluster_report(s: &Subject<'_>, c: &Cluster<'_>) -> ClusterReport {
    let conditions = s.status.remote_namespaces_conditions.get(c.id.as_str());
    let owner_key = s.names.owner_annotation;
    ClusterReport {
        cluster_id: c.id.clone(),
        virtual_node: c.node.map(|n| n.name.clone()),
        selected: c.selected,
        conditions: conditions
            .map(|cs| {
                cs.iter()
                    .map(|k| {
                        let reason = k.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
                        format!("{}={}{reason}", k.type_, k.status)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        desired: c.map.and_then(|m| m.spec.desired_mapping.get(&s.namespace.name).cloned()),
        current: c.current.map(|s| format!("{} {}", s.remote_namespace, s.phase.as_str())),
        remote: c.remote.map(|remote| match remote {
            RemoteFact::Exists { name, owner: Some(a) } => {
                format!("namespace {name} exists, {owner_key}={a}")
            }
            RemoteFact::Exists { name, owner: None } => {
                format!("namespace {name} exists, without {owner_key}")
            }
            RemoteFact::Missing { name } => format!("namespace {name} does not exist yet"),
            RemoteFact::Reachable => "reachable".into(),
            RemoteFact::Unreachable(e) => format!("unreachable: {e}"),
        }),
    }
}

/// The Leases as reported: which are live at `now` (by this machine's clock: a one-time look cannot
/// watch a record change), and which one reconciles: the oldest live one (they come oldest first).
pub fn lease_reports(leases: &[LeaseFact], now: Option<Timestamp>) -> Vec<LeaseReport> {
    let mut out: Vec<LeaseReport> = leases
        .iter()
        .map(|l| {
            let ago = match (l.renew_time, now) {
                (Some(t), Some(now)) => Some(now.duration_since(t).as_secs().max(0)),
                _ => None,
            };
            let live = l.holder.is_some()
                && match (ago, l.duration_seconds) {
                    (Some(ago), Some(d)) => ago <= i64::from(d),
                    _ => false,
                };
            LeaseReport {
                lease: l.seniority.key(),
                holder: l.holder.clone(),
                renewed_seconds_ago: ago,
                lease_duration_seconds: l.duration_seconds,
                live,
                reconciles: false,
            }
        })
        .collect();
    if let Some(first) = out.iter_mut().find(|l| l.live) {
        first.reconciles = true;
    }
    out
}

#![allow(dead_code, clippy::all)]
//! TEMPORARY: the judge as it was before the split, to compare outputs.
use crate::crd::{MappingPhase, NamespaceMap, NamespaceOffloading};
pub use crate::diagnose::facts::{EventFact, LeaseFact, RemoteFact, Undecodable};
use crate::liqo::REMOTE_CLUSTER_ID_LABEL;
use crate::liqo::v0_3::REMOTE_NAMESPACE_ANNOTATION;
use crate::liqo::v1::{
    MANAGED_BY_ANNOTATION, REMOTE_ID_LABEL, REPLICATION_LABEL,
    TENANT_NAMESPACE_LABEL as V1_TENANT_NAMESPACE_LABEL,
};
use crate::liqo::{CLUSTER_ID_CONFIGMAP, SCHEDULING_ENABLED, tenant_namespace};
use crate::offloading::names::RemoteNameError;
use crate::offloading::rules::{derived_name, judge_selector};
use crate::offloading::{Generation, VirtualNode, VirtualNodes, aggregate, selector};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;
use std::collections::BTreeMap;
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

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Problem {
    pub cause: String,
    pub fix: String,
}

// ---------------------------------------------------------------------------------------------
// Facts

/// Everything `judge` needs, read once.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub generation: Generation,
    pub namespace: String,
    pub liqo_namespace: String,
    /// The NamespaceOffloading named `offloading`, when there is one that decodes.
    pub offloading: Option<NamespaceOffloading>,
    /// Names of the other NamespaceOffloadings of the namespace.
    pub other_names: Vec<String>,
    /// Objects that do not decode as the type they claim to be.
    pub undecodable: Vec<Undecodable>,
    pub local_cluster_id: Option<String>,
    /// Events about the NamespaceOffloading, oldest first.
    pub events: Vec<EventFact>,
    /// The tenant namespace of each remote cluster, found by the generation's labels.
    pub tenants: BTreeMap<String, String>,
    /// The remote clusters as the generation's controller matches them.
    pub nodes: VirtualNodes,
    /// The NamespaceMap of each remote cluster, as the generation's controller finds it.
    pub maps: BTreeMap<String, NamespaceMap>,
    /// What each reachable remote cluster says of the remote namespace.
    pub remotes: BTreeMap<String, RemoteFact>,
    /// Things worth saying that are no problem by themselves.
    pub notes: Vec<String>,
    /// The reconcile Leases of every install that could be read, and when.
    pub leases: Vec<LeaseFact>,
    pub looked_at: Option<Timestamp>,
}

/// Every remote cluster id known: virtual nodes, maps and conditions.
fn cluster_ids<'a>(
    nodes: &[VirtualNode],
    maps: &BTreeMap<String, NamespaceMap>,
    conditions: impl Iterator<Item = &'a crate::crd::Shared>,
) -> Vec<String> {
    let mut ids: Vec<String> = nodes.iter().map(|n| n.cluster_id.clone()).collect();
    ids.extend(maps.keys().cloned());
    ids.extend(conditions.map(|id| id.to_string()));
    ids.sort();
    ids.dedup();
    ids
}

/// The tenant namespace of a remote cluster: the one labelled for it, else the conventional name.
fn tenant_of(tenants: &BTreeMap<String, String>, id: &str) -> String {
    tenants.get(id).cloned().unwrap_or_else(|| tenant_namespace(id))
}

/// The remote name the map has for `namespace`, else the one it wants.
fn wanted_name(map: Option<&NamespaceMap>, namespace: &str) -> Option<String> {
    let map = map?;
    map.status
        .as_ref()
        .and_then(|s| s.current_mapping.get(namespace))
        .map(|s| s.remote_namespace.clone())
        .or_else(|| map.spec.desired_mapping.get(namespace).cloned())
}

/// The annotation that tells the generation's own remote namespaces from squatters.
pub fn owner_annotation(generation: Generation) -> &'static str {
    match generation {
        Generation::V0_3 => REMOTE_NAMESPACE_ANNOTATION,
        Generation::V1 => MANAGED_BY_ANNOTATION,
    }
}

/// Whether the annotation's value says the namespace belongs to the local cluster: v0.3 writes the
/// local cluster id; v1.x the key of the provider's copy of the NamespaceMap, which lives in the
/// provider's tenant namespace for the local cluster.
fn owned_by(generation: Generation, value: &str, local_id: &str) -> bool {
    match generation {
        Generation::V0_3 => value == local_id,
        Generation::V1 => value.starts_with(&format!("{}/", tenant_namespace(local_id))),
    }
}

/// The Leases as reported: which are live at `now` (by this machine's clock: a one-time look
/// cannot watch a record change), which one reconciles, and a note when several installs are live.
fn judge_leases(leases: &[LeaseFact], now: Option<Timestamp>, notes: &mut Vec<String>) -> Vec<LeaseReport> {
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
    // Sorted oldest first: the first live one reconciles.
    if let Some(first) = out.iter_mut().find(|l| l.live) {
        first.reconciles = true;
    }
    let live: Vec<&str> = out.iter().filter(|l| l.live).map(|l| l.lease.as_str()).collect();
    if live.len() > 1 {
        notes.push(format!(
            "{} installs of offloading-webhook run a reconcile loop on this cluster (Leases {}): only the oldest, {}, reconciles, the others stand by; uninstall all but one",
            live.len(),
            live.join(", "),
            live[0]
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Judge

/// Who keeps NamespaceMaps and status, in the words of a fix.
fn controller(generation: Generation) -> &'static str {
    match generation {
        Generation::V0_3 => "the reconcile loop (offloading-webhook serve, or Liqo)",
        Generation::V1 => "Liqo's controller-manager",
    }
}

/// Turns the facts into the report: state, notes, and each problem with its cause and fix. Pure.
pub fn judge(f: &Facts) -> Report {
    let g = f.generation;
    let namespace = f.namespace.as_str();
    let mut r =
        Report { namespace: namespace.to_owned(), liqo_api: g.as_str().to_owned(), ..Default::default() };
    r.reconcile_leases = judge_leases(&f.leases, f.looked_at, &mut r.notes);
    for u in &f.undecodable {
        r.problems.push(Problem {
            cause: format!(
                "the {} {}/{} does not decode: {}: {}; {} leaves it alone (nothing reconciled, nothing removed) until it is fixed",
                u.kind, u.namespace, u.name, u.path, u.message,
                match g {
                    Generation::V0_3 => "the reconcile loop",
                    Generation::V1 => "diagnose",
                }
            ),
            fix: format!(
                "correct {} (kubectl edit {} {} -n {}); is the CRD the one of this Liqo version ({})?",
                u.path,
                u.plural,
                u.name,
                u.namespace,
                match g {
                    Generation::V0_3 => "offloading-webhook crds",
                    Generation::V1 => "Liqo's chart, liqo-crds",
                }
            ),
        });
    }
    let Some(obj) = &f.offloading else {
        match f.other_names.first() {
            // Reported as undecodable already.
            _ if !r.problems.is_empty() => {}
            Some(other) => r.problems.push(Problem {
                cause: format!(
                    "the NamespaceOffloading in {namespace} is named {other:?}: Liqo only reads the one named \"offloading\""
                ),
                fix: format!("create it again with metadata.name: offloading (kubectl get nsof {other} -n {namespace} -o yaml, rename, apply), and delete the old one"),
            }),
            None => r.problems.push(Problem {
                cause: format!("namespace {namespace} has no NamespaceOffloading: it is not offloaded"),
                fix: format!("create a NamespaceOffloading named offloading in {namespace} (or run liqoctl offload namespace {namespace})"),
            }),
        }
        return r;
    };

    let status = obj.status.clone().unwrap_or_default();
    r.phase = status.offloading_phase.as_ref().map(|p| p.as_str().to_owned());
    r.remote_namespace_name = status.remote_namespace_name.clone();
    r.mapping_strategy = Some(obj.spec.namespace_mapping_strategy.as_str().to_owned());
    r.scheduling_enabled = obj.annotations().get(SCHEDULING_ENABLED).cloned();
    r.local_cluster_id = f.local_cluster_id.clone();
    r.events = f.events.iter().map(|e| format!("{} {}: {}", e.type_, e.reason, e.note)).collect();
    r.notes.extend(f.notes.iter().cloned());

    // The object itself: selector and derived name, judged as the webhook would.
    let ctx = crate::offloading::Context {
        cluster_id: f.local_cluster_id.as_deref(),
        virtual_nodes: Some(&f.nodes),
        generation: g,
    };
    let sel = judge_selector(&obj.spec, &ctx);
    let sel_ok = sel.allowed();
    if !sel_ok {
        let message = aggregate(&sel.errors);
        let (cause, fix) = match g {
            Generation::V0_3 => {
                let shown = r
                    .scheduling_enabled
                    .clone()
                    .unwrap_or_else(|| format!("Invalid Cluster Selector : {message}"));
                (
                    format!("the clusterSelector is invalid, so no cluster is selected; the annotation {SCHEDULING_ENABLED} says: {shown}"),
                    "correct spec.clusterSelector as the message says and apply it again".to_owned(),
                )
            }
            Generation::V1 if obj.spec.cluster_selector.is_none() => (
                format!("the clusterSelector has no nodeSelectorTerms, so no cluster is selected, ever: {message}"),
                format!("kubectl patch nsof offloading -n {namespace} --type merge -p '{{\"spec\":{{\"clusterSelector\":{{\"nodeSelectorTerms\":[]}}}}}}' (every cluster), or give the terms you mean"),
            ),
            Generation::V1 => (
                format!("the clusterSelector is invalid, so Liqo selects no cluster (Event Invalid, never retried): {message}"),
                "correct spec.clusterSelector as the message says and apply it again (the change makes Liqo look again)".to_owned(),
            ),
        };
        r.problems.push(Problem { cause, fix });
    }
    // Works by luck today: said, not counted as a problem.
    r.notes.extend(sel.warnings.iter().cloned());
    // Liqo v1.x never retries after an Invalid Event: it stays NoClusterSelected even once the
    // selector would work.
    if g == Generation::V1
        && sel_ok
        && r.phase.as_deref() == Some("NoClusterSelected")
        && let Some(e) = f.events.iter().rev().find(|e| e.type_ == "Warning" && e.reason == "Invalid")
    {
        r.problems.push(Problem {
            cause: format!(
                "Liqo's controller refused the clusterSelector ({}) and does not retry, although it reads well with the virtual nodes known now",
                e.note
            ),
            fix: "apply any change to spec.clusterSelector (or delete and create the NamespaceOffloading) to make Liqo look again".into(),
        });
    }
    match derived_name(&obj.spec, namespace, f.local_cluster_id.as_deref()) {
        Ok(name) => {
            r.remote_namespace_name.get_or_insert(name);
        }
        Err(RemoteNameError::UnknownClusterId) => r.notes.push(format!(
            "the local cluster id is unknown (no --cluster-id, no {CLUSTER_ID_CONFIGMAP} in {}): the DefaultName remote name was not checked",
            f.liqo_namespace
        )),
        Err(e @ RemoteNameError::DefaultNameTooLong { .. }) => r.problems.push(Problem {
            cause: e.to_string(),
            fix: "delete the NamespaceOffloading and create it again with namespaceMappingStrategy EnforceSameName, or SelectedName with a remoteNamespaceName of at most 63 characters, or offload a namespace with a shorter name".into(),
        }),
        Err(e) => r.problems.push(Problem {
            cause: e.to_string(),
            fix: "delete the NamespaceOffloading and create it again with a valid spec.remoteNamespaceName".into(),
        }),
    }

    let selector = obj.spec.cluster_selector.as_ref();
    let local_id = f.local_cluster_id.clone().unwrap_or_default();
    let owner_key = owner_annotation(g);
    let undecodable_maps: Vec<&str> =
        f.undecodable.iter().filter(|u| u.kind == "NamespaceMap").map(|u| u.namespace.as_str()).collect();
    let chosen = f.nodes.selected(g, selector);
    for id in cluster_ids(&f.nodes, &f.maps, status.remote_namespaces_conditions.keys()) {
        let node = f.nodes.iter().position(|n| n.cluster_id == id);
        let mut c = ClusterReport {
            cluster_id: id.clone(),
            virtual_node: node.map(|i| f.nodes[i].name.clone()),
            selected: sel_ok && node.is_some_and(|i| chosen.contains(i)),
            ..Default::default()
        };
        c.conditions = status
            .remote_namespaces_conditions
            .get(id.as_str())
            .map(|cs| {
                cs.iter()
                    .map(|k| {
                        format!(
                            "{}={}{}",
                            k.type_,
                            k.status,
                            k.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let map = f.maps.get(&id);
        c.desired = map.and_then(|m| m.spec.desired_mapping.get(namespace).cloned());
        let current = map.and_then(|m| m.status.as_ref()?.current_mapping.get(namespace).cloned());
        c.current = current.as_ref().map(|s| format!("{} {}", s.remote_namespace, s.phase.as_str()));
        if node.is_none() {
            r.notes.push(format!("cluster {id} has no virtual node: the peering may be gone"));
        }
        // A map that does not decode is reported as such already.
        let tenant = tenant_of(&f.tenants, &id);
        if map.is_none() && node.is_some() && !undecodable_maps.contains(&tenant.as_str()) {
            let (cause, fix) = match g {
                Generation::V0_3 => (
                    format!("cluster {id} has no NamespaceMap in {tenant}"),
                    format!("check that {} is running", controller(g)),
                ),
                Generation::V1 if !f.tenants.contains_key(&id) => (
                    format!(
                        "cluster {id} has no tenant namespace (labelled {V1_TENANT_NAMESPACE_LABEL}=true and {REMOTE_CLUSTER_ID_LABEL}={id}), so Liqo makes no NamespaceMap for it"
                    ),
                    format!(
                        "the peering with cluster {id} is incomplete: check it (liqoctl info peer {id}), or label its tenant namespace"
                    ),
                ),
                Generation::V1 => (
                    format!(
                        "cluster {id} has no NamespaceMap that Liqo reads (named {id}, labelled {REPLICATION_LABEL}=true and {REMOTE_ID_LABEL}={id}, in {tenant})"
                    ),
                    format!(
                        "Liqo's VirtualNode controller creates it: check that liqo-controller-manager is running and that the VirtualNode of cluster {id} exists (kubectl get virtualnodes -A)"
                    ),
                ),
            };
            r.problems.push(Problem { cause, fix });
        }
        match f.remotes.get(&id) {
            Some(RemoteFact::Exists { name, owner }) => {
                c.remote = Some(match owner {
                    Some(a) => format!("namespace {name} exists, {owner_key}={a}"),
                    None => format!("namespace {name} exists, without {owner_key}"),
                });
                let ours = owner.as_deref().is_some_and(|a| owned_by(g, a, &local_id));
                if !ours && !local_id.is_empty() {
                    let whose = match owner {
                        Some(a) => match g {
                            Generation::V0_3 => format!("is owned by cluster id {a} ({owner_key})"),
                            Generation::V1 => {
                                format!("is managed by NamespaceMap {a} ({owner_key}), not by this cluster's")
                            }
                        },
                        None => {
                            format!("exists without the annotation {owner_key}, so Liqo did not create it")
                        }
                    };
                    r.problems.push(Problem {
                        cause: format!("the remote namespace {name:?} in cluster {id} {whose}: the remote namespace cannot be created (CreationLoopBackOff)"),
                        fix: format!("rename or remove namespace {name} in cluster {id}, or offload with namespaceMappingStrategy SelectedName and another remoteNamespaceName"),
                    });
                }
            }
            Some(RemoteFact::Missing { name }) => {
                c.remote = Some(format!("namespace {name} does not exist yet"))
            }
            Some(RemoteFact::Reachable) => c.remote = Some("reachable".into()),
            // Followed by the split judge: unreachable is this namespace's problem only where it is
            // offloaded (selected, or an entry in the map).
            Some(RemoteFact::Unreachable(e)) if !c.selected && wanted_name(map, namespace).is_none() => {
                c.remote = Some(format!("unreachable: {e}"));
                r.notes.push(format!(
                    "remote cluster {id} cannot be reached ({e}); this namespace is not offloaded there"
                ));
            }
            Some(RemoteFact::Unreachable(e)) => {
                c.remote = Some(format!("unreachable: {e}"));
                r.problems.push(Problem {
                    cause: format!("remote cluster {id} cannot be reached: {e}"),
                    fix: format!("check the peering with cluster {id} and its API server; the other clusters are not affected"),
                });
            }
            None => {}
        }
        if current.as_ref().is_some_and(|s| s.phase == MappingPhase::CreationLoopBackOff)
            && !r.problems.iter().any(|p| p.cause.contains(&format!("cluster {id}")))
        {
            let wanted = wanted_name(map, namespace);
            let wanted = wanted.as_deref().unwrap_or("?");
            let whose = match g {
                Generation::V0_3 => format!("{owner_key}={local_id}"),
                Generation::V1 => format!("{owner_key}={}/{id}", tenant_namespace(&local_id)),
            };
            r.problems.push(Problem {
                cause: format!("the remote namespace cannot be created in cluster {id} (CreationLoopBackOff)"),
                fix: format!(
                    "look at namespace {wanted} in cluster {id}: if it exists without {whose}, rename or remove it (diagnose checks this itself given --remote-kubeconfig {id}=PATH)"
                ),
            });
        }
        r.clusters.push(c);
    }

    // NoClusterSelected with a valid selector: which requirement failed on which cluster.
    if sel_ok && !r.clusters.iter().any(|c| c.selected) && obj.metadata.deletion_timestamp.is_none() {
        if f.nodes.is_empty() {
            r.problems.push(Problem {
                cause: "no remote cluster is known (no virtual node): nothing can be selected".into(),
                fix:
                    "peer with a remote cluster first (liqoctl peer), then check that its virtual node exists"
                        .into(),
            });
        } else {
            let mut lines = Vec::new();
            for n in f.nodes.iter() {
                if let Err(misses) = selector::explain(selector, &n.facts()) {
                    for (i, miss) in misses.iter().enumerate() {
                        lines.push(match miss {
                            Some(u) => format!(
                                "cluster {} (node {}): {} wants {}, but {}",
                                n.cluster_id, n.name, u.path, u.requirement, u.found
                            ),
                            None => format!(
                                "cluster {} (node {}): term {i} is empty and matches nothing",
                                n.cluster_id, n.name
                            ),
                        });
                    }
                }
            }
            let labels = match g {
                Generation::V0_3 => "kubectl get nodes -l liqo.io/type=virtual-node --show-labels",
                Generation::V1 => {
                    "kubectl get virtualnodes -A -o yaml, spec.labels, or the labels of their Nodes"
                }
            };
            r.problems.push(Problem {
                cause: format!("the clusterSelector matches none of the {} virtual nodes:\n      {}", f.nodes.len(), lines.join("\n      ")),
                fix: format!("change spec.clusterSelector to match the labels of the virtual nodes ({labels}), or label the clusters"),
            });
        }
    }
    if let (Some(seen), Some(generation)) = (status.observed_generation, obj.metadata.generation)
        && seen != generation
    {
        r.notes.push(format!(
            "the status describes generation {seen}, the object is at {generation}: {} has not caught up (or is not running)",
            controller(g)
        ));
    }
    if status.offloading_phase.is_none() {
        r.notes.push(format!("the NamespaceOffloading has no status: {} has not handled it", controller(g)));
    }
    if matches!(r.phase.as_deref(), Some("SomeFailed" | "AllFailed")) && r.problems.is_empty() {
        r.problems.push(Problem {
            cause: format!(
                "phase {}: some remote namespaces could not be created",
                r.phase.as_deref().unwrap_or_default()
            ),
            fix: "see the Ready=False conditions above and the NamespaceMap currentMapping of those clusters"
                .into(),
        });
    }
    r.healthy = r.problems.is_empty();
    r
}

// ---------------------------------------------------------------------------------------------
// Render

/// The report as a person reads it.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "NamespaceOffloading {}/offloading", r.namespace);
    let none = || "-".to_string();
    let _ = writeln!(o, "  liqo API:            {}", r.liqo_api);
    let _ = writeln!(o, "  phase:               {}", r.phase.clone().unwrap_or_else(none));
    let _ = writeln!(
        o,
        "  remote namespace:    {} ({}, local cluster id {})",
        r.remote_namespace_name.clone().unwrap_or_else(none),
        r.mapping_strategy.clone().unwrap_or_else(none),
        r.local_cluster_id.clone().unwrap_or_else(|| "unknown".into())
    );
    // Liqo v1.x keeps no such annotation: its Events say what v0.3's annotation said.
    if r.liqo_api != Generation::V1.as_str() || r.scheduling_enabled.is_some() {
        let _ = writeln!(o, "  {SCHEDULING_ENABLED}: {}", r.scheduling_enabled.clone().unwrap_or_else(none));
    }
    if !r.clusters.is_empty() {
        let _ = writeln!(o, "clusters:");
    }
    for c in &r.clusters {
        let _ = writeln!(
            o,
            "  {}  node {}  {}",
            c.cluster_id,
            c.virtual_node.clone().unwrap_or_else(none),
            if c.selected { "selected" } else { "not selected" }
        );
        let _ = writeln!(
            o,
            "    conditions:     {}",
            if c.conditions.is_empty() { none() } else { c.conditions.join(", ") }
        );
        let _ = writeln!(
            o,
            "    desiredMapping: {}",
            c.desired.as_ref().map_or_else(none, |d| format!("{} -> {d}", r.namespace))
        );
        let _ = writeln!(o, "    currentMapping: {}", c.current.clone().unwrap_or_else(none));
        if let Some(remote) = &c.remote {
            let _ = writeln!(o, "    remote cluster: {remote}");
        }
    }
    if !r.reconcile_leases.is_empty() {
        let _ = writeln!(o, "reconcile leases:");
    }
    for l in &r.reconcile_leases {
        let renewed = match l.renewed_seconds_ago {
            Some(s) => format!("renewed {s} s ago"),
            None => "never renewed".into(),
        };
        let duration = l.lease_duration_seconds.map(|d| format!(" (lease {d} s)")).unwrap_or_default();
        let state = match (l.live, l.reconciles) {
            (true, true) => "reconciles",
            (true, false) => "stands by: another install is older",
            (false, _) if l.holder.is_none() => "released",
            (false, _) => "expired",
        };
        let _ = writeln!(
            o,
            "  {}  holder {}, {renewed}{duration}: {state}",
            l.lease,
            l.holder.clone().unwrap_or_else(none)
        );
    }
    for e in &r.events {
        let _ = writeln!(o, "event: {e}");
    }
    for n in &r.notes {
        let _ = writeln!(o, "note: {n}");
    }
    if r.problems.is_empty() {
        let _ = writeln!(o, "verdict: healthy");
    } else {
        let _ = writeln!(o, "problems:");
        for (i, p) in r.problems.iter().enumerate() {
            let _ = writeln!(o, "  {}. {}\n     fix: {}", i + 1, p.cause, p.fix);
        }
        let n = r.problems.len();
        let _ = writeln!(o, "verdict: {n} problem{} found", if n == 1 { "" } else { "s" });
    }
    o
}

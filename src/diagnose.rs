//! `offloading-webhook diagnose -n NAMESPACE`: the troubleshooting guide's whole path as one
//! command. It reads the NamespaceOffloading, its annotation and Events, every NamespaceMap, the
//! virtual nodes and, when it can reach them, the remote namespaces; judges them with the same pure
//! code as the webhook and the reconcile loop; and prints the state and each problem with its fix.
//! Exit 0 healthy, 1 a problem found, 2 could not look.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use crate::cluster::{CLUSTER_ID_CONFIGMAP, CLUSTER_ID_KEY, virtual_node};
use crate::crd::{
    MappingPhase, NODE_TYPE_LABEL, NamespaceMap, NamespaceOffloading, OFFLOADING_NAME,
    REMOTE_CLUSTER_ID_LABEL, SCHEDULING_ENABLED, VIRTUAL_NODE,
};
use crate::offloading::names::RemoteNameError;
use crate::offloading::rules::{derived_name, selector_errors};
use crate::offloading::{VirtualNode, aggregate, selector};
use crate::reconcile::remote::{REMOTE_NAMESPACE_ANNOTATION, RemoteClients};
use crate::reconcile::tenant::tenant_namespace;
use crate::reconcile::watch::decode;

/// What `diagnose` found, also printed as JSON with `-o json`.
#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub namespace: String,
    pub healthy: bool,
    pub phase: Option<String>,
    pub remote_namespace_name: Option<String>,
    pub mapping_strategy: Option<String>,
    pub local_cluster_id: Option<String>,
    pub scheduling_enabled: Option<String>,
    pub clusters: Vec<ClusterReport>,
    pub events: Vec<String>,
    pub notes: Vec<String>,
    pub problems: Vec<Problem>,
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

#[derive(Debug, Serialize)]
pub struct Problem {
    pub cause: String,
    pub fix: String,
}

/// Why `diagnose` could not look.
#[derive(Debug, thiserror::Error)]
pub enum DiagnoseError {
    #[error("could not connect to the cluster: {0}")]
    Connect(String),
    #[error("could not read {what}: {source}")]
    Read { what: String, source: kube::Error },
}

fn read<T>(what: &str, r: Result<T, kube::Error>) -> Result<T, DiagnoseError> {
    r.map_err(|source| DiagnoseError::Read { what: what.to_owned(), source })
}

/// Lists `K` as JSON and decodes each object on its own: one that does not decode becomes a
/// problem naming its field, instead of making the whole list unreadable. Returns the objects that
/// decoded, and the namespaces of those that did not.
async fn list_decoded<K>(
    client: &Client,
    namespace: Option<&str>,
    lp: &ListParams,
    r: &mut Report,
) -> Result<(Vec<K>, Vec<String>), DiagnoseError>
where
    K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
{
    let ar = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let kind = K::kind(&());
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    for obj in read(&format!("{kind}s"), api.list(lp).await)?.items {
        let ns = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        match decode::<K>(&obj.metadata, obj.data) {
            Ok(k) => out.push(k),
            Err(e) => {
                bad.push(ns.clone());
                r.problems.push(Problem {
                    cause: format!(
                        "the {kind} {ns}/{name} does not decode: {e}; the reconcile loop leaves it alone (nothing reconciled, nothing removed) until it is fixed"
                    ),
                    fix: format!(
                        "correct {} (kubectl edit {} {name} -n {ns}); is the CRD the one of this Liqo version (offloading-webhook crds)?",
                        e.path,
                        ar.plural
                    ),
                });
            }
        }
    }
    Ok((out, bad))
}

/// Connects with a kubeconfig path, or the usual inference.
pub async fn connect(kubeconfig: Option<&PathBuf>) -> Result<Client, DiagnoseError> {
    let config = match kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .map_err(|e| DiagnoseError::Connect(format!("{}: {e}", p.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| DiagnoseError::Connect(e.to_string()))?
        }
        None => kube::Config::infer().await.map_err(|e| DiagnoseError::Connect(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| DiagnoseError::Connect(e.to_string()))
}

/// Walks the guide for `namespace`.
pub async fn diagnose(
    client: &Client,
    namespace: &str,
    cluster_id: Option<String>,
    liqo_namespace: &str,
    remotes: &RemoteClients,
) -> Result<Report, DiagnoseError> {
    let mut r = Report { namespace: namespace.to_owned(), ..Default::default() };
    let (all, _): (Vec<NamespaceOffloading>, _) =
        list_decoded(client, Some(namespace), &ListParams::default(), &mut r).await?;
    let Some(obj) = all.iter().find(|o| o.name_any() == OFFLOADING_NAME) else {
        match all.first() {
            // Reported by `list_decoded`.
            _ if !r.problems.is_empty() => {}
            Some(other) => r.problems.push(Problem {
                cause: format!(
                    "the NamespaceOffloading in {namespace} is named {:?}: Liqo only reads the one named \"offloading\"",
                    other.name_any()
                ),
                fix: format!("create it again with metadata.name: offloading (kubectl get nsof {} -n {namespace} -o yaml, rename, apply), and delete the old one", other.name_any()),
            }),
            None => r.problems.push(Problem {
                cause: format!("namespace {namespace} has no NamespaceOffloading: it is not offloaded"),
                fix: format!("create a NamespaceOffloading named offloading in {namespace} (or run liqoctl offload namespace {namespace})"),
            }),
        }
        return Ok(r);
    };

    let status = obj.status.clone().unwrap_or_default();
    r.phase = status.offloading_phase.as_ref().map(|p| p.as_str().to_owned());
    r.remote_namespace_name = status.remote_namespace_name.clone();
    r.mapping_strategy = Some(obj.spec.namespace_mapping_strategy.as_str().to_owned());
    r.scheduling_enabled = obj.annotations().get(SCHEDULING_ENABLED).cloned();
    r.local_cluster_id = match cluster_id {
        Some(id) => Some(id),
        None => {
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), liqo_namespace);
            cms.get_opt(CLUSTER_ID_CONFIGMAP)
                .await
                .ok()
                .flatten()
                .and_then(|c| c.data?.get(CLUSTER_ID_KEY).cloned())
        }
    };

    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    if let Ok(list) = events.list(&ListParams::default()).await {
        r.events = list
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|o| o.name.as_deref()) == Some(OFFLOADING_NAME))
            .map(|e| {
                format!(
                    "{} {}: {}",
                    e.type_.as_deref().unwrap_or(""),
                    e.reason.as_deref().unwrap_or(""),
                    e.note.as_deref().unwrap_or("")
                )
            })
            .collect();
    }

    let nodes_api: Api<Node> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("{NODE_TYPE_LABEL}={VIRTUAL_NODE}"));
    let nodes: Vec<VirtualNode> =
        read("virtual nodes", nodes_api.list(&lp).await)?.items.iter().filter_map(virtual_node).collect();
    let (maps, undecodable_maps): (Vec<NamespaceMap>, _) =
        list_decoded(client, None, &ListParams::default().labels(REMOTE_CLUSTER_ID_LABEL), &mut r).await?;
    let mut by_cluster: BTreeMap<String, &NamespaceMap> = BTreeMap::new();
    for m in &maps {
        if let Some(id) = m.labels().get(REMOTE_CLUSTER_ID_LABEL) {
            by_cluster.entry(id.clone()).or_insert(m);
        }
    }

    // The object itself: selector syntax and the derived name, judged as the webhook would.
    let sel_errors = selector_errors(&obj.spec);
    if !sel_errors.is_empty() {
        let shown = r
            .scheduling_enabled
            .clone()
            .unwrap_or_else(|| format!("Invalid Cluster Selector : {}", aggregate(&sel_errors)));
        r.problems.push(Problem {
            cause: format!("the clusterSelector is invalid, so no cluster is selected; the annotation {SCHEDULING_ENABLED} says: {shown}"),
            fix: "correct spec.clusterSelector as the message says and apply it again".into(),
        });
    }
    match derived_name(&obj.spec, namespace, r.local_cluster_id.as_deref()) {
        Ok(name) => {
            r.remote_namespace_name.get_or_insert(name);
        }
        Err(RemoteNameError::UnknownClusterId) => r.notes.push(format!(
            "the local cluster id is unknown (no --cluster-id, no {CLUSTER_ID_CONFIGMAP} in {liqo_namespace}): the DefaultName remote name was not checked"
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
    let mut ids: Vec<String> = nodes.iter().map(|n| n.cluster_id.clone()).collect();
    ids.extend(by_cluster.keys().cloned());
    ids.extend(status.remote_namespaces_conditions.keys().cloned());
    ids.sort();
    ids.dedup();
    let local_id = r.local_cluster_id.clone().unwrap_or_default();
    for id in &ids {
        let node = nodes.iter().find(|n| &n.cluster_id == id);
        let mut c = ClusterReport {
            cluster_id: id.clone(),
            virtual_node: node.map(|n| n.name.clone()),
            selected: sel_errors.is_empty() && node.is_some_and(|n| selector::matches(selector, &n.facts())),
            ..Default::default()
        };
        c.conditions = status
            .remote_namespaces_conditions
            .get(id)
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
        let map = by_cluster.get(id);
        c.desired = map.and_then(|m| m.spec.desired_mapping.get(namespace).cloned());
        let current = map.and_then(|m| m.status.as_ref()?.current_mapping.get(namespace).cloned());
        c.current = current.as_ref().map(|s| format!("{} {}", s.remote_namespace, s.phase.as_str()));
        if node.is_none() {
            r.notes.push(format!("cluster {id} has no virtual node: the peering may be gone"));
        }
        // A map that does not decode is reported as such already.
        if map.is_none() && node.is_some() && !undecodable_maps.contains(&tenant_namespace(id)) {
            r.problems.push(Problem {
                cause: format!("cluster {id} has no NamespaceMap in {}", tenant_namespace(id)),
                fix: "check that the reconcile loop (offloading-webhook serve, or Liqo) is running".into(),
            });
        }
        // What the remote cluster says, when we can reach it.
        let wanted = current.as_ref().map(|s| s.remote_namespace.clone()).or_else(|| c.desired.clone());
        match remotes.get(client, id, &tenant_namespace(id)).await {
            Ok(Some(remote)) => {
                let api: Api<Namespace> = Api::all(remote);
                let probe = match &wanted {
                    Some(name) => api.get_opt(name).await.map(|ns| Some((name.clone(), ns))),
                    None => api.list(&ListParams::default().limit(1)).await.map(|_| None),
                };
                match probe {
                    Ok(Some((name, Some(ns)))) => {
                        let ann = ns.annotations().get(REMOTE_NAMESPACE_ANNOTATION).cloned();
                        c.remote = Some(match &ann {
                            Some(a) => format!("namespace {name} exists, {REMOTE_NAMESPACE_ANNOTATION}={a}"),
                            None => format!("namespace {name} exists, without {REMOTE_NAMESPACE_ANNOTATION}"),
                        });
                        if ann.as_deref() != Some(local_id.as_str()) && !local_id.is_empty() {
                            let owner = match ann {
                                Some(a) => {
                                    format!("is owned by cluster id {a} ({REMOTE_NAMESPACE_ANNOTATION})")
                                }
                                None => format!(
                                    "exists without the annotation {REMOTE_NAMESPACE_ANNOTATION}, so Liqo did not create it"
                                ),
                            };
                            r.problems.push(Problem {
                                cause: format!("the remote namespace {name:?} in cluster {id} {owner}: the remote namespace cannot be created (CreationLoopBackOff)"),
                                fix: format!("rename or remove namespace {name} in cluster {id}, or offload with namespaceMappingStrategy SelectedName and another remoteNamespaceName"),
                            });
                        }
                    }
                    Ok(Some((name, None))) => c.remote = Some(format!("namespace {name} does not exist yet")),
                    Ok(None) => c.remote = Some("reachable".into()),
                    Err(e) => {
                        c.remote = Some(format!("unreachable: {e}"));
                        r.problems.push(Problem {
                            cause: format!("remote cluster {id} cannot be reached: {e}"),
                            fix: format!("check the peering with cluster {id} and its API server; the other clusters are not affected"),
                        });
                    }
                }
            }
            Ok(None) => {}
            Err(e) => r.notes.push(e.to_string()),
        }
        if current.as_ref().is_some_and(|s| s.phase == MappingPhase::CreationLoopBackOff)
            && !r.problems.iter().any(|p| p.cause.contains(&format!("cluster {id}")))
        {
            r.problems.push(Problem {
                cause: format!("the remote namespace cannot be created in cluster {id} (CreationLoopBackOff)"),
                fix: format!(
                    "look at namespace {} in cluster {id}: if it exists without {REMOTE_NAMESPACE_ANNOTATION}={local_id}, rename or remove it (diagnose checks this itself given --remote-kubeconfig {id}=PATH)",
                    wanted.as_deref().unwrap_or("?")
                ),
            });
        }
        r.clusters.push(c);
    }

    // NoClusterSelected with a valid selector: which requirement failed on which cluster.
    if sel_errors.is_empty()
        && !r.clusters.iter().any(|c| c.selected)
        && obj.metadata.deletion_timestamp.is_none()
    {
        if nodes.is_empty() {
            r.problems.push(Problem {
                cause: "no remote cluster is known (no virtual node): nothing can be selected".into(),
                fix:
                    "peer with a remote cluster first (liqoctl peer), then check that its virtual node exists"
                        .into(),
            });
        } else {
            let mut lines = Vec::new();
            for n in &nodes {
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
            r.problems.push(Problem {
                cause: format!("the clusterSelector matches none of the {} virtual nodes:\n      {}", nodes.len(), lines.join("\n      ")),
                fix: "change spec.clusterSelector to match the labels of the virtual nodes (kubectl get nodes -l liqo.io/type=virtual-node --show-labels), or label the clusters".into(),
            });
        }
    }
    if let (Some(seen), Some(generation)) = (status.observed_generation, obj.metadata.generation)
        && seen != generation
    {
        r.notes.push(format!("the status describes generation {seen}, the object is at {generation}: the reconcile loop has not caught up (or is not running)"));
    }
    if status.offloading_phase.is_none() {
        r.notes.push("the NamespaceOffloading has no status: the reconcile loop (offloading-webhook serve, or Liqo) has not handled it".into());
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
    Ok(r)
}

/// The report as a person reads it.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "NamespaceOffloading {}/offloading", r.namespace);
    let none = || "-".to_string();
    let _ = writeln!(o, "  phase:               {}", r.phase.clone().unwrap_or_else(none));
    let _ = writeln!(
        o,
        "  remote namespace:    {} ({}, local cluster id {})",
        r.remote_namespace_name.clone().unwrap_or_else(none),
        r.mapping_strategy.clone().unwrap_or_else(none),
        r.local_cluster_id.clone().unwrap_or_else(|| "unknown".into())
    );
    let _ = writeln!(o, "  {SCHEDULING_ENABLED}: {}", r.scheduling_enabled.clone().unwrap_or_else(none));
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

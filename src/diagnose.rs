//! `offloading-webhook diagnose -n NAMESPACE`: the troubleshooting guide's whole path as one
//! command, in three steps:
//! - [`gather`] reads the facts through one adapter per Liqo API ([`Adapter`]: v0.3's
//!   `virtualkubelet.liqo.io` NamespaceMaps named `<id>-...` and Nodes; v1.x's
//!   `offloading.liqo.io/v1beta1` NamespaceMaps named `<id>`, labelled `liqo.io/replication=true`
//!   and `liqo.io/remoteID`, and VirtualNodes): the NamespaceOffloading, its Events, the maps, the
//!   virtual nodes and, when it can reach them, the remote namespaces;
//! - [`judge`] turns [`Facts`] into a [`Report`] of problems, each with its cause and fix, with the
//!   same pure code as the webhook (`crate::offloading`), per generation; no IO, unit-tested;
//! - [`render`] prints it (or `-o json`).
//!
//! Exit 0 healthy, 1 a problem found, 2 could not look.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use crate::cluster::{
    CLUSTER_ID_CONFIGMAP, CLUSTER_ID_CONFIGMAP_SELECTOR, CLUSTER_ID_KEY, LiqoVirtualNode, v1_virtual_nodes,
    virtual_node, virtual_node_resource,
};
use crate::crd::{
    MappingPhase, NODE_TYPE_LABEL, NamespaceMap, NamespaceOffloading, OFFLOADING_NAME,
    REMOTE_CLUSTER_ID_LABEL, SCHEDULING_ENABLED, VIRTUAL_NODE,
};
use crate::offloading::names::RemoteNameError;
use crate::offloading::rules::{derived_name, judge_selector};
use crate::offloading::{Generation, VirtualNode, VirtualNodes, aggregate, selector};
use crate::reconcile::installs::{self, Seniority};
use crate::reconcile::remote::{REMOTE_NAMESPACE_ANNOTATION, RemoteClients};
use crate::reconcile::tenant::{TENANT_CLUSTER_ID_LABEL, TENANT_NAMESPACE_LABEL, tenant_namespace};
use crate::reconcile::watch::{RawObject, decode_text};

/// The annotation Liqo v1.x puts on the remote namespaces it creates: the key
/// (`<namespace>/<name>`) of the provider's copy of the NamespaceMap, in the tenant namespace of
/// the consumer.
pub const MANAGED_BY_ANNOTATION: &str = "liqo.io/managed-by-namespace-map";
/// Labels of the NamespaceMaps Liqo v1.x's NamespaceOffloading controller reads.
pub const REPLICATION_LABEL: &str = "liqo.io/replication";
pub const REMOTE_ID_LABEL: &str = "liqo.io/remoteID";
/// The label of a tenant namespace on Liqo v1.x (with `liqo.io/remote-cluster-id`).
pub const V1_TENANT_NAMESPACE_LABEL: &str = "liqo.io/tenant-namespace";

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

/// Why `diagnose` could not look.
#[derive(Debug, thiserror::Error)]
pub enum DiagnoseError {
    #[error("could not connect to the cluster: {0}")]
    Connect(String),
    #[error("could not read {what}: {source}")]
    Read { what: String, source: kube::Error },
    #[error(transparent)]
    LiqoApi(#[from] crate::liqo_api::LiqoApiError),
}

fn read<T>(what: &str, r: Result<T, kube::Error>) -> Result<T, DiagnoseError> {
    r.map_err(|source| DiagnoseError::Read { what: what.to_owned(), source })
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

/// One install's reconcile Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseFact {
    pub seniority: Seniority,
    pub holder: Option<String>,
    pub renew_time: Option<Timestamp>,
    pub duration_seconds: Option<i32>,
}

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

/// How one Liqo API is read: where its objects live and how its controllers find them.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub generation: Generation,
    offloadings: ApiResource,
    maps: ApiResource,
    /// The labels a NamespaceMap must carry for the controller to read it.
    map_selector: String,
    /// The label naming a map's remote cluster.
    map_cluster_label: &'static str,
}

impl Adapter {
    pub fn new(generation: Generation) -> Self {
        let gvk = |group: &str, version: &str, kind: &str| GroupVersionKind::gvk(group, version, kind);
        match generation {
            Generation::V0_3 => Self {
                generation,
                offloadings: ApiResource::erase::<NamespaceOffloading>(&()),
                maps: ApiResource::erase::<NamespaceMap>(&()),
                map_selector: REMOTE_CLUSTER_ID_LABEL.into(),
                map_cluster_label: REMOTE_CLUSTER_ID_LABEL,
            },
            Generation::V1 => Self {
                generation,
                offloadings: ApiResource::from_gvk_with_plural(
                    &gvk("offloading.liqo.io", "v1beta1", "NamespaceOffloading"),
                    "namespaceoffloadings",
                ),
                maps: ApiResource::from_gvk_with_plural(
                    &gvk("offloading.liqo.io", "v1beta1", "NamespaceMap"),
                    "namespacemaps",
                ),
                map_selector: format!("{REPLICATION_LABEL}=true,{REMOTE_ID_LABEL}"),
                map_cluster_label: REMOTE_ID_LABEL,
            },
        }
    }

    /// The local cluster id: v0.3's ConfigMap by name, v1.x's by label.
    async fn cluster_id(&self, client: &Client, liqo_namespace: &str) -> Option<String> {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), liqo_namespace);
        match self.generation {
            Generation::V0_3 => {
                cms.get_opt(CLUSTER_ID_CONFIGMAP).await.ok().flatten()?.data?.get(CLUSTER_ID_KEY).cloned()
            }
            Generation::V1 => {
                let list =
                    cms.list(&ListParams::default().labels(CLUSTER_ID_CONFIGMAP_SELECTOR)).await.ok()?;
                list.items.into_iter().find_map(|c| c.data?.get(CLUSTER_ID_KEY).cloned())
            }
        }
    }

    /// The tenant namespaces by remote cluster id: v0.3 labels them `discovery.liqo.io/*`, v1.x
    /// `liqo.io/tenant-namespace=true` and `liqo.io/remote-cluster-id`.
    async fn tenants(&self, client: &Client) -> BTreeMap<String, String> {
        let (marker, id_label) = match self.generation {
            Generation::V0_3 => (TENANT_NAMESPACE_LABEL, TENANT_CLUSTER_ID_LABEL),
            Generation::V1 => (V1_TENANT_NAMESPACE_LABEL, REMOTE_CLUSTER_ID_LABEL),
        };
        let api: Api<Namespace> = Api::all(client.clone());
        let lp = ListParams::default().labels(&format!("{marker}=true,{id_label}"));
        let Ok(list) = api.list(&lp).await else { return BTreeMap::new() };
        list.items.iter().filter_map(|n| Some((n.labels().get(id_label)?.clone(), n.name_any()))).collect()
    }

    /// The remote clusters: v0.3's virtual Nodes; v1.x's VirtualNodes with their Node's labels.
    async fn nodes(&self, client: &Client) -> Result<Vec<VirtualNode>, DiagnoseError> {
        let nodes_api: Api<Node> = Api::all(client.clone());
        match self.generation {
            Generation::V0_3 => {
                let lp = ListParams::default().labels(&format!("{NODE_TYPE_LABEL}={VIRTUAL_NODE}"));
                Ok(read("virtual nodes", nodes_api.list(&lp).await)?
                    .items
                    .iter()
                    .filter_map(virtual_node)
                    .collect())
            }
            Generation::V1 => {
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &virtual_node_resource());
                let vns: Vec<LiqoVirtualNode> = read("VirtualNodes", api.list(&ListParams::default()).await)?
                    .items
                    .iter()
                    .filter_map(LiqoVirtualNode::from_dynamic)
                    .collect();
                let lp = ListParams::default().labels(REMOTE_CLUSTER_ID_LABEL);
                let nodes: Vec<_> = read("virtual nodes", nodes_api.list(&lp).await)?
                    .items
                    .into_iter()
                    .map(Arc::new)
                    .collect();
                Ok(v1_virtual_nodes(&vns, &nodes))
            }
        }
    }
}

/// Lists `ar` as JSON and decodes each object as `K` on its own: one that does not decode is
/// recorded, instead of making the whole list unreadable.
async fn list_decoded<K>(
    client: &Client,
    ar: &ApiResource,
    namespace: Option<&str>,
    lp: &ListParams,
    undecodable: &mut Vec<Undecodable>,
) -> Result<Vec<K>, DiagnoseError>
where
    K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
{
    let api: Api<RawObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    };
    let mut out = Vec::new();
    for obj in read(&format!("{}s", ar.kind), api.list(lp).await)?.items {
        let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
        match decode_text::<K>(obj.text()) {
            Ok(k) => out.push(k),
            Err(e) => undecodable.push(Undecodable {
                kind: ar.kind.clone(),
                plural: ar.plural.clone(),
                namespace: ns,
                name,
                path: e.path,
                message: e.message,
            }),
        }
    }
    Ok(out)
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

/// Reads every fact about `namespace` through `adapter`.
pub async fn gather(
    client: &Client,
    adapter: &Adapter,
    namespace: &str,
    cluster_id: Option<String>,
    liqo_namespace: &str,
    remotes: &RemoteClients,
) -> Result<Facts, DiagnoseError> {
    let mut f = Facts {
        generation: adapter.generation,
        namespace: namespace.to_owned(),
        liqo_namespace: liqo_namespace.to_owned(),
        ..Default::default()
    };
    let all: Vec<NamespaceOffloading> = list_decoded(
        client,
        &adapter.offloadings,
        Some(namespace),
        &ListParams::default(),
        &mut f.undecodable,
    )
    .await?;
    let (mine, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|o| o.name_any() == OFFLOADING_NAME);
    f.other_names = others.iter().map(|o| o.name_any()).collect();
    f.offloading = mine.into_iter().next();
    let Some(obj) = &f.offloading else { return Ok(f) };

    f.local_cluster_id = match cluster_id {
        Some(id) => Some(id),
        None => adapter.cluster_id(client, liqo_namespace).await,
    };
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    if let Ok(list) = events.list(&ListParams::default()).await {
        f.events = list
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|o| o.name.as_deref()) == Some(OFFLOADING_NAME))
            .map(|e| EventFact {
                type_: e.type_.clone().unwrap_or_default(),
                reason: e.reason.clone().unwrap_or_default(),
                note: e.note.clone().unwrap_or_default(),
            })
            .collect();
    }
    f.tenants = adapter.tenants(client).await;
    f.nodes = adapter.nodes(client).await?.into();
    let lp = ListParams::default().labels(&adapter.map_selector);
    let mut maps: Vec<NamespaceMap> =
        list_decoded(client, &adapter.maps, None, &lp, &mut f.undecodable).await?;
    maps.sort_by_key(|m| m.name_any());
    for m in maps {
        if let Some(id) = m.labels().get(adapter.map_cluster_label).cloned() {
            f.maps.entry(id).or_insert(m);
        }
    }

    // What each remote cluster says, for the name its map wants (or has).
    let status = obj.status.clone().unwrap_or_default();
    for id in cluster_ids(&f.nodes, &f.maps, status.remote_namespaces_conditions.keys()) {
        let wanted = wanted_name(f.maps.get(&id), namespace);
        let remote = match remotes.get(client, &id, &tenant_of(&f.tenants, &id)).await {
            Ok(Some(remote)) => remote,
            Ok(None) => continue,
            Err(e) => {
                f.notes.push(e.to_string());
                continue;
            }
        };
        let api: Api<Namespace> = Api::all(remote);
        let annotation = owner_annotation(adapter.generation);
        let fact = match &wanted {
            Some(name) => match api.get_opt(name).await {
                Ok(Some(ns)) => RemoteFact::Exists {
                    name: name.clone(),
                    owner: ns.annotations().get(annotation).cloned(),
                },
                Ok(None) => RemoteFact::Missing { name: name.clone() },
                Err(e) => RemoteFact::Unreachable(e.to_string()),
            },
            None => match api.list(&ListParams::default().limit(1)).await {
                Ok(_) => RemoteFact::Reachable,
                Err(e) => RemoteFact::Unreachable(e.to_string()),
            },
        };
        f.remotes.insert(id, fact);
    }
    Ok(f)
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

/// Gathers, judges: the whole walk for `namespace`.
pub async fn diagnose(
    client: &Client,
    generation: Generation,
    namespace: &str,
    cluster_id: Option<String>,
    liqo_namespace: &str,
    remotes: &RemoteClients,
) -> Result<Report, DiagnoseError> {
    let adapter = Adapter::new(generation);
    let mut facts = gather(client, &adapter, namespace, cluster_id, liqo_namespace, remotes).await?;
    facts.leases = reconcile_leases(client).await;
    facts.looked_at = Some(Timestamp::now());
    Ok(judge(&facts))
}

/// Every install's reconcile Lease this user may list (none when it may not: the rest of the
/// walk does not need them).
async fn reconcile_leases(client: &Client) -> Vec<LeaseFact> {
    let api: Api<Lease> = Api::all(client.clone());
    let Ok(list) = api.list(&ListParams::default().labels(&installs::selector())).await else {
        return Vec::new();
    };
    let mut leases: Vec<LeaseFact> = list
        .items
        .iter()
        .map(|l| {
            let spec = l.spec.clone().unwrap_or_default();
            LeaseFact {
                seniority: Seniority::of(l),
                holder: spec.holder_identity.filter(|h| !h.is_empty()),
                renew_time: spec.renew_time.map(|t| t.0),
                duration_seconds: spec.lease_duration_seconds,
            }
        })
        .collect();
    leases.sort_by(|a, b| a.seniority.cmp(&b.seniority));
    leases
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LOCAL: &str = "frosty-bird";
    const REMOTE: &str = "calm-sea";

    fn offloading(spec: serde_json::Value, status: serde_json::Value) -> NamespaceOffloading {
        serde_json::from_value(json!({
            "apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
            "metadata": {"name": "offloading", "namespace": "web", "generation": 1},
            "spec": spec, "status": status
        }))
        .unwrap()
    }

    fn map(desired: Option<&str>, current: Option<(&str, &str)>) -> NamespaceMap {
        let mut m: NamespaceMap = serde_json::from_value(json!({
            "apiVersion": "virtualkubelet.liqo.io/v1alpha1", "kind": "NamespaceMap",
            "metadata": {"name": REMOTE, "namespace": format!("liqo-tenant-{REMOTE}")},
            "spec": {}
        }))
        .unwrap();
        if let Some(d) = desired {
            m.spec.desired_mapping.insert("web".into(), d.into());
        }
        if let Some((name, phase)) = current {
            m.status = Some(
                serde_json::from_value(
                    json!({"currentMapping": {"web": {"remoteNamespace": name, "phase": phase}}}),
                )
                .unwrap(),
            );
        }
        m
    }

    fn node() -> VirtualNode {
        VirtualNode {
            name: REMOTE.into(),
            cluster_id: REMOTE.into(),
            labels: [("liqo.io/remote-cluster-id".to_string(), REMOTE.to_string())].into(),
        }
    }

    /// A namespace offloaded to one remote cluster, as each generation shows it.
    fn facts(g: Generation, phase: &str, current: &str) -> Facts {
        let remote_name = format!("web-{LOCAL}");
        Facts {
            generation: g,
            namespace: "web".into(),
            liqo_namespace: "liqo".into(),
            offloading: Some(offloading(
                json!({"clusterSelector": {"nodeSelectorTerms": []}}),
                json!({"offloadingPhase": phase, "observedGeneration": 1, "remoteNamespaceName": remote_name,
                       "remoteNamespacesConditions": {REMOTE: [{"type": "Ready", "status": "True"}]}}),
            )),
            local_cluster_id: Some(LOCAL.into()),
            tenants: [(REMOTE.to_string(), format!("liqo-tenant-{REMOTE}"))].into(),
            nodes: vec![node()].into(),
            maps: [(REMOTE.to_string(), map(Some(&remote_name), Some((&remote_name, current))))].into(),
            ..Default::default()
        }
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
            f.remotes.insert(REMOTE.into(), RemoteFact::Exists { name: name.clone(), owner: None });
            let r = judge(&f);
            assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
            assert!(
                r.problems[0].cause.starts_with(&format!("the remote namespace \"{name}\" in cluster calm-sea exists without the annotation {}, so Liqo did not create it", owner_annotation(g))),
                "{}",
                r.problems[0].cause
            );
            assert!(
                r.problems[0]
                    .fix
                    .starts_with(&format!("rename or remove namespace {name} in cluster calm-sea"))
            );
            // The generation's own annotation value: no problem.
            let mut f = facts(g, "Ready", "Accepted");
            f.remotes.insert(REMOTE.into(), RemoteFact::Exists { name, owner: Some(ours) });
            assert!(judge(&f).healthy, "{g:?}");
        }
        // On v1.x, another consumer's map.
        let mut f = facts(Generation::V1, "AllFailed", "CreationLoopBackOff");
        f.remotes.insert(
            REMOTE.into(),
            RemoteFact::Exists {
                name: format!("web-{LOCAL}"),
                owner: Some("liqo-tenant-other/calm-sea".into()),
            },
        );
        assert!(judge(&f).problems[0].cause.contains("is managed by NamespaceMap liqo-tenant-other/calm-sea (liqo.io/managed-by-namespace-map), not by this cluster's"));
    }

    #[test]
    fn a_too_long_name_on_both_generations() {
        for g in [Generation::V0_3, Generation::V1] {
            let mut f = facts(g, "AllFailed", "CreationLoopBackOff");
            let ns = "a-namespace-much-longer-than-fits-with-any-cluster-id-x";
            f.namespace = ns.into();
            let r = judge(&f);
            assert!(
                r.problems[0].cause.contains("over the limit of 63 for a namespace name"),
                "{g:?}: {:?}",
                r.problems
            );
            assert!(r.problems[0].fix.starts_with("delete the NamespaceOffloading and create it again with namespaceMappingStrategy EnforceSameName"));
        }
    }

    #[test]
    fn a_broken_selector_on_both_generations() {
        let bad = json!({"clusterSelector": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "region", "operator": "Equals", "values": ["eu"]}]}]}});
        for g in [Generation::V0_3, Generation::V1] {
            let mut f = facts(g, "NoClusterSelected", "Accepted");
            f.maps.clear();
            f.offloading = Some(offloading(bad.clone(), json!({"offloadingPhase": "NoClusterSelected"})));
            f.events = vec![EventFact {
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
        f.maps.clear();
        f.offloading = Some(offloading(json!({}), json!({"offloadingPhase": "NoClusterSelected"})));
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
        f.offloading =
            Some(offloading(json!({}), json!({"offloadingPhase": "Ready", "observedGeneration": 1})));
        assert!(judge(&f).healthy);
    }

    #[test]
    fn v1_an_invalid_event_that_liqo_never_retries() {
        let mut f = facts(Generation::V1, "NoClusterSelected", "Accepted");
        f.maps.clear();
        f.offloading.as_mut().unwrap().status.as_mut().unwrap().offloading_phase =
            Some(crate::crd::OffloadingPhase::NoClusterSelected);
        f.events = vec![EventFact {
            type_: "Warning".into(),
            reason: "Invalid".into(),
            note: "Invalid ClusterSelector: x".into(),
        }];
        let r = judge(&f);
        assert!(r.problems.iter().any(|p| p.cause.starts_with("Liqo's controller refused the clusterSelector (Invalid ClusterSelector: x) and does not retry")), "{:?}", r.problems);
    }

    #[test]
    fn a_missing_map_names_who_makes_it() {
        let mut f = facts(Generation::V1, "InProgress", "Accepted");
        f.maps.clear();
        let r = judge(&f);
        assert!(r.problems[0].cause.starts_with("cluster calm-sea has no NamespaceMap that Liqo reads (named calm-sea, labelled liqo.io/replication=true and liqo.io/remoteID=calm-sea"), "{:?}", r.problems);
        let mut f = facts(Generation::V0_3, "InProgress", "Accepted");
        f.maps.clear();
        assert_eq!(
            judge(&f).problems[0].cause,
            "cluster calm-sea has no NamespaceMap in liqo-tenant-calm-sea"
        );
        // v1.x finds the tenant namespace by label; without one the peering is incomplete.
        let mut f = facts(Generation::V1, "InProgress", "Accepted");
        f.maps.clear();
        f.tenants.clear();
        assert_eq!(
            judge(&f).problems[0].cause,
            "cluster calm-sea has no tenant namespace (labelled liqo.io/tenant-namespace=true and liqo.io/remote-cluster-id=calm-sea), so Liqo makes no NamespaceMap for it"
        );
    }

    #[test]
    fn no_offloading_at_all() {
        let f = Facts { namespace: "web".into(), generation: Generation::V1, ..Default::default() };
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
        let mut f = Facts { namespace: "web".into(), looked_at: Some(now), ..Default::default() };
        f.leases = vec![
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
        f.leases.truncate(2);
        let r = judge(&f);
        assert!(r.notes.is_empty(), "{:?}", r.notes);
        f.leases.clear();
        assert!(!render(&judge(&f)).contains("reconcile leases"));
    }
}

//! Reads the facts, and nothing else: every API call `diagnose` makes is here. What differs between
//! the Liqo generations is read through an [`Adapter`], built from the generation's names
//! (`crate::liqo::Names`): where its objects live and how its controllers find them.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::{Client, ResourceExt};

use super::facts::{
    ClusterFacts, EventFact, Facts, LeaseFact, NamespaceFacts, RemoteFact, Undecodable, wanted_name,
};
use crate::cluster::{LiqoVirtualNode, v1_virtual_nodes, virtual_node};
use crate::crd::{NamespaceMap, NamespaceOffloading};
use crate::kube_client::{self, KubeClientError};
use crate::liqo::{
    CLUSTER_ID_KEY, ConfigMapLookup, Generation, Names, OFFLOADING_NAME, REMOTE_CLUSTER_ID_LABEL, v1,
};
use crate::offloading::VirtualNode;
use crate::raw_object::{RawObject, decode_text};
use crate::reconcile::installs::{self, Seniority};
use crate::remote_clients::RemoteClients;

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

impl From<KubeClientError> for DiagnoseError {
    /// The reason alone: the message already says it is about connecting.
    fn from(e: KubeClientError) -> Self {
        Self::Connect(match e {
            KubeClientError::Kubeconfig { path, detail } => format!("{path}: {detail}"),
            KubeClientError::NotConfigured(e) => e,
            KubeClientError::Client(e) => e.to_string(),
        })
    }
}

fn read<T>(what: &str, r: Result<T, kube::Error>) -> Result<T, DiagnoseError> {
    r.map_err(|source| DiagnoseError::Read { what: what.to_owned(), source })
}

/// Connects as kubectl would (`$KUBECONFIG` merged, `--kubeconfig`, `--context`); no client-side
/// rate limit for a one-off look. The client's default namespace is the context's.
pub async fn connect(source: &kube_client::Source) -> Result<Client, DiagnoseError> {
    let config = kube_client::config_as_kubectl(source).await?;
    Ok(kube_client::client(config, kube_client::UNLIMITED)?)
}

/// What `diagnose` and `plan` start from: a client connected as kubectl connects, the remote
/// clusters' kubeconfigs, and the Liqo generation (found, unless the flag names it).
pub async fn look(args: &crate::cli::LookArgs) -> Result<(Client, RemoteClients, Generation), DiagnoseError> {
    let source = kube_client::Source { kubeconfig: args.kubeconfig.clone(), context: args.context.clone() };
    let client = connect(&source).await?;
    let remotes = RemoteClients::new(args.remote_kubeconfigs.iter().cloned().collect());
    let generation = crate::liqo_api::resolve(&client, args.liqo_api).await?;
    Ok((client, remotes, generation))
}

/// How one Liqo generation is read.
#[derive(Debug, Clone, Copy)]
pub struct Adapter {
    names: &'static Names,
}

impl Adapter {
    pub fn new(generation: Generation) -> Self {
        Self { names: generation.names() }
    }

    pub fn generation(&self) -> Generation {
        self.names.generation
    }

    /// The generation's names.
    pub fn names(&self) -> &'static Names {
        self.names
    }

    /// The NamespaceOffloadings of `namespace`; those that do not decode go to `undecodable`.
    async fn offloadings(
        &self,
        client: &Client,
        namespace: &str,
        undecodable: &mut Vec<Undecodable>,
    ) -> Result<Vec<NamespaceOffloading>, DiagnoseError> {
        let ar = self.names.offloadings.api_resource();
        list_decoded(client, &ar, Some(namespace), &ListParams::default(), undecodable).await
    }

    /// The local cluster id, from the ConfigMap found by name (v0.3) or by label (v1.x).
    async fn cluster_id(&self, client: &Client, liqo_namespace: &str) -> Option<String> {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), liqo_namespace);
        match self.names.cluster_id_configmap {
            ConfigMapLookup::ByName(name) => {
                cms.get_opt(name).await.ok().flatten()?.data?.get(CLUSTER_ID_KEY).cloned()
            }
            ConfigMapLookup::ByLabel(selector) => {
                let list = cms.list(&ListParams::default().labels(selector)).await.ok()?;
                list.items.into_iter().find_map(|c| c.data?.get(CLUSTER_ID_KEY).cloned())
            }
        }
    }

    /// The tenant namespaces by remote cluster id, found by the generation's labels.
    async fn tenants(&self, client: &Client) -> BTreeMap<String, String> {
        let id_label = self.names.tenant_cluster_label;
        let api: Api<Namespace> = Api::all(client.clone());
        let lp = ListParams::default().labels(&self.names.tenant_selector());
        let Ok(list) = api.list(&lp).await else { return BTreeMap::new() };
        list.items.iter().filter_map(|n| Some((n.labels().get(id_label)?.clone(), n.name_any()))).collect()
    }

    /// The remote clusters: v0.3's virtual Nodes; v1.x's VirtualNodes with their Node's labels,
    /// through the same code as the webhook's cache.
    async fn nodes(&self, client: &Client) -> Result<Vec<VirtualNode>, DiagnoseError> {
        match self.names.generation {
            Generation::V0_3 => {
                Ok(self.labelled_nodes(client).await?.iter().filter_map(virtual_node).collect())
            }
            Generation::V1 => {
                let api: Api<DynamicObject> =
                    Api::all_with(client.clone(), &v1::VIRTUAL_NODES.api_resource());
                let vns: Vec<LiqoVirtualNode> = read("VirtualNodes", api.list(&ListParams::default()).await)?
                    .items
                    .iter()
                    .filter_map(LiqoVirtualNode::from_dynamic)
                    .collect();
                let nodes: Vec<_> = self.labelled_nodes(client).await?.into_iter().map(Arc::new).collect();
                Ok(v1_virtual_nodes(&vns, &nodes))
            }
        }
    }

    /// The Nodes that stand for remote clusters, by the generation's label selector.
    async fn labelled_nodes(&self, client: &Client) -> Result<Vec<Node>, DiagnoseError> {
        let api: Api<Node> = Api::all(client.clone());
        let lp = ListParams::default().labels(self.names.virtual_node_selector);
        Ok(read("virtual nodes", api.list(&lp).await)?.items)
    }

    /// The NamespaceMap of each remote cluster, as the generation's controller finds it (the
    /// first by name when several carry the label); those that do not decode go to `undecodable`.
    async fn maps(
        &self,
        client: &Client,
        undecodable: &mut Vec<Undecodable>,
    ) -> Result<BTreeMap<String, NamespaceMap>, DiagnoseError> {
        let lp = ListParams::default().labels(self.names.map_selector);
        let ar = self.names.maps.api_resource();
        let mut maps: Vec<NamespaceMap> = list_decoded(client, &ar, None, &lp, undecodable).await?;
        maps.sort_by_key(|m| m.name_any());
        let mut by_cluster = BTreeMap::new();
        for m in maps {
            if let Some(id) = m.labels().get(self.names.map_cluster_label).cloned() {
                by_cluster.entry(id).or_insert(m);
            }
        }
        Ok(by_cluster)
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
    for obj in list_pages(&api, lp, &format!("{}s", ar.kind)).await? {
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

/// Objects listed per page, as kubectl lists them: a fleet's thousands of objects never wait in one
/// answer, and the API server serves each page from its watch cache.
pub const PAGE: u32 = 500;

/// Every object `lp` selects, read in pages of [`PAGE`].
async fn list_pages<K>(api: &Api<K>, lp: &ListParams, what: &str) -> Result<Vec<K>, DiagnoseError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut lp = lp.clone().limit(PAGE);
    let mut out = Vec::new();
    loop {
        let page = read(what, api.list(&lp).await)?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// Every fact about `namespace`: its NamespaceOffloadings first and, when one is named
/// `offloading`, the cluster's facts and what the remote clusters say of it.
pub async fn gather(
    client: &Client,
    adapter: &Adapter,
    namespace: &str,
    cluster_id: Option<String>,
    liqo_namespace: &str,
    remotes: &RemoteClients,
) -> Result<Facts, DiagnoseError> {
    let mut facts = Facts {
        cluster: ClusterFacts {
            generation: adapter.generation(),
            liqo_namespace: liqo_namespace.to_owned(),
            ..Default::default()
        },
        namespace: offloadings(client, adapter, namespace).await?,
    };
    if facts.namespace.offloading.is_none() {
        return Ok(facts);
    }
    cluster(client, adapter, cluster_id, &mut facts.cluster).await?;
    around_offloading(client, adapter, &facts.cluster, &mut facts.namespace, remotes).await;
    Ok(facts)
}

/// Every fact about every namespace that holds a NamespaceOffloading, for `diagnose -A`: each kind
/// is listed once for the whole cluster (in pages), never once per namespace, and the remote
/// clusters are asked once each for their namespaces. Events and kubeconfig Secrets, which a user
/// may be allowed to list only namespace by namespace, are then read that way, and
/// [`ClusterFacts::read_notes`] says so. Namespaces come sorted by name.
pub async fn gather_all(
    client: &Client,
    adapter: &Adapter,
    cluster_id: Option<String>,
    liqo_namespace: &str,
    remotes: &RemoteClients,
) -> Result<(ClusterFacts, Vec<NamespaceFacts>), DiagnoseError> {
    let mut cf = ClusterFacts {
        generation: adapter.generation(),
        liqo_namespace: liqo_namespace.to_owned(),
        ..Default::default()
    };
    let mut undecodable = Vec::new();
    let ar = adapter.names.offloadings.api_resource();
    let all: Vec<NamespaceOffloading> =
        list_decoded(client, &ar, None, &ListParams::default(), &mut undecodable).await?;
    let mut by_ns: BTreeMap<String, NamespaceFacts> = BTreeMap::new();
    fn entry(by_ns: &mut BTreeMap<String, NamespaceFacts>, ns: String) -> &mut NamespaceFacts {
        by_ns.entry(ns.clone()).or_insert_with(|| NamespaceFacts { name: ns, ..Default::default() })
    }
    for o in all {
        let f = entry(&mut by_ns, o.namespace().unwrap_or_default());
        if o.name_any() == OFFLOADING_NAME {
            f.offloading = Some(o);
        } else {
            f.other_names.push(o.name_any());
        }
    }
    for u in undecodable {
        entry(&mut by_ns, u.namespace.clone()).undecodable.push(u);
    }
    if by_ns.is_empty() {
        return Ok((cf, Vec::new()));
    }
    cluster(client, adapter, cluster_id, &mut cf).await?;
    let names: Vec<String> = by_ns.keys().cloned().collect();
    let mut events = events_everywhere(client, &names, &mut cf.read_notes).await;
    for f in by_ns.values_mut() {
        f.events = events.remove(&f.name).unwrap_or_default();
    }
    let mut notes = Vec::new();
    remotes_everywhere(client, adapter, &cf, &mut by_ns, remotes, &mut notes).await;
    cf.read_notes.append(&mut notes);
    Ok((cf, by_ns.into_values().collect()))
}

/// Whether the API server said this user may not do it.
fn forbidden(e: &DiagnoseError) -> bool {
    matches!(e, DiagnoseError::Read { source: kube::Error::Api(s), .. } if s.code == 403)
}

/// The Events about every namespace's NamespaceOffloading, by namespace: in one list for the
/// whole cluster (the API server filters them by the object's name); when this user may not list
/// Events in every namespace, one list per namespace of `namespaces`, and a note says so.
async fn events_everywhere(
    client: &Client,
    namespaces: &[String],
    notes: &mut Vec<String>,
) -> BTreeMap<String, Vec<EventFact>> {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    let lp = ListParams::default().fields(&format!("involvedObject.name={OFFLOADING_NAME}"));
    let mut out: BTreeMap<String, Vec<EventFact>> = BTreeMap::new();
    let mut add = |list: Vec<CoreEvent>| {
        for e in list {
            out.entry(e.namespace().unwrap_or_default()).or_default().push(EventFact {
                type_: e.type_.unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
                note: e.message.unwrap_or_default(),
            });
        }
    };
    match list_pages(&Api::<CoreEvent>::all(client.clone()), &lp, "Events").await {
        Ok(list) => add(list),
        Err(e) if forbidden(&e) => {
            let mut unread = 0;
            for ns in namespaces {
                let api: Api<CoreEvent> = Api::namespaced(client.clone(), ns);
                match list_pages(&api, &lp, "Events").await {
                    Ok(list) => add(list),
                    Err(_) => unread += 1,
                }
            }
            let mut note = format!(
                "Events: this user may not list them in every namespace, so they were read one namespace at a time ({})",
                lists(namespaces.len())
            );
            if unread > 0 {
                let _ = write!(note, "; {unread} of those could not be read, and are judged without Events");
            }
            notes.push(note);
        }
        Err(e) => {
            notes.push(format!("Events could not be read ({e}): every namespace is judged without them"))
        }
    }
    out
}

fn lists(n: usize) -> String {
    format!("{n} list{}", if n == 1 { "" } else { "s" })
}

/// Every Secret labelled with a remote cluster id, in one list for every tenant namespace; `None`
/// when that list fails (a user who may read Secrets only in the tenant namespaces): then each
/// remote cluster's is looked for in its own tenant namespace, and a note says so.
async fn kubeconfig_secrets(
    client: &Client,
    clusters: usize,
    notes: &mut Vec<String>,
) -> Option<Vec<Secret>> {
    let api: Api<Secret> = Api::all(client.clone());
    let lp = ListParams::default().labels(REMOTE_CLUSTER_ID_LABEL);
    match list_pages(&api, &lp, "Secrets").await {
        Ok(list) => Some(list),
        Err(e) => {
            let why = if forbidden(&e) {
                "this user may not list them in every namespace".to_owned()
            } else {
                format!("listing them in every namespace failed ({e})")
            };
            notes.push(format!(
                "remote kubeconfig Secrets: {why}, so each remote cluster's was read from its tenant namespace ({})",
                lists(clusters)
            ));
            None
        }
    }
}

/// What each reachable remote cluster says of every namespace's remote namespace: the kubeconfig
/// Secrets in one list, then one client and one list of its namespaces per remote cluster,
/// whatever the number of namespaces.
async fn remotes_everywhere(
    client: &Client,
    adapter: &Adapter,
    cluster: &ClusterFacts,
    by_ns: &mut BTreeMap<String, NamespaceFacts>,
    remotes: &RemoteClients,
    notes: &mut Vec<String>,
) {
    let offloaded = || by_ns.values().filter_map(|f| f.offloading.as_ref());
    let conditions: Vec<crate::crd::Shared> = offloaded()
        .filter_map(|o| o.status.as_ref())
        .flat_map(|s| s.remote_namespaces_conditions.keys().cloned())
        .collect();
    let ids = cluster.cluster_ids(conditions.iter());
    let by_secret = ids.iter().filter(|id| remotes.needs_secret(id)).count();
    let secrets = match by_secret {
        0 => None,
        n => kubeconfig_secrets(client, n, notes).await,
    };
    for id in ids {
        let tenant = cluster.tenant_of(&id);
        let got = match &secrets {
            Some(listed) => remotes.get_listed(listed, &id, &tenant).await,
            None => remotes.get(client, &id, &tenant).await,
        };
        let remote = match got {
            Ok(Some(remote)) => remote,
            Ok(None) => continue,
            Err(e) => {
                for f in by_ns.values_mut().filter(|f| f.offloading.is_some()) {
                    f.unusable_kubeconfigs.push(e.to_string());
                }
                continue;
            }
        };
        let listed = remote_namespaces(remote, adapter.names).await;
        let known = cluster.nodes.iter().any(|n| n.cluster_id == id) || cluster.maps.contains_key(&id);
        for f in by_ns.values_mut() {
            let Some(obj) = &f.offloading else { continue };
            let in_status =
                obj.status.as_ref().is_some_and(|s| s.remote_namespaces_conditions.contains_key(id.as_str()));
            if !known && !in_status {
                continue;
            }
            let fact = match (&listed, wanted_name(cluster.maps.get(&id), &f.name)) {
                (Err(e), _) => RemoteFact::Unreachable(e.clone()),
                (Ok(_), None) => RemoteFact::Reachable,
                (Ok(names), Some(name)) => match names.get(&name) {
                    Some(owner) => RemoteFact::Exists { name, owner: owner.clone() },
                    None => RemoteFact::Missing { name },
                },
            };
            f.remotes.insert(id.clone(), fact);
        }
    }
}

/// Every namespace of a remote cluster, with the value of the generation's ownership annotation.
async fn remote_namespaces(
    remote: Client,
    names: &Names,
) -> Result<BTreeMap<String, Option<String>>, String> {
    let api: Api<Namespace> = Api::all(remote);
    let listed = list_pages(&api, &ListParams::default(), "Namespaces").await.map_err(|e| match e {
        DiagnoseError::Read { source, .. } => source.to_string(),
        e => e.to_string(),
    })?;
    Ok(listed
        .iter()
        .map(|ns| (ns.name_any(), ns.annotations().get(names.owner_annotation).cloned()))
        .collect())
}

/// The NamespaceOffloadings of `namespace`: the one named `offloading`, and the others.
pub async fn offloadings(
    client: &Client,
    adapter: &Adapter,
    namespace: &str,
) -> Result<NamespaceFacts, DiagnoseError> {
    let mut f = NamespaceFacts { name: namespace.to_owned(), ..Default::default() };
    let all = adapter.offloadings(client, namespace, &mut f.undecodable).await?;
    let (mine, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|o| o.name_any() == OFFLOADING_NAME);
    f.other_names = others.iter().map(|o| o.name_any()).collect();
    f.offloading = mine.into_iter().next();
    Ok(f)
}

/// What the cluster says to every namespace: the local cluster id (unless given), the tenant
/// namespaces, the virtual nodes and the NamespaceMaps.
pub async fn cluster(
    client: &Client,
    adapter: &Adapter,
    cluster_id: Option<String>,
    f: &mut ClusterFacts,
) -> Result<(), DiagnoseError> {
    f.local_cluster_id = match cluster_id {
        Some(id) => Some(id),
        None => adapter.cluster_id(client, &f.liqo_namespace).await,
    };
    f.tenants = adapter.tenants(client).await;
    f.nodes = adapter.nodes(client).await?.into();
    f.maps = adapter.maps(client, &mut f.undecodable).await?;
    Ok(())
}

/// The Events about a namespace's NamespaceOffloading, and what each remote cluster says of the
/// name its map wants (or has).
pub async fn around_offloading(
    client: &Client,
    adapter: &Adapter,
    cluster: &ClusterFacts,
    f: &mut NamespaceFacts,
    remotes: &RemoteClients,
) {
    let events: Api<Event> = Api::namespaced(client.clone(), &f.name);
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
    let Some(obj) = &f.offloading else { return };
    let conditions = obj.status.as_ref().map(|s| &s.remote_namespaces_conditions);
    for id in cluster.cluster_ids(conditions.into_iter().flat_map(|c| c.keys())) {
        let remote = match remotes.get(client, &id, &cluster.tenant_of(&id)).await {
            Ok(Some(remote)) => remote,
            Ok(None) => continue,
            Err(e) => {
                f.unusable_kubeconfigs.push(e.to_string());
                continue;
            }
        };
        let fact = remote_fact(remote, adapter.names, wanted_name(cluster.maps.get(&id), &f.name)).await;
        f.remotes.insert(id, fact);
    }
}

/// What a remote cluster says of the remote namespace `wanted`, or, with no name to look for,
/// whether it answers at all.
pub async fn remote_fact(remote: Client, names: &Names, wanted: Option<String>) -> RemoteFact {
    let api: Api<Namespace> = Api::all(remote);
    match wanted {
        Some(name) => match api.get_opt(&name).await {
            Ok(Some(ns)) => {
                let owner = ns.annotations().get(names.owner_annotation).cloned();
                RemoteFact::Exists { name, owner }
            }
            Ok(None) => RemoteFact::Missing { name },
            Err(e) => RemoteFact::Unreachable(e.to_string()),
        },
        None => match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => RemoteFact::Reachable,
            Err(e) => RemoteFact::Unreachable(e.to_string()),
        },
    }
}

/// Every install's reconcile Lease this user may list, oldest first (none when it may not: the
/// rest of the walk does not need them).
pub async fn leases(client: &Client) -> Vec<LeaseFact> {
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

#[cfg(test)]
mod tests {
    //! `gather_all` against a fake API server that answers lists and records every request: the
    //! number of requests does not grow with the namespaces, and what a user may not list across the
    //! cluster is read namespace by namespace, with a note.

    use std::sync::Mutex;

    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};

    use super::*;

    const CLUSTER: &str = "cluster-a";
    const TENANT: &str = "liqo-tenant-cluster-a";

    /// A fake API server of Liqo v0.3's objects: `namespaces` each with a Ready NamespaceOffloading,
    /// one virtual node and tenant namespace, an Event in the first namespace, and a kubeconfig
    /// Secret that does not parse; the cluster-wide lists of `forbidden` resources answer 403.
    struct Fake {
        namespaces: usize,
        forbidden: &'static [&'static str],
        requests: Mutex<Vec<String>>,
    }

    fn list(items: Vec<Value>) -> Value {
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})
    }

    impl Fake {
        fn answer(&self, req: &Request<Body>) -> Response<Body> {
            let path = req.uri().path().to_owned();
            self.requests.lock().unwrap().push(path.clone());
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let (status, body) = match segments.as_slice() {
                ["api", "v1", resource] if self.forbidden.contains(resource) => (
                    403,
                    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                        "reason": "Forbidden", "code": 403,
                        "message": format!("{resource} is forbidden: cannot list resource \"{resource}\" at the cluster scope")}),
                ),
                ["apis", "offloading.liqo.io", "v1alpha1", "namespaceoffloadings"] => (
                    200,
                    list(
                        (0..self.namespaces)
                            .map(|i| {
                                json!({
                            "apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
                            "metadata": {"name": "offloading", "namespace": format!("ns-{i}")},
                            "spec": {"clusterSelector": {"nodeSelectorTerms": []}},
                            "status": {"offloadingPhase": "Ready", "remoteNamespacesConditions": {CLUSTER: [
                                {"type": "Ready", "status": "True"}]}}})
                            })
                            .collect(),
                    ),
                ),
                ["api", "v1", "nodes"] => (
                    200,
                    list(vec![json!({"metadata": {"name": "liqo-cluster-a",
                    "labels": {"liqo.io/type": "virtual-node", "liqo.io/remote-cluster-id": CLUSTER}}})]),
                ),
                ["api", "v1", "namespaces"] => (
                    200,
                    list(vec![json!({"metadata": {"name": TENANT,
                    "labels": {"discovery.liqo.io/tenant-namespace": "true", "discovery.liqo.io/cluster-id": CLUSTER}}})]),
                ),
                ["api", "v1", "events"] | ["api", "v1", "namespaces", "ns-0", "events"] => (
                    200,
                    list(vec![json!({
                    "metadata": {"name": "e", "namespace": "ns-0"}, "involvedObject": {"name": "offloading"},
                    "type": "Warning", "reason": "Boom", "message": "it broke"})]),
                ),
                ["api", "v1", "secrets"] | ["api", "v1", "namespaces", TENANT, "secrets"] => (
                    200,
                    list(vec![json!({
                    "metadata": {"name": "kc", "namespace": TENANT, "labels": {"liqo.io/remote-cluster-id": CLUSTER}},
                    "data": {"kubeconfig": "bm90OiBbYSBrdWJlY29uZmln"}})]),
                ),
                [.., "events" | "namespacemaps"] => (200, list(vec![])),
                _ => (
                    404,
                    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": "not found"}),
                ),
            };
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string().into_bytes()))
                .unwrap()
        }
    }

    /// Runs `gather_all` against a [`Fake`]; the facts and the paths it asked for, in order.
    async fn gather_with(
        namespaces: usize,
        forbidden: &'static [&'static str],
    ) -> (ClusterFacts, Vec<NamespaceFacts>, Vec<String>) {
        let fake = Arc::new(Fake { namespaces, forbidden, requests: Mutex::default() });
        let server = fake.clone();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let res = server.answer(&req);
            async move { Ok::<_, std::convert::Infallible>(res) }
        });
        let client = Client::new(svc, "default");
        let adapter = Adapter::new(Generation::V0_3);
        let (cf, nss) =
            gather_all(&client, &adapter, Some("local".into()), "liqo", &RemoteClients::default())
                .await
                .unwrap();
        let requests = fake.requests.lock().unwrap().clone();
        (cf, nss, requests)
    }

    /// What every namespace's facts must say, however they were read.
    fn assert_facts(nss: &[NamespaceFacts], namespaces: usize) {
        assert_eq!(nss.len(), namespaces);
        assert_eq!(
            nss[0].events,
            [EventFact { type_: "Warning".into(), reason: "Boom".into(), note: "it broke".into() }]
        );
        assert!(nss[1..].iter().all(|f| f.events.is_empty()));
        for f in nss {
            assert_eq!(f.unusable_kubeconfigs.len(), 1, "{}", f.name);
            assert!(
                f.unusable_kubeconfigs[0].starts_with(&format!(
                    "the kubeconfig of remote cluster {CLUSTER} (secret {TENANT}/kc) cannot be used: "
                )),
                "{}",
                f.unusable_kubeconfigs[0]
            );
        }
    }

    #[tokio::test]
    async fn every_kind_is_listed_once_whatever_the_number_of_namespaces() {
        let (cf, nss, few) = gather_with(3, &[]).await;
        assert_facts(&nss, 3);
        assert!(cf.read_notes.is_empty(), "{:?}", cf.read_notes);
        let (_, nss, many) = gather_with(40, &[]).await;
        assert_facts(&nss, 40);
        assert_eq!(few, many, "the same requests for 3 namespaces as for 40");
        assert_eq!(
            many,
            [
                "/apis/offloading.liqo.io/v1alpha1/namespaceoffloadings",
                "/api/v1/namespaces",
                "/api/v1/nodes",
                "/apis/virtualkubelet.liqo.io/v1alpha1/namespacemaps",
                "/api/v1/events",
                "/api/v1/secrets",
            ]
        );
    }

    #[tokio::test]
    async fn what_may_not_be_listed_across_the_cluster_is_read_per_namespace_and_said() {
        let (cf, nss, requests) = gather_with(5, &["events", "secrets"]).await;
        assert_facts(&nss, 5);
        let per_namespace: Vec<&String> =
            requests.iter().filter(|p| p.starts_with("/api/v1/namespaces/")).collect();
        assert_eq!(
            per_namespace,
            [
                "/api/v1/namespaces/ns-0/events",
                "/api/v1/namespaces/ns-1/events",
                "/api/v1/namespaces/ns-2/events",
                "/api/v1/namespaces/ns-3/events",
                "/api/v1/namespaces/ns-4/events",
                "/api/v1/namespaces/liqo-tenant-cluster-a/secrets",
            ]
        );
        assert_eq!(
            cf.read_notes,
            [
                "Events: this user may not list them in every namespace, so they were read one namespace at a time (5 lists)",
                "remote kubeconfig Secrets: this user may not list them in every namespace, so each remote cluster's was read from its tenant namespace (1 list)",
            ]
        );
        let report = crate::diagnose::fleet::judge_all(&cf, &nss);
        assert_eq!(report.notes, cf.read_notes);
        let text = crate::diagnose::render::fleet_text(&report);
        assert!(text.contains("\nnote: Events: this user may not list them in every namespace"), "{text}");
    }

    #[tokio::test]
    async fn no_secret_is_listed_when_every_remote_cluster_has_a_kubeconfig_file() {
        let fake = Arc::new(Fake { namespaces: 2, forbidden: &[], requests: Mutex::default() });
        let server = fake.clone();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let res = server.answer(&req);
            async move { Ok::<_, std::convert::Infallible>(res) }
        });
        let client = Client::new(svc, "default");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.kubeconfig");
        std::fs::write(&file, "not: [a kubeconfig").unwrap();
        let remotes = RemoteClients::new(BTreeMap::from([(CLUSTER.to_owned(), file)]));
        let (_, nss) =
            gather_all(&client, &Adapter::new(Generation::V0_3), Some("local".into()), "liqo", &remotes)
                .await
                .unwrap();
        assert!(nss[0].unusable_kubeconfigs[0].contains("a.kubeconfig"), "{:?}", nss[0].unusable_kubeconfigs);
        assert!(!fake.requests.lock().unwrap().iter().any(|p| p.contains("secrets")));
    }
}

//! What the webhook knows of the local cluster, kept in memory so that no review waits on the API:
//! the Liqo generation, the local cluster id (a flag, or Liqo's ConfigMap followed live) and the
//! virtual nodes (Nodes on Liqo v0.3; on v1.x VirtualNodes, with the labels of their Node when
//! there is one, as Liqo's own matcher reads them).
//!
//! The virtual nodes are watched once per process: the webhook reads a snapshot rebuilt and indexed
//! only when a node changes (so a review costs about the same with 1 or 1 000 clusters), and the
//! reconcile loops use the same snapshot and hear of changes through [`ClusterView::node_changes`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::DynamicObject;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tracing::{error, info, warn};

use crate::failure_policy::{WatchHealth, watched};
use crate::health::{CLUSTER_ID_ROLE, CLUSTER_ROLE, Faults};
use crate::liqo::v1::{self, virtual_node_resource};
use crate::liqo::{
    CLUSTER_ID_CONFIGMAP, CLUSTER_ID_CONFIGMAP_SELECTOR, CLUSTER_ID_KEY, NODE_TYPE_LABEL,
    REMOTE_CLUSTER_ID_LABEL, STORAGE_AVAILABLE_LABEL, VIRTUAL_NODE,
};
use crate::offloading::names::rfc1123_label_problem;
use crate::offloading::{Generation, VirtualNode, VirtualNodes};

/// What a Liqo v1.x VirtualNode says about its remote cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiqoVirtualNode {
    pub name: String,
    pub cluster_id: String,
    pub labels: BTreeMap<String, String>,
    pub storage_classes: usize,
}

impl LiqoVirtualNode {
    /// `None` for a VirtualNode without `spec.clusterID` (Liqo skips those too).
    pub fn from_dynamic(obj: &DynamicObject) -> Option<Self> {
        let spec = obj.data.get("spec")?;
        let cluster_id = spec.get("clusterID")?.as_str().filter(|s| !s.is_empty())?.to_owned();
        let labels = spec
            .get("labels")
            .and_then(|l| l.as_object())
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
            .unwrap_or_default();
        let storage_classes = spec.get("storageClasses").and_then(|s| s.as_array()).map_or(0, Vec::len);
        Some(Self {
            name: obj.metadata.name.clone().unwrap_or_default(),
            cluster_id,
            labels,
            storage_classes,
        })
    }
}

/// The remote clusters as Liqo v1.2 matches them (`ForgeFakeNodeFromVirtualNode`): the labels of
/// the Node named like the VirtualNode and labelled with its cluster id when there is one;
/// otherwise the VirtualNode's `spec.labels` plus `liqo.io/remote-cluster-id` and
/// `storage.liqo.io/available` (Liqo writes "true" when the VirtualNode lists no storage class).
pub fn v1_virtual_nodes(virtual_nodes: &[LiqoVirtualNode], nodes: &[Arc<Node>]) -> Vec<VirtualNode> {
    virtual_nodes
        .iter()
        .map(|vn| {
            let node = nodes.iter().find(|n| {
                n.metadata.name.as_deref() == Some(vn.name.as_str())
                    && n.metadata.labels.as_ref().and_then(|l| l.get(REMOTE_CLUSTER_ID_LABEL))
                        == Some(&vn.cluster_id)
            });
            let labels = match node {
                Some(n) => n.metadata.labels.clone().unwrap_or_default(),
                None => {
                    let mut l = vn.labels.clone();
                    l.insert(REMOTE_CLUSTER_ID_LABEL.into(), vn.cluster_id.clone());
                    l.insert(STORAGE_AVAILABLE_LABEL.into(), (vn.storage_classes == 0).to_string());
                    l
                }
            };
            VirtualNode { name: vn.name.clone(), cluster_id: vn.cluster_id.clone(), labels }
        })
        .collect()
}

/// A cheap, shareable view of the cluster for request handlers.
#[derive(Clone, Default)]
pub struct ClusterView {
    cluster_id: Arc<RwLock<Option<String>>>,
    generation: Generation,
    nodes: Option<Store<Node>>,
    /// Liqo v1.x's VirtualNodes, when the cluster runs v1.x.
    liqo_virtual_nodes: Option<Store<DynamicObject>>,
    /// The virtual nodes as the judge sees them, indexed, shared by every review; `None` until
    /// synced.
    snapshot: Arc<RwLock<Option<Arc<VirtualNodes>>>>,
    /// Bumped each time the snapshot changes (a node's heartbeat alone changes nothing).
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    nodes_synced: Arc<AtomicBool>,
    id_synced: Arc<AtomicBool>,
    faults: Faults,
}

impl ClusterView {
    /// A view with a fixed cluster id and no cluster behind it (tests, `--reconcile=false` alone).
    pub fn fixed(cluster_id: Option<String>) -> Self {
        let view = Self::default();
        view.set_cluster_id(cluster_id);
        view.id_synced.store(true, Ordering::Release);
        view
    }

    /// The same view judging by the rules of `generation`.
    pub fn with_generation(mut self, generation: Generation) -> Self {
        self.generation = generation;
        self
    }

    /// The Liqo generation the cluster runs (v0.3 when no cluster is configured).
    pub fn generation(&self) -> Generation {
        self.generation
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.cluster_id.read().map(|g| g.clone()).unwrap_or_default()
    }

    fn set_cluster_id(&self, id: Option<String>) {
        if let Ok(mut g) = self.cluster_id.write() {
            *g = id;
        }
    }

    /// A view of these nodes, synced, with no cluster behind it (benchmarks, tests).
    pub fn with_nodes(cluster_id: Option<String>, nodes: &[Node]) -> Self {
        let view = Self::fixed(cluster_id);
        view.set_snapshot(nodes.iter().filter_map(virtual_node).collect());
        view.nodes_synced.store(true, Ordering::Release);
        view
    }

    /// The virtual nodes known now, with their index; `None` when there is no cache or it has not
    /// synced yet.
    pub fn virtual_nodes(&self) -> Option<Arc<VirtualNodes>> {
        if !self.nodes_synced.load(Ordering::Acquire) {
            return None;
        }
        self.snapshot.read().ok()?.clone()
    }

    /// The store of Nodes (the tenant loop reconciles each); `None` without a cluster.
    pub fn node_store(&self) -> Option<Store<Node>> {
        self.nodes.clone()
    }

    /// A stream that yields once now and then each time the set of virtual nodes, their cluster ids
    /// or labels change (not on status updates).
    pub fn node_changes(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        let mut rx = self.changes.subscribe();
        rx.mark_changed();
        futures::stream::unfold(rx, |mut rx| async move { rx.changed().await.ok().map(|()| ((), rx)) })
    }

    /// Rebuilds the snapshot from the caches (Nodes, and on v1.x VirtualNodes).
    fn rebuild(&self) {
        let Some(store) = &self.nodes else { return };
        let now = match &self.liqo_virtual_nodes {
            Some(vns) => {
                let vns: Vec<LiqoVirtualNode> =
                    vns.state().iter().filter_map(|o| LiqoVirtualNode::from_dynamic(o)).collect();
                v1_virtual_nodes(&vns, &store.state())
            }
            None => store.state().iter().filter_map(|n| virtual_node(n)).collect(),
        };
        self.set_snapshot(now);
    }

    /// Swaps the snapshot in when it differs, indexed once here rather than per review; tells the
    /// subscribers.
    fn set_snapshot(&self, mut now: Vec<VirtualNode>) {
        now.sort_by(|a, b| a.name.cmp(&b.name));
        let Ok(g) = self.snapshot.read() else { return };
        if g.as_deref().map(VirtualNodes::as_slice) == Some(now.as_slice()) {
            return;
        }
        drop(g);
        // Indexed outside the lock: reviews read the previous snapshot meanwhile.
        let now = Arc::new(VirtualNodes::new(now));
        let Ok(mut g) = self.snapshot.write() else { return };
        *g = Some(now);
        drop(g);
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// What keeps this process from some of its job, shared by everything that talks to the API:
    /// reported (log, metrics), never a reason to be unready.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Whether the facts the verdicts use have been read at least once: the cluster id (unless
    /// given) and the virtual nodes (with a cluster). What `/readyz` reports, with the reason and,
    /// while a cache cannot sync, what stops it. Once synced, a watch that fails later keeps the
    /// last known facts and the replica stays ready: a review judged on them is still right, and a
    /// replica refusing reviews would refuse every NamespaceOffloading write in the cluster.
    pub fn synced(&self) -> Result<(), String> {
        let (waiting, parts): (&str, &[&str]) = if !self.id_synced.load(Ordering::Acquire) {
            ("cluster id ConfigMap not read yet", &["cluster-id"])
        } else if self.nodes.is_some() && !self.nodes_synced.load(Ordering::Acquire) {
            ("virtual node cache not synced yet", &["nodes", "virtualnodes"])
        } else {
            return Ok(());
        };
        let why: Vec<String> = parts.iter().filter_map(|p| self.faults.get(p)).collect();
        if why.is_empty() { Err(waiting.to_owned()) } else { Err(format!("{waiting}: {}", why.join("; "))) }
    }

    /// Starts the caches against a cluster of that Liqo generation: virtual nodes always, and the
    /// cluster id ConfigMap unless the id was given. The returned futures (one per watched kind)
    /// run until the process stops.
    pub fn with_cluster(
        client: Client,
        fixed_id: Option<String>,
        liqo_namespace: &str,
        generation: Generation,
    ) -> (Self, Vec<BoxFuture<'static, ()>>) {
        let mut view = Self::fixed(fixed_id.clone()).with_generation(generation);
        let (nodes, node_writer) = reflector::store::<Node>();
        view.nodes = Some(nodes);
        let vn_writer = (generation == Generation::V1)
            .then(|| reflector::store::Writer::<DynamicObject>::new(virtual_node_resource()));
        view.liqo_virtual_nodes = vn_writer.as_ref().map(|w| w.as_reader());
        if fixed_id.is_none() {
            view.id_synced.store(false, Ordering::Release);
        }
        // Every task gets the view complete: each reads the others' stores.
        let mut tasks = Vec::new();
        if let Some(vn_writer) = vn_writer {
            tasks.push(view.clone().watch_virtual_nodes(client.clone(), vn_writer).boxed());
        }
        tasks.push(view.clone().watch_nodes(client.clone(), node_writer).boxed());
        if fixed_id.is_none() {
            tasks.push(view.clone().watch_cluster_id(client, liqo_namespace.to_owned()).boxed());
        }
        (view, tasks)
    }

    /// Liqo v1.x's VirtualNodes: the snapshot is rebuilt on each change once they are listed.
    async fn watch_virtual_nodes(self, client: Client, writer: reflector::store::Writer<DynamicObject>) {
        let api: Api<DynamicObject> = Api::all_with(client, &virtual_node_resource());
        let resource = v1::VIRTUAL_NODES.qualified();
        let health = WatchHealth::new(
            self.faults.clone(),
            "virtualnodes",
            "Liqo v1.x VirtualNodes",
            &resource,
            None,
            CLUSTER_ROLE,
        );
        watched(watcher(api, watcher::Config::default()).reflect(writer), health)
            .for_each(|ev| {
                if !matches!(ev, watcher::Event::Init | watcher::Event::InitApply(_)) {
                    self.rebuild();
                }
                futures::future::ready(())
            })
            .await;
    }

    /// The Nodes (on v1.x, those labelled with a cluster id): names and labels only.
    async fn watch_nodes(self, client: Client, mut writer: reflector::store::Writer<Node>) {
        // Liqo v1.x finds a VirtualNode's Node by its cluster id label alone.
        let cfg = watcher::Config::default().labels(self.generation.names().virtual_node_selector);
        let health =
            WatchHealth::new(self.faults.clone(), "nodes", "virtual nodes", "nodes", None, CLUSTER_ROLE);
        let events = watched(watcher(Api::<Node>::all(client), cfg), health);
        futures::pin_mut!(events);
        while let Some(mut ev) = events.next().await {
            // Only names and labels are used: the status (heartbeats, images) and the managed
            // fields would only take memory.
            if let watcher::Event::Apply(n) | watcher::Event::InitApply(n) = &mut ev {
                n.status = None;
                n.metadata.managed_fields = None;
            }
            writer.apply_watcher_event(&ev);
            match ev {
                watcher::Event::Apply(_) | watcher::Event::Delete(_) => self.rebuild(),
                watcher::Event::InitDone => self.nodes_listed().await,
                watcher::Event::Init | watcher::Event::InitApply(_) => {}
            }
        }
    }

    /// The end of a (re)list of Nodes: the first one syncs the cache.
    async fn nodes_listed(&self) {
        if self.nodes_synced.load(Ordering::Acquire) {
            self.rebuild();
            return;
        }
        // On v1.x the VirtualNodes are half of the picture.
        if let Some(vns) = &self.liqo_virtual_nodes {
            let _ = vns.wait_until_ready().await;
        }
        self.rebuild();
        self.nodes_synced.store(true, Ordering::Release);
        info!(nodes = self.nodes.as_ref().map_or(0, |s| s.state().len()), "virtual node cache synced");
    }

    /// Liqo's cluster id ConfigMap in `namespace`, found by name (v0.3) or by label (v1.x).
    async fn watch_cluster_id(self, client: Client, namespace: String) {
        let cms: Api<ConfigMap> = Api::namespaced(client, &namespace);
        let cfg = match self.generation {
            Generation::V0_3 => {
                watcher::Config::default().fields(&format!("metadata.name={CLUSTER_ID_CONFIGMAP}"))
            }
            Generation::V1 => watcher::Config::default().labels(CLUSTER_ID_CONFIGMAP_SELECTOR),
        };
        let health = WatchHealth::new(
            self.faults.clone(),
            "cluster-id",
            "cluster id ConfigMap",
            "configmaps",
            Some(&namespace),
            CLUSTER_ID_ROLE,
        );
        let events = watched(watcher(cms, cfg), health);
        futures::pin_mut!(events);
        while let Some(ev) = events.next().await {
            self.apply_configmap_event(ev, &namespace);
        }
    }

    fn apply_configmap_event(&self, ev: watcher::Event<ConfigMap>, ns: &str) {
        match ev {
            watcher::Event::Apply(cm) | watcher::Event::InitApply(cm) => {
                let raw = cm.data.as_ref().and_then(|d| d.get(CLUSTER_ID_KEY)).cloned();
                let id = match raw {
                    Some(id) => match rfc1123_label_problem(&id) {
                        None => Some(id),
                        Some(problem) => {
                            error!(configmap = CLUSTER_ID_CONFIGMAP, namespace = ns, cluster_id = %id, %problem,
                                "the local cluster id is not a valid RFC 1123 label; DefaultName names are not checked");
                            None
                        }
                    },
                    None => {
                        warn!(
                            configmap = CLUSTER_ID_CONFIGMAP,
                            namespace = ns,
                            "ConfigMap has no {CLUSTER_ID_KEY} key"
                        );
                        None
                    }
                };
                if id != self.cluster_id() {
                    info!(cluster_id = id.as_deref().unwrap_or("<unknown>"), "local cluster id");
                }
                self.set_cluster_id(id);
            }
            watcher::Event::Delete(_) => {
                warn!(configmap = CLUSTER_ID_CONFIGMAP, namespace = ns, "cluster id ConfigMap deleted");
                self.set_cluster_id(None);
            }
            watcher::Event::Init => {}
            watcher::Event::InitDone => {
                if self.cluster_id().is_none() {
                    warn!(
                        configmap = CLUSTER_ID_CONFIGMAP,
                        namespace = ns,
                        "no local cluster id yet: DefaultName remote names are not checked until it appears"
                    );
                }
                self.id_synced.store(true, Ordering::Release);
            }
        }
    }
}

/// A Node as a remote cluster, when it is a Liqo virtual node with a cluster id.
pub fn virtual_node(node: &Node) -> Option<VirtualNode> {
    let labels: &BTreeMap<String, String> = node.metadata.labels.as_ref()?;
    if labels.get(NODE_TYPE_LABEL).map(String::as_str) != Some(VIRTUAL_NODE) {
        return None;
    }
    Some(VirtualNode {
        name: node.metadata.name.clone().unwrap_or_default(),
        cluster_id: labels.get(REMOTE_CLUSTER_ID_LABEL)?.clone(),
        labels: labels.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vn(name: &str, id: &str, labels: serde_json::Value, storage: serde_json::Value) -> LiqoVirtualNode {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "offloading.liqo.io/v1beta1", "kind": "VirtualNode",
            "metadata": {"name": name, "namespace": format!("liqo-tenant-{id}")},
            "spec": {"clusterID": id, "labels": labels, "storageClasses": storage}
        }))
        .unwrap();
        LiqoVirtualNode::from_dynamic(&obj).unwrap()
    }

    #[test]
    fn v1_labels_come_from_the_node_else_from_the_virtual_node() {
        let a = vn("vk-a", "frosty-bird", json!({"topology.liqo.io/region": "eu"}), json!([]));
        let b = vn(
            "vk-b",
            "calm-sea",
            json!({"topology.liqo.io/region": "us"}),
            json!([{"storageClassName": "x"}]),
        );
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "vk-a", "labels": {
            "liqo.io/type": "virtual-node", "liqo.io/remote-cluster-id": "frosty-bird", "gpu": "true"}}}))
        .unwrap();
        let got = v1_virtual_nodes(&[a, b], &[Arc::new(node)]);
        assert_eq!(got[0].cluster_id, "frosty-bird");
        assert_eq!(got[0].labels.get("gpu").map(String::as_str), Some("true"));
        assert_eq!(got[0].labels.get("topology.liqo.io/region"), None, "the Node's labels win");
        assert_eq!(got[1].labels.get("topology.liqo.io/region").map(String::as_str), Some("us"));
        assert_eq!(got[1].labels.get(REMOTE_CLUSTER_ID_LABEL).map(String::as_str), Some("calm-sea"));
        assert_eq!(got[1].labels.get(STORAGE_AVAILABLE_LABEL).map(String::as_str), Some("false"));
    }

    #[test]
    fn a_virtual_node_without_cluster_id_is_skipped() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "offloading.liqo.io/v1beta1", "kind": "VirtualNode",
            "metadata": {"name": "x"}, "spec": {}
        }))
        .unwrap();
        assert_eq!(LiqoVirtualNode::from_dynamic(&obj), None);
    }
}

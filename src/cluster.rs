//! What the webhook knows of the local cluster, kept in memory so that no review waits on the API:
//! the local cluster id (a flag, or Liqo's ConfigMap followed live) and the virtual nodes.
//!
//! The virtual nodes are watched once per process: the webhook reads a snapshot rebuilt only when a
//! node is applied or deleted (so a review costs the same with 1 or 1 000 clusters), and the
//! reconcile loops use the same store and hear of changes through [`ClusterView::node_changes`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tracing::{error, info, warn};

use crate::crd::{NODE_TYPE_LABEL, REMOTE_CLUSTER_ID_LABEL, VIRTUAL_NODE};
use crate::offloading::VirtualNode;
use crate::offloading::names::rfc1123_label_problem;

/// The ConfigMap in the Liqo namespace that holds the local cluster id.
pub const CLUSTER_ID_CONFIGMAP: &str = "liqo-clusterid-configmap";
/// Its key.
pub const CLUSTER_ID_KEY: &str = "CLUSTER_ID";

/// A cheap, shareable view of the cluster for request handlers.
#[derive(Clone, Default)]
pub struct ClusterView {
    cluster_id: Arc<RwLock<Option<String>>>,
    nodes: Option<Store<Node>>,
    /// The virtual nodes as the judge sees them, shared by every review; `None` until synced.
    snapshot: Arc<RwLock<Option<Arc<[VirtualNode]>>>>,
    /// Bumped each time the snapshot changes (a node's heartbeat alone changes nothing).
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    nodes_synced: Arc<AtomicBool>,
    id_synced: Arc<AtomicBool>,
}

impl ClusterView {
    /// A view with a fixed cluster id and no cluster behind it (tests, `--reconcile=false` alone).
    pub fn fixed(cluster_id: Option<String>) -> Self {
        let view = Self::default();
        view.set_cluster_id(cluster_id);
        view.id_synced.store(true, Ordering::Release);
        view
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.cluster_id.read().map(|g| g.clone()).unwrap_or_default()
    }

    fn set_cluster_id(&self, id: Option<String>) {
        if let Ok(mut g) = self.cluster_id.write() {
            *g = id;
        }
    }

    /// A view with a fixed cluster id and these nodes, as if synced from a cluster (benches, tests).
    pub fn with_nodes(cluster_id: Option<String>, nodes: &[Node]) -> Self {
        let view = Self::fixed(cluster_id);
        view.publish(nodes.iter());
        view.nodes_synced.store(true, Ordering::Release);
        view
    }

    /// The virtual nodes known now; `None` when there is no cache or it has not synced yet.
    /// A shared snapshot: no copy, whatever the number of nodes.
    pub fn virtual_nodes(&self) -> Option<Arc<[VirtualNode]>> {
        if !self.nodes_synced.load(Ordering::Acquire) {
            return None;
        }
        self.snapshot.read().ok()?.clone()
    }

    /// The store of virtual nodes (the tenant loop reconciles each); `None` without a cluster.
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

    /// Rebuilds the snapshot from `nodes`; tells the subscribers when it differs.
    fn publish<'a>(&self, nodes: impl Iterator<Item = &'a Node>) {
        let mut now: Vec<VirtualNode> = nodes.filter_map(virtual_node).collect();
        now.sort_by(|a, b| a.name.cmp(&b.name));
        let Ok(mut g) = self.snapshot.write() else { return };
        if g.as_deref() != Some(now.as_slice()) {
            *g = Some(now.into());
            drop(g);
            self.changes.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Whether every cache this view relies on has synced (what `/readyz` reports).
    pub fn synced(&self) -> Result<(), &'static str> {
        if !self.id_synced.load(Ordering::Acquire) {
            return Err("cluster id ConfigMap not read yet");
        }
        if self.nodes.is_some() && !self.nodes_synced.load(Ordering::Acquire) {
            return Err("virtual node cache not synced yet");
        }
        Ok(())
    }

    /// Starts the caches against a cluster: virtual nodes always, and the cluster id ConfigMap
    /// unless the id was given. The returned futures run until the process stops.
    pub fn with_cluster(
        client: Client,
        fixed_id: Option<String>,
        liqo_namespace: &str,
    ) -> (Self, Vec<futures::future::BoxFuture<'static, ()>>) {
        let mut view = Self::fixed(fixed_id.clone());
        let mut tasks: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();

        let (store, mut writer) = reflector::store::<Node>();
        view.nodes = Some(store.clone());
        let nodes: Api<Node> = Api::all(client.clone());
        let cfg = watcher::Config::default().labels(&format!("{NODE_TYPE_LABEL}={VIRTUAL_NODE}"));
        let v = view.clone();
        tasks.push(Box::pin(async move {
            let stream = watcher(nodes, cfg).default_backoff();
            futures::pin_mut!(stream);
            loop {
                match stream.try_next().await {
                    Ok(Some(mut ev)) => {
                        // Only names and labels are used: the status (heartbeats, images) and the
                        // managed fields would only take memory.
                        if let watcher::Event::Apply(n) | watcher::Event::InitApply(n) = &mut ev {
                            n.status = None;
                            n.metadata.managed_fields = None;
                        }
                        writer.apply_watcher_event(&ev);
                        match ev {
                            watcher::Event::Apply(_) | watcher::Event::Delete(_) => {
                                v.publish(store.state().iter().map(|n| n.as_ref()))
                            }
                            watcher::Event::InitDone => {
                                v.publish(store.state().iter().map(|n| n.as_ref()));
                                if !v.nodes_synced.swap(true, Ordering::AcqRel) {
                                    info!(nodes = store.state().len(), "virtual node cache synced");
                                }
                            }
                            watcher::Event::Init | watcher::Event::InitApply(_) => {}
                        }
                    }
                    Ok(None) => break,
                    Err(e) => warn!(error = %e, "virtual node watch failed; retrying"),
                }
            }
        }));

        if fixed_id.is_none() {
            view.id_synced.store(false, Ordering::Release);
            let cms: Api<ConfigMap> = Api::namespaced(client, liqo_namespace);
            let cfg = watcher::Config::default().fields(&format!("metadata.name={CLUSTER_ID_CONFIGMAP}"));
            let v = view.clone();
            let ns = liqo_namespace.to_owned();
            tasks.push(Box::pin(async move {
                let stream = watcher(cms, cfg).default_backoff();
                futures::pin_mut!(stream);
                loop {
                    match stream.try_next().await {
                        Ok(Some(ev)) => v.apply_configmap_event(ev, &ns),
                        Ok(None) => break,
                        Err(e) => warn!(error = %e, "cluster id ConfigMap watch failed; retrying"),
                    }
                }
            }));
        }
        (view, tasks)
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

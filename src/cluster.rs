//! What the webhook knows of the local cluster, kept in memory so that no review waits on the API:
//! the local cluster id (a flag, or Liqo's ConfigMap followed live) and the virtual nodes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tracing::{error, info, warn};

use crate::crd::{NODE_TYPE_LABEL, REMOTE_CLUSTER_ID_LABEL, VIRTUAL_NODE};
use crate::health::{Access, CLUSTER_ID_ROLE, CLUSTER_ROLE, Faults, explain_watch};
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

    pub fn cluster_id(&self) -> Option<String> {
        self.cluster_id.read().map(|g| g.clone()).unwrap_or_default()
    }

    fn set_cluster_id(&self, id: Option<String>) {
        if let Ok(mut g) = self.cluster_id.write() {
            *g = id;
        }
    }

    /// The virtual nodes known now; `None` when there is no cache or it has not synced yet.
    pub fn virtual_nodes(&self) -> Option<Vec<VirtualNode>> {
        let store = self.nodes.as_ref()?;
        if !self.nodes_synced.load(Ordering::Acquire) {
            return None;
        }
        Some(store.state().iter().filter_map(|n| virtual_node(n)).collect())
    }

    /// What keeps this process from its job, shared by everything that talks to the API.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Whether every cache this view relies on has synced and nothing is at fault (what `/readyz`
    /// reports, with the reason).
    pub fn synced(&self) -> Result<(), String> {
        let waiting = if !self.id_synced.load(Ordering::Acquire) {
            Some("cluster id ConfigMap not read yet")
        } else if self.nodes.is_some() && !self.nodes_synced.load(Ordering::Acquire) {
            Some("virtual node cache not synced yet")
        } else {
            None
        };
        match (waiting, self.faults.summary()) {
            (None, None) => Ok(()),
            (Some(w), None) => Err(w.to_owned()),
            (None, Some(f)) => Err(f),
            (Some(w), Some(f)) => Err(format!("{w}: {f}")),
        }
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

        let (store, writer) = reflector::store::<Node>();
        view.nodes = Some(store.clone());
        let nodes: Api<Node> = Api::all(client.clone());
        let cfg = watcher::Config::default().labels(&format!("{NODE_TYPE_LABEL}={VIRTUAL_NODE}"));
        let synced = view.nodes_synced.clone();
        let faults = view.faults.clone();
        tasks.push(Box::pin(async move {
            let ready = store.clone();
            tokio::spawn(async move {
                if ready.wait_until_ready().await.is_ok() {
                    synced.store(true, Ordering::Release);
                    info!(nodes = ready.state().len(), "virtual node cache synced");
                }
            });
            watcher(nodes, cfg)
                .default_backoff()
                .reflect(writer)
                .for_each(|ev| {
                    let faults = faults.clone();
                    async move {
                        let access = Access {
                            verb: "list and watch",
                            resource: "nodes",
                            namespace: None,
                            role: CLUSTER_ROLE,
                        };
                        match ev {
                            Err(e) => {
                                let problem = explain_watch(&e, access);
                                if faults.set("nodes", format!("virtual nodes: {problem}")) {
                                    warn!(%problem, "virtual node watch failed; retrying");
                                }
                            }
                            Ok(_) => {
                                if faults.clear("nodes") {
                                    info!("virtual node watch works again");
                                }
                            }
                        }
                    }
                })
                .await;
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
                        Ok(Some(ev)) => {
                            v.faults.clear("cluster-id");
                            v.apply_configmap_event(ev, &ns)
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let access = Access {
                                verb: "list and watch",
                                resource: "configmaps",
                                namespace: Some(&ns),
                                role: CLUSTER_ID_ROLE,
                            };
                            let problem = explain_watch(&e, access);
                            if v.faults.set("cluster-id", format!("cluster id ConfigMap: {problem}")) {
                                warn!(%problem, "cluster id ConfigMap watch failed; retrying");
                            }
                        }
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

//! The reconcile loops (SPEC §4), run by one replica at a time through a Lease:
//! - [`tenant`]: a tenant namespace and NamespaceMap per remote cluster, as its virtual node appears;
//! - [`offloading`]: per NamespaceOffloading, desiredMapping entries, annotation, Namespace label,
//!   Events and status, with a finalizer that waits for the remote namespaces to go.
//!
//! Both judge objects with the same pure code as the webhook (`crate::offloading`).

pub mod lease;
pub mod offloading;
pub mod tenant;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cluster::ClusterView;
use crate::crd::{
    NODE_TYPE_LABEL, NamespaceMap, NamespaceOffloading, OFFLOADING_NAME, REMOTE_CLUSTER_ID_LABEL,
    VIRTUAL_NODE,
};
use crate::metrics::{Metrics, PhaseLabels};
use crate::offloading::status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("waiting for the remote namespaces in clusters {0:?} to be deleted")]
    WaitingForRemote(Vec<String>),
    #[error("caches not synced yet")]
    CachesNotSynced,
}

/// What the reconcilers share.
pub struct Context {
    pub client: Client,
    pub cluster: ClusterView,
    pub maps: Store<NamespaceMap>,
    maps_synced: Arc<AtomicBool>,
    pub offloadings: Store<NamespaceOffloading>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
}

impl Context {
    fn maps_synced(&self) -> bool {
        self.maps_synced.load(Ordering::Acquire)
    }

    /// The NamespaceMap of each remote cluster (the first by name, should there be several).
    pub fn maps_by_cluster(&self) -> BTreeMap<String, Arc<NamespaceMap>> {
        let mut out: BTreeMap<String, Arc<NamespaceMap>> = BTreeMap::new();
        let mut all = self.maps.state();
        all.sort_by_key(|m| m.name_any());
        for m in all {
            if let Some(id) = m.labels().get(REMOTE_CLUSTER_ID_LABEL) {
                out.entry(id.clone()).or_insert(m);
            }
        }
        out
    }

    fn count_phases(&self) {
        let mut counts: BTreeMap<&'static str, i64> = BTreeMap::new();
        for o in self.offloadings.state() {
            let phase = o.status.as_ref().and_then(|s| s.offloading_phase).map_or("Unknown", |p| p.as_str());
            *counts.entry(phase).or_default() += 1;
        }
        for phase in
            ["Ready", "NoClusterSelected", "InProgress", "SomeFailed", "AllFailed", "Terminating", "Unknown"]
        {
            self.metrics
                .objects
                .get_or_create(&PhaseLabels { phase })
                .set(counts.get(phase).copied().unwrap_or(0));
        }
    }
}

/// The NamespaceOffloadings a NamespaceMap change may concern: the namespaces it names now, and
/// those whose status still depends on its cluster (an entry that was just removed names nothing).
fn affected_by_map(
    map: &NamespaceMap,
    offloadings: &Store<NamespaceOffloading>,
) -> Vec<ObjectRef<NamespaceOffloading>> {
    let mut namespaces: BTreeSet<String> = map.spec.desired_mapping.keys().cloned().collect();
    if let Some(s) = &map.status {
        namespaces.extend(s.current_mapping.keys().cloned());
    }
    if let Some(id) = map.labels().get(REMOTE_CLUSTER_ID_LABEL) {
        for o in offloadings.state() {
            let depends =
                o.status.as_ref().and_then(|s| s.remote_namespaces_conditions.get(id)).is_some_and(|conds| {
                    conds.iter().any(|c| !(c.type_ == status::OFFLOADING_REQUIRED && c.status == "False"))
                });
            if depends && let Some(ns) = o.namespace() {
                namespaces.insert(ns);
            }
        }
    }
    namespaces.into_iter().map(|ns| ObjectRef::new(OFFLOADING_NAME).within(&ns)).collect()
}

/// Settings of the reconcile loops.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    pub lease: lease::LeaseConfig,
}

/// Runs the reconcilers while this replica holds the Lease, until `stop`.
pub async fn run(
    client: Client,
    cluster: ClusterView,
    metrics: Arc<Metrics>,
    cfg: ReconcileConfig,
    stop: CancellationToken,
) {
    let identity = cfg.lease.identity.clone();
    lease::run_while_leader(client.clone(), cfg.lease, stop, move |token| {
        controllers(client.clone(), cluster.clone(), metrics.clone(), identity.clone(), token)
    })
    .await;
}

async fn controllers(
    client: Client,
    cluster: ClusterView,
    metrics: Arc<Metrics>,
    identity: String,
    stop: CancellationToken,
) {
    let (maps, writer) = reflector::store::<NamespaceMap>();
    let maps_synced = Arc::new(AtomicBool::new(false));
    let map_api: Api<NamespaceMap> = Api::all(client.clone());
    let map_watch = watcher(map_api.clone(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .for_each(|ev| async move {
            if let Err(e) = ev {
                warn!(error = %e, "NamespaceMap watch failed; retrying");
            }
        });
    {
        let (maps, synced) = (maps.clone(), maps_synced.clone());
        tokio::spawn(async move {
            if maps.wait_until_ready().await.is_ok() {
                synced.store(true, Ordering::Release);
            }
        });
    }

    let offloading_api: Api<NamespaceOffloading> = Api::all(client.clone());
    let controller = Controller::new(offloading_api, watcher::Config::default());
    let offloadings = controller.store();
    let recorder = Recorder::new(
        client.clone(),
        Reporter { controller: "offloading-webhook".into(), instance: Some(identity) },
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        cluster,
        maps,
        maps_synced,
        offloadings: offloadings.clone(),
        recorder,
        metrics,
    });

    let node_cfg = watcher::Config::default().labels(&format!("{NODE_TYPE_LABEL}={VIRTUAL_NODE}"));
    let all = offloadings.clone();
    let dependents = offloadings.clone();
    let offloading_loop = controller
        // A virtual node that appears, goes or changes labels can change every selection.
        .watches(Api::<Node>::all(client.clone()), node_cfg.clone(), move |_| {
            all.state().iter().map(|o| ObjectRef::from_obj(o.as_ref())).collect::<Vec<_>>()
        })
        .watches(map_api, watcher::Config::default(), move |map: NamespaceMap| {
            affected_by_map(&map, &dependents)
        })
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(offloading::reconcile, offloading::error_policy, ctx)
        .for_each(|_| async {});

    let tenant_client = client.clone();
    let tenant_loop = Controller::new(Api::<Node>::all(client), node_cfg)
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(
            move |node, _ctx: Arc<()>| tenant::reconcile(node, tenant_client.clone()),
            |node, err, _| {
                warn!(node = %node.name_any(), error = %err, "tenant reconcile failed; retrying");
                kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(5))
            },
            Arc::new(()),
        )
        .for_each(|_| async {});

    info!("reconcile loops started");
    tokio::select! {
        _ = async { tokio::join!(offloading_loop, tenant_loop) } => {}
        _ = map_watch => {}
    }
    info!("reconcile loops stopped");
}

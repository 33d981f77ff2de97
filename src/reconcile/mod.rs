//! The reconcile loops (SPEC §4), run by one replica at a time through a Lease:
//! - [`tenant`]: a tenant namespace and NamespaceMap per remote cluster, as its virtual node appears;
//! - [`remote`]: the remote side — remote namespaces for desiredMapping, currentMapping — for the
//!   remote clusters it has a kubeconfig for;
//! - [`offloading`]: per NamespaceOffloading, desiredMapping entries, annotation, Namespace label,
//!   Events and status, with a finalizer that waits for the remote namespaces to go.
//!
//! Both judge objects with the same pure code as the webhook (`crate::offloading`). Our custom
//! resources are watched through [`watch`], so that one object that does not decode stops nothing.

pub mod lease;
pub mod map_writer;
pub mod offloading;
pub mod remote;
pub mod tenant;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cluster::ClusterView;
use crate::crd::{
    NODE_TYPE_LABEL, NamespaceMap, NamespaceOffloading, OFFLOADING_NAME, OffloadingPhase,
    REMOTE_CLUSTER_ID_LABEL, VIRTUAL_NODE,
};
use crate::metrics::{Metrics, PhaseLabels};

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
    pub map_writer: Arc<map_writer::MapWriter>,
    /// Namespace metadata (for the scheduling label), so a reconcile with nothing to do reads
    /// nothing from the API.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
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
            let phase = o.status.as_ref().and_then(|s| s.offloading_phase.as_ref()).map(|p| p.as_str());
            // Metric labels are static: a phase outside the enum counts as Unknown.
            let phase =
                OffloadingPhase::SUPPORTED.into_iter().find(|s| Some(*s) == phase).unwrap_or("Unknown");
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

/// What each NamespaceMap held when last seen, so that a change triggers only the namespaces whose
/// entries changed (an entry just removed names nothing in the new object).
#[derive(Default)]
struct MapMemory(std::sync::Mutex<std::collections::HashMap<String, Entries>>);

type Entries = BTreeMap<String, (Option<String>, Option<crate::crd::MappingPhase>)>;

impl MapMemory {
    fn affected(&self, map: &NamespaceMap) -> Vec<ObjectRef<NamespaceOffloading>> {
        let mut now: Entries = BTreeMap::new();
        for (ns, remote) in &map.spec.desired_mapping {
            now.entry(ns.clone()).or_default().0 = Some(remote.clone());
        }
        for (ns, cur) in map.status.iter().flat_map(|s| s.current_mapping.iter()) {
            now.entry(ns.clone()).or_default().1 = Some(cur.phase.clone());
        }
        let key = format!("{}/{}", map.namespace().unwrap_or_default(), map.name_any());
        let before = match self.0.lock() {
            Ok(mut m) => m.insert(key, now.clone()).unwrap_or_default(),
            Err(_) => Entries::new(),
        };
        let namespaces: BTreeSet<&String> =
            now.keys().chain(before.keys()).filter(|ns| now.get(*ns) != before.get(*ns)).collect();
        namespaces.into_iter().map(|ns| ObjectRef::new(OFFLOADING_NAME).within(ns)).collect()
    }
}

/// Settings of the reconcile loops.
#[derive(Clone)]
pub struct ReconcileConfig {
    pub lease: lease::LeaseConfig,
    pub remotes: remote::RemoteClients,
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
    let remotes = cfg.remotes.clone();
    let faults = cluster.faults().clone();
    lease::run_while_leader(client.clone(), cfg.lease, faults, stop, move |token| {
        controllers(
            client.clone(),
            cluster.clone(),
            metrics.clone(),
            identity.clone(),
            remotes.clone(),
            token,
        )
    })
    .await;
}

async fn controllers(
    client: Client,
    cluster: ClusterView,
    metrics: Arc<Metrics>,
    identity: String,
    remotes: remote::RemoteClients,
    stop: CancellationToken,
) {
    // Our custom resources are watched through `watch`, which decodes each object on its own.
    let decoder = watch::Decoder::new(metrics.clone());
    let (maps, writer) = reflector::store::<NamespaceMap>();
    let maps_synced = Arc::new(AtomicBool::new(false));
    let map_watch = watch::watch::<NamespaceMap>(client.clone(), watcher::Config::default(), decoder.clone())
        .default_backoff()
        .reflect(writer)
        .for_each(|ev| async move {
            if let Err(e) = ev {
                warn!(error = %e, "NamespaceMap watch failed; retrying");
            }
        });

    let (namespaces, ns_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    let ns_watch =
        watcher(Api::<PartialObjectMeta<Namespace>>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(ns_writer)
            .for_each(|ev| async move {
                if let Err(e) = ev {
                    warn!(error = %e, "Namespace watch failed; retrying");
                }
            });
    {
        let (ns_store, synced) = (namespaces.clone(), maps_synced.clone());
        let maps_ready = maps.clone();
        tokio::spawn(async move {
            if maps_ready.wait_until_ready().await.is_ok() && ns_store.wait_until_ready().await.is_ok() {
                synced.store(true, Ordering::Release);
            }
        });
    }

    let (offloadings, offloading_writer) = reflector::store::<NamespaceOffloading>();
    let offloading_watch =
        watch::watch::<NamespaceOffloading>(client.clone(), watcher::Config::default(), decoder.clone())
            .reflect(offloading_writer)
            .applied_objects();
    // The debounce folds the burst of triggers that our own writes cause into one reconcile.
    let controller = Controller::for_stream(offloading_watch, offloadings.clone()).with_config(
        controller::Config::default().debounce(std::time::Duration::from_millis(300)).concurrency(8),
    );
    let recorder = Recorder::new(
        client.clone(),
        Reporter { controller: "offloading-webhook".into(), instance: Some(identity) },
    );
    let ctx_cluster = cluster.clone();
    let writer = map_writer::MapWriter::new();
    let writer_task = tokio::spawn(writer.clone().run(client.clone(), metrics.clone(), stop.clone()));
    let ctx = Arc::new(Context {
        client: client.clone(),
        map_writer: writer,
        namespaces,
        cluster,
        maps,
        maps_synced,
        offloadings: offloadings.clone(),
        recorder,
        metrics,
    });

    let node_cfg = watcher::Config::default().labels(&format!("{NODE_TYPE_LABEL}={VIRTUAL_NODE}"));
    let all = offloadings.clone();
    let memory = MapMemory::default();
    let offloading_loop = controller
        // A virtual node that appears, goes or changes labels can change every selection.
        .watches(Api::<Node>::all(client.clone()), node_cfg.clone(), move |_| {
            all.state().iter().map(|o| ObjectRef::from_obj(o.as_ref())).collect::<Vec<_>>()
        })
        // Only the namespaces whose entries (desired or current) changed.
        .watches_stream(
            watch::watch::<NamespaceMap>(client.clone(), watcher::Config::default(), decoder.clone())
                .touched_objects(),
            move |map: NamespaceMap| memory.affected(&map),
        )
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(offloading::reconcile, offloading::error_policy, ctx)
        .for_each(|_| async {});

    let tenant_client = client.clone();
    let tenant_loop = Controller::new(Api::<Node>::all(client.clone()), node_cfg)
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

    let remote_ctx = Arc::new(remote::RemoteContext {
        client: client.clone(),
        cluster: ctx_cluster,
        remotes,
        failures: Default::default(),
    });
    let (remote_maps, remote_writer) = reflector::store::<NamespaceMap>();
    let remote_watch = watch::watch::<NamespaceMap>(client.clone(), watcher::Config::default(), decoder)
        .reflect(remote_writer)
        .applied_objects();
    let remote_loop = Controller::for_stream(remote_watch, remote_maps.clone())
        // A kubeconfig Secret appearing in a tenant namespace makes its cluster reachable.
        .watches(
            Api::<k8s_openapi::api::core::v1::Secret>::all(client.clone()),
            watcher::Config::default().labels(REMOTE_CLUSTER_ID_LABEL),
            move |secret| {
                let ns = secret.namespace();
                remote_maps
                    .state()
                    .iter()
                    .filter(|m| m.namespace() == ns)
                    .map(|m| ObjectRef::from_obj(m.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(remote::reconcile, remote::error_policy, remote_ctx)
        .for_each(|_| async {});

    info!("reconcile loops started");
    tokio::select! {
        _ = async { tokio::join!(offloading_loop, tenant_loop, remote_loop) } => {}
        _ = map_watch => {}
        _ = ns_watch => {}
    }
    let _ = writer_task.await;
    info!("reconcile loops stopped");
}

//! The reconcile loops (docs/behaviour.md, "The reconcile loop"), run by one replica at a time through a Lease:
//! - [`tenant`]: a tenant namespace and NamespaceMap per remote cluster, as its virtual node appears;
//! - [`remote`]: the remote side — remote namespaces for desiredMapping, currentMapping — for the
//!   remote clusters it has a kubeconfig for;
//! - [`offloading`]: per NamespaceOffloading, desiredMapping entries, annotation, Namespace label,
//!   Events and status, with a finalizer that waits for the remote namespaces to go;
//! - [`lease`]: which replica runs them (leader election with a renew deadline); [`installs`]:
//!   which install, when two share a cluster.
//!
//! Both judge objects with the same pure code as the webhook (`crate::offloading`). Our custom
//! resources are watched through [`watch`], so that one object that does not decode stops nothing.

pub mod backoff;
pub mod in_flight;
pub mod installs;
pub mod lease;
pub mod map_writer;
pub mod offloading;
pub mod remote;
pub mod tenant;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cluster::ClusterView;
use crate::crd::{NamespaceMap, NamespaceOffloading, OffloadingPhase};
use crate::failure_policy::{WatchHealth, retried, watched};
use crate::liqo::{OFFLOADING_NAME, REMOTE_CLUSTER_ID_LABEL};
use crate::metrics::{Metrics, PhaseLabels};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("waiting for the remote namespaces in clusters {0:?} to be deleted")]
    WaitingForRemote(Vec<String>),
    #[error("{0} not synced yet")]
    CachesNotSynced(&'static str),
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
    ns_synced: Arc<AtomicBool>,
    pub offloadings: Store<NamespaceOffloading>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Set by each reconcile; the phase gauges are recounted on a timer when set.
    phases_dirty: AtomicBool,
    /// Per namespace, writes the cache does not show yet: the status, the metadata (scheduling
    /// annotation, finalizer), the Namespace label.
    pub status_sent: in_flight::InFlight,
    pub metadata_sent: in_flight::InFlight,
    pub label_sent: in_flight::InFlight,
    /// Consecutive failures per NamespaceOffloading, for the error policy's backoff.
    pub backoff: backoff::Backoff<String>,
}

impl Context {
    fn new(
        client: Client,
        cluster: ClusterView,
        metrics: Arc<Metrics>,
        map_writer: Arc<map_writer::MapWriter>,
        caches: &Caches,
        identity: String,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter { controller: "offloading-webhook".into(), instance: Some(identity) },
        );
        Self {
            client,
            map_writer,
            namespaces: caches.namespaces.clone(),
            cluster,
            maps: caches.maps.clone(),
            maps_synced: caches.maps_synced.clone(),
            ns_synced: caches.ns_synced.clone(),
            offloadings: caches.offloadings.clone(),
            recorder,
            metrics,
            phases_dirty: AtomicBool::new(false),
            status_sent: Default::default(),
            metadata_sent: Default::default(),
            label_sent: Default::default(),
            backoff: Default::default(),
        }
    }

    fn maps_synced(&self) -> bool {
        self.maps_synced.load(Ordering::Acquire) && self.ns_synced.load(Ordering::Acquire)
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

    fn phases_changed(&self) {
        self.phases_dirty.store(true, Ordering::Release);
    }

    /// Recounts the objects per phase: a walk of the store, so done at most once per tick of
    /// [`count_phases_every`], not after each reconcile (which would be quadratic over a resync).
    fn count_phases(&self) {
        if !self.phases_dirty.swap(false, Ordering::AcqRel) {
            return;
        }
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

/// How often the phase gauges are recounted (when anything was reconciled). Never once `stop` is
/// cancelled: the gauges are the active reconciler's, cleared when it stops.
async fn count_phases_every(ctx: Arc<Context>, period: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tick.tick() => ctx.count_phases(),
        }
    }
}

/// A task that ends with whoever holds it: when leadership is lost, the `controllers` future is
/// aborted, and what it spawned must not outlive it and go on writing.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What each NamespaceMap held when last seen, so that a change triggers only the namespaces whose
/// entries changed (an entry just removed names nothing in the new object). A hash per entry, not
/// a copy of the map.
#[derive(Default)]
struct MapMemory(HashMap<String, HashMap<String, u64>>);

impl MapMemory {
    fn entries(map: &NamespaceMap) -> HashMap<String, u64> {
        let mut now: HashMap<String, (Option<&String>, Option<&crate::crd::MappingPhase>)> = HashMap::new();
        for (ns, remote) in &map.spec.desired_mapping {
            now.entry(ns.clone()).or_default().0 = Some(remote);
        }
        for (ns, cur) in map.status.iter().flat_map(|s| s.current_mapping.iter()) {
            now.entry(ns.clone()).or_default().1 = Some(&cur.phase);
        }
        now.into_iter()
            .map(|(ns, v)| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                v.hash(&mut h);
                (ns, h.finish())
            })
            .collect()
    }

    fn key(map: &NamespaceMap) -> String {
        format!("{}/{}", map.namespace().unwrap_or_default(), map.name_any())
    }

    /// The namespaces whose entries differ from what was last seen of this map.
    fn applied(&mut self, map: &NamespaceMap) -> Vec<String> {
        let now = Self::entries(map);
        let before = self.0.insert(Self::key(map), now).unwrap_or_default();
        let now = &self.0[&Self::key(map)];
        let mut changed: BTreeSet<&String> =
            now.iter().filter(|(ns, h)| before.get(*ns) != Some(*h)).map(|(ns, _)| ns).collect();
        changed.extend(before.keys().filter(|ns| !now.contains_key(*ns)));
        changed.into_iter().cloned().collect()
    }

    /// The namespaces a map that is gone held.
    fn deleted(&mut self, key: &str) -> Vec<String> {
        self.0.remove(key).map(|m| m.into_keys().collect()).unwrap_or_default()
    }

    /// Maps remembered but not in `present` (gone while the watch was down).
    fn missing(&self, present: &BTreeSet<String>) -> Vec<String> {
        self.0.keys().filter(|k| !present.contains(*k)).cloned().collect()
    }
}

/// Settings of the reconcile loops.
#[derive(Clone)]
pub struct ReconcileConfig {
    pub lease: lease::LeaseConfig,
    /// The Lease's own client, without the client-side rate limit (see `kube_client::KubeClients`).
    pub lease_client: Client,
    pub remotes: crate::remote_clients::RemoteClients,
}

/// Runs the reconcilers while this replica holds the Lease, until `stop`: [`lease`] starts
/// [`controllers`] with a token of its own, and when leadership ends cancels that token, waits a
/// short grace, then aborts the task, and everything it spawned with it.
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
    let lease_metrics = metrics.clone();
    lease::run_while_leader(cfg.lease_client, cfg.lease, faults, lease_metrics, stop, move |token| {
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

/// The loops' work while this replica leads, step by step: the shared watches, the batching
/// NamespaceMap writer, the context, the three loops. Returns once `stop` is cancelled and the loops
/// have wound down (or a watch ended), with the loop's faults cleared.
async fn controllers(
    client: Client,
    cluster: ClusterView,
    metrics: Arc<Metrics>,
    identity: String,
    remotes: crate::remote_clients::RemoteClients,
    stop: CancellationToken,
) {
    let map_writer = map_writer::MapWriter::new();
    let SharedWatches { caches, offloading_triggers, entry_triggers, map_triggers, running } =
        SharedWatches::start(&client, &cluster, &metrics, remotes.reads_kubeconfig_secrets(), &map_writer);
    let mut writer_task =
        AbortOnDrop(tokio::spawn(map_writer.clone().run(client.clone(), metrics.clone(), stop.clone())));
    let ctx = Arc::new(Context::new(
        client.clone(),
        cluster.clone(),
        metrics.clone(),
        map_writer,
        &caches,
        identity,
    ));
    let mut phases_task =
        AbortOnDrop(tokio::spawn(count_phases_every(ctx.clone(), Duration::from_secs(1), stop.clone())));
    let remote_ctx = Arc::new(remote::RemoteContext {
        client: client.clone(),
        cluster: cluster.clone(),
        remotes,
        secrets: caches.secrets.clone(),
        metrics: metrics.clone(),
        failures: Default::default(),
        checked: Default::default(),
    });

    info!("reconcile loops started");
    tokio::select! {
        _ = async {
            tokio::join!(
                offloading_loop(ctx, offloading_triggers, entry_triggers, stop.clone()),
                tenant_loop(client, cluster.clone(), metrics, stop.clone()),
                remote_loop(remote_ctx, caches.maps.clone(), map_triggers, stop.clone()),
            )
        } => {}
        _ = running => {}
    }
    let _ = (&mut writer_task.0).await;
    let _ = (&mut phases_task.0).await;
    // Whatever the loop reported is over with it (the leadership reports its own).
    cluster.faults().clear_loop();
    info!("reconcile loops stopped");
}

/// What the shared watches fill, read by the loops.
struct Caches {
    maps: Store<NamespaceMap>,
    maps_synced: Arc<AtomicBool>,
    /// Namespace metadata (see [`keep_what_namespaces_are_read_for`]).
    namespaces: Store<PartialObjectMeta<Namespace>>,
    ns_synced: Arc<AtomicBool>,
    /// Kubeconfig Secrets, when asked for (otherwise empty).
    secrets: Store<Secret>,
    offloadings: Store<NamespaceOffloading>,
}

/// One watch per kind, shared by the loops: NamespaceMaps (store + triggers of both loops),
/// Namespaces (metadata), kubeconfig Secrets (when asked for), NamespaceOffloadings (the
/// offloading loop's own). The virtual nodes are `cluster`'s, which the webhook watches anyway.
struct SharedWatches {
    caches: Caches,
    /// NamespaceOffloadings that changed (a relist's at its end: see [`watch::triggers`]); the
    /// watch runs as the offloading loop reads them.
    offloading_triggers: BoxStream<'static, ObjectRef<NamespaceOffloading>>,
    /// The NamespaceOffloadings of the namespaces whose NamespaceMap entries changed.
    entry_triggers: mpsc::UnboundedReceiver<ObjectRef<NamespaceOffloading>>,
    /// The NamespaceMaps the remote loop is to look at (a map or a kubeconfig Secret changed).
    map_triggers: mpsc::UnboundedReceiver<ObjectRef<NamespaceMap>>,
    /// The watches of NamespaceMaps, Namespaces and Secrets, until one of them ends.
    running: BoxFuture<'static, ()>,
}

impl SharedWatches {
    fn start(
        client: &Client,
        cluster: &ClusterView,
        metrics: &Arc<Metrics>,
        reads_kubeconfig_secrets: bool,
        map_writer: &Arc<map_writer::MapWriter>,
    ) -> Self {
        let faults = cluster.faults();
        let decoder = watch::Decoder::new(metrics.clone());
        let (offloading_tx, entry_triggers) = mpsc::unbounded_channel();
        let (remote_tx, map_triggers) = mpsc::unbounded_channel();

        let (maps, maps_writer) = reflector::store::<NamespaceMap>();
        let maps_synced = Arc::new(AtomicBool::new(false));
        let map_watch = map_hub(
            client.clone(),
            WatchHealth::of_loop(faults.clone(), "namespacemaps"),
            decoder.clone(),
            maps_writer,
            maps_synced.clone(),
            map_writer.clone(),
            offloading_tx,
            remote_tx.clone(),
        );

        let (namespaces, ns_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
        let ns_synced = Arc::new(AtomicBool::new(false));
        let ns_watch = namespace_watch(
            client.clone(),
            WatchHealth::of_loop(faults.clone(), "namespaces"),
            ns_writer,
            ns_synced.clone(),
        );

        let (secrets, secrets_writer) = reflector::store::<Secret>();
        // Without `--remote-kubeconfig-secrets` no Secret is read (the store stays empty), so the
        // default RBAC grants none.
        let secret_watch = if reads_kubeconfig_secrets {
            let health = WatchHealth::of_loop(faults.clone(), "secrets");
            secret_hub(client.clone(), health, secrets_writer, maps.clone(), remote_tx).boxed()
        } else {
            futures::future::pending().boxed()
        };

        let (offloadings, offloading_writer) = reflector::store::<NamespaceOffloading>();
        let offloading_triggers = offloading_watch(
            client.clone(),
            WatchHealth::of_loop(faults.clone(), "namespaceoffloadings"),
            decoder,
            offloading_writer,
        )
        .boxed();

        let running = async move {
            tokio::select! {
                _ = map_watch => {}
                _ = ns_watch => {}
                _ = secret_watch => {}
            }
        }
        .boxed();
        let caches = Caches { maps, maps_synced, namespaces, ns_synced, secrets, offloadings };
        Self { caches, offloading_triggers, entry_triggers, map_triggers, running }
    }
}

/// The offloading loop: each NamespaceOffloading on its own changes, on its namespace's
/// NamespaceMap entries changing, and all of them when the virtual nodes change.
async fn offloading_loop(
    ctx: Arc<Context>,
    triggers: BoxStream<'static, ObjectRef<NamespaceOffloading>>,
    entry_triggers: mpsc::UnboundedReceiver<ObjectRef<NamespaceOffloading>>,
    stop: CancellationToken,
) {
    let node_changes = ctx.cluster.node_changes();
    // Fed as requests rather than by a watch of its own, so that a relist's objects wait for the
    // relist's end (see `watch::triggers`). The debounce folds the burst of triggers that our own
    // writes cause into one reconcile.
    let no_watch_of_its_own = futures::stream::pending::<Result<NamespaceOffloading, watcher::Error>>();
    Controller::for_stream(no_watch_of_its_own, ctx.offloadings.clone())
        .with_config(controller::Config::default().debounce(Duration::from_millis(300)).concurrency(16))
        // A virtual node that appears, goes or changes labels can change every selection (the
        // first item is now: the initial list triggers every object anyway).
        .reconcile_all_on(node_changes.skip(1))
        .reconcile_on(triggers)
        // Only the namespaces whose entries (desired or current) changed.
        .reconcile_on(channel_stream(entry_triggers))
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(offloading::reconcile, offloading::error_policy, ctx)
        // Reconcile errors go through error_policy, the watch's through its WatchHealth.
        .for_each(|_| async {})
        .await
}

/// The tenant loop: a tenant namespace and NamespaceMap per virtual node, all of them each time
/// the virtual nodes change.
async fn tenant_loop(client: Client, cluster: ClusterView, metrics: Arc<Metrics>, stop: CancellationToken) {
    let Some(node_store) = cluster.node_store() else {
        warn!("no virtual node cache: tenant namespaces and NamespaceMaps are not created");
        return;
    };
    let (faults, err_faults) = (cluster.faults().clone(), cluster.faults().clone());
    Controller::for_stream(futures::stream::pending(), node_store)
        .reconcile_all_on(cluster.node_changes())
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(
            move |node, failures: Arc<backoff::Backoff<String>>| {
                let (client, metrics, faults) = (client.clone(), metrics.clone(), faults.clone());
                async move {
                    let name = node.name_any();
                    let result = tenant::reconcile(node, client, metrics).await;
                    if result.is_ok() {
                        failures.succeeded(&name);
                        backoff::report_success(&faults, "tenant-loop", "tenant");
                    }
                    result
                }
            },
            move |node, err, failures| {
                let wait = failures.failed(&node.name_any());
                if !backoff::report_failure(&err_faults, "tenant-loop", "tenant", err) {
                    warn!(node = %node.name_any(), error = %err, retry_in = ?wait, "tenant reconcile failed; retrying");
                }
                controller::Action::requeue(wait)
            },
            Arc::new(backoff::Backoff::<String>::default()),
        )
        .for_each(|_| async {})
        .await
}

/// The remote loop: each NamespaceMap the map and Secret watches name.
async fn remote_loop(
    ctx: Arc<remote::RemoteContext>,
    maps: Store<NamespaceMap>,
    triggers: mpsc::UnboundedReceiver<ObjectRef<NamespaceMap>>,
    stop: CancellationToken,
) {
    Controller::for_stream(futures::stream::pending(), maps)
        .reconcile_on(channel_stream(triggers))
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(remote::reconcile, remote::error_policy, ctx)
        .for_each(|_| async {})
        .await
}

/// The one watch of Namespaces: their metadata, kept lean, for the scheduling label.
async fn namespace_watch(
    client: Client,
    health: WatchHealth,
    writer: reflector::store::Writer<PartialObjectMeta<Namespace>>,
    synced: Arc<AtomicBool>,
) {
    let api = Api::<PartialObjectMeta<Namespace>>::all(client);
    let watch =
        watcher(api, watcher::Config::default()).modify(keep_what_namespaces_are_read_for).reflect(writer);
    watched(watch, health)
        .for_each(|ev| {
            if let watcher::Event::InitDone = ev
                && !synced.swap(true, Ordering::AcqRel)
            {
                info!("Namespace cache synced");
            }
            futures::future::ready(())
        })
        .await
}

/// The one watch of NamespaceOffloadings: fills their store and names those to reconcile.
fn offloading_watch(
    client: Client,
    mut health: WatchHealth,
    decoder: Arc<watch::Decoder>,
    writer: reflector::store::Writer<NamespaceOffloading>,
) -> impl Stream<Item = ObjectRef<NamespaceOffloading>> + Send + 'static {
    let watch = watch::watch::<NamespaceOffloading>(client, listed_in_pages(OFFLOADINGS_PER_PAGE), decoder);
    watch::triggers(
        retried(watch)
            .modify(keep_what_offloadings_are_read_for)
            .reflect(writer)
            .inspect(move |ev| health.event(ev)),
    )
}

/// A Namespace as the cache keeps it: its name, version and scheduling label, nothing else. Every
/// namespace of the cluster is cached, and most carry labels and annotations of their own (a
/// one-entry map alone costs half a kilobyte).
fn keep_what_namespaces_are_read_for(ns: &mut PartialObjectMeta<Namespace>) {
    let m = std::mem::take(&mut ns.metadata);
    let labels = m
        .labels
        .map(|mut l| {
            l.retain(|k, _| k == crate::liqo::SCHEDULING_ENABLED);
            l
        })
        .filter(|l| !l.is_empty());
    ns.metadata = kube::api::ObjectMeta {
        name: m.name,
        resource_version: m.resource_version,
        uid: m.uid,
        labels,
        ..Default::default()
    };
}

/// A NamespaceOffloading as the cache keeps it: without the labels and the annotations other than
/// the scheduling one, which nothing here reads (`kubectl apply` alone leaves a copy of the whole
/// object in an annotation). Writes are merge patches, never the cached object sent back.
fn keep_what_offloadings_are_read_for(o: &mut NamespaceOffloading) {
    o.metadata.labels = None;
    if let Some(a) = o.metadata.annotations.as_mut() {
        a.retain(|k, _| k == crate::liqo::SCHEDULING_ENABLED);
    }
    if o.metadata.annotations.as_ref().is_some_and(|a| a.is_empty()) {
        o.metadata.annotations = None;
    }
    o.metadata.managed_fields = None;
}

/// Objects per page of a (re)list. Each page is read whole (as text, see [`crate::raw_object::RawObject`])
/// before its objects become typed: at scale a NamespaceOffloading carries a condition per cluster
/// (25 KB with a hundred clusters) and a NamespaceMap an entry per namespace (300 KB with 5 000),
/// so kube's default of 500 per page made a restart's peak memory twice the steady state's.
const OFFLOADINGS_PER_PAGE: u32 = 100;
const MAPS_PER_PAGE: u32 = 10;

fn listed_in_pages(page_size: u32) -> watcher::Config {
    watcher::Config::default().page_size(page_size)
}

/// The items of a channel, as a stream.
fn channel_stream<T: Send + 'static>(
    rx: mpsc::UnboundedReceiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}

/// The one watch of NamespaceMaps: fills the store that every loop reads, tells the offloading
/// loop which namespaces' entries changed (and the batching writer what it sent has been seen), and
/// the remote loop which maps changed. Triggers of a (re)list wait for its end, so that no
/// reconcile reads the store before it holds the new list.
// One watch feeding the store, two loops, the writer and its health record: each is an argument.
#[allow(clippy::too_many_arguments)]
async fn map_hub(
    client: Client,
    health: WatchHealth,
    decoder: Arc<watch::Decoder>,
    mut writer: reflector::store::Writer<NamespaceMap>,
    synced: Arc<AtomicBool>,
    map_writer: Arc<map_writer::MapWriter>,
    offloading_tx: mpsc::UnboundedSender<ObjectRef<NamespaceOffloading>>,
    remote_tx: mpsc::UnboundedSender<ObjectRef<NamespaceMap>>,
) {
    let mut memory = MapMemory::default();
    let mut listed: BTreeSet<String> = BTreeSet::new();
    let mut held: Option<(Vec<String>, Vec<ObjectRef<NamespaceMap>>)> = None;
    let events =
        watched(watch::watch::<NamespaceMap>(client, listed_in_pages(MAPS_PER_PAGE), decoder), health);
    futures::pin_mut!(events);
    while let Some(ev) = events.next().await {
        writer.apply_watcher_event(&ev);
        let (namespaces, maps): (Vec<String>, Vec<ObjectRef<NamespaceMap>>) = match &ev {
            watcher::Event::Apply(m) | watcher::Event::InitApply(m) => {
                let changed = memory.applied(m);
                map_writer.seen(
                    &m.namespace().unwrap_or_default(),
                    &m.name_any(),
                    changed.iter().map(String::as_str),
                );
                if matches!(ev, watcher::Event::InitApply(_)) {
                    listed.insert(MapMemory::key(m));
                }
                (changed, vec![ObjectRef::from_obj(m)])
            }
            watcher::Event::Delete(m) => {
                map_writer.forget_map(&m.namespace().unwrap_or_default(), &m.name_any());
                (memory.deleted(&MapMemory::key(m)), Vec::new())
            }
            watcher::Event::Init => {
                listed.clear();
                held = Some((Vec::new(), Vec::new()));
                continue;
            }
            watcher::Event::InitDone => {
                if !synced.swap(true, Ordering::AcqRel) {
                    info!("NamespaceMap cache synced");
                }
                let mut gone = Vec::new();
                for key in memory.missing(&listed) {
                    gone.extend(memory.deleted(&key));
                }
                let (mut namespaces, maps) = held.take().unwrap_or_default();
                namespaces.extend(gone);
                (namespaces, maps)
            }
        };
        if let Some((held_ns, held_maps)) = held.as_mut() {
            held_ns.extend(namespaces);
            held_maps.extend(maps);
            continue;
        }
        for ns in namespaces {
            let _ = offloading_tx.send(ObjectRef::new(OFFLOADING_NAME).within(&ns));
        }
        for m in maps {
            let _ = remote_tx.send(m);
        }
    }
}

/// The one watch of kubeconfig Secrets (labelled with a remote cluster id): the store the remote
/// loop reads them from, instead of listing a tenant namespace's Secrets on each reconcile; one
/// appearing, changing or going triggers the maps of its namespace; the end of a (re)list, all.
async fn secret_hub(
    client: Client,
    health: WatchHealth,
    mut writer: reflector::store::Writer<Secret>,
    maps: Store<NamespaceMap>,
    remote_tx: mpsc::UnboundedSender<ObjectRef<NamespaceMap>>,
) {
    let api = Api::<Secret>::all(client);
    let events = watched(watcher(api, watcher::Config::default().labels(REMOTE_CLUSTER_ID_LABEL)), health);
    futures::pin_mut!(events);
    while let Some(mut ev) = events.next().await {
        if let watcher::Event::Apply(s) | watcher::Event::InitApply(s) = &mut ev {
            s.metadata.managed_fields = None;
        }
        writer.apply_watcher_event(&ev);
        let namespace = match &ev {
            watcher::Event::Apply(s) | watcher::Event::Delete(s) => Some(s.namespace()),
            watcher::Event::InitDone => None,
            watcher::Event::Init | watcher::Event::InitApply(_) => continue,
        };
        for m in maps.state().iter().filter(|m| namespace.as_ref().is_none_or(|ns| m.namespace() == *ns)) {
            let _ = remote_tx.send(ObjectRef::from_obj(m.as_ref()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(desired: &[(&str, &str)], accepted: &[&str]) -> NamespaceMap {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "virtualkubelet.liqo.io/v1alpha1", "kind": "NamespaceMap",
            "metadata": {"name": "c1-local", "namespace": "liqo-tenant-c1"},
            "spec": {"desiredMapping": desired.iter().map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<BTreeMap<_, _>>()},
            "status": {"currentMapping": accepted.iter()
                .map(|a| (a.to_string(), serde_json::json!({"remoteNamespace": format!("{a}-x"), "phase": "Accepted"})))
                .collect::<serde_json::Map<_, _>>()}
        }))
        .unwrap()
    }

    #[test]
    fn only_the_namespaces_whose_entries_changed_are_triggered() {
        let mut memory = MapMemory::default();
        assert_eq!(memory.applied(&map(&[("a", "a-x"), ("b", "b-x")], &[])), ["a", "b"]);
        // The same map again (a relist, or a change elsewhere): nothing.
        assert!(memory.applied(&map(&[("a", "a-x"), ("b", "b-x")], &[])).is_empty());
        // b accepted, c added, a removed.
        assert_eq!(memory.applied(&map(&[("b", "b-x"), ("c", "c-x")], &["b"])), ["a", "b", "c"]);
        let key = MapMemory::key(&map(&[], &[]));
        assert!(memory.missing(&BTreeSet::from([key.clone()])).is_empty());
        assert_eq!(memory.missing(&BTreeSet::new()), std::slice::from_ref(&key));
        let mut gone = memory.deleted(&key);
        gone.sort();
        assert_eq!(gone, ["b", "c"]);
    }
}

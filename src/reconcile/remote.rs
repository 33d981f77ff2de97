//! The remote side (docs/behaviour.md, "The remote side"), as Liqo v0.3's NamespaceMap controller: for every remote cluster it
//! can reach, creates the namespaces listed in desiredMapping (annotated with the local cluster
//! id), records `Accepted` or `CreationLoopBackOff` in currentMapping, and deletes the remote
//! namespaces it owns once their entry leaves desiredMapping. A namespace it does not own is never
//! deleted. Each cluster is reached with short timeouts, so one that is down delays no other.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use super::Error;
use super::backoff::{self, Backoff};
use crate::cluster::ClusterView;
use crate::crd::{MappingPhase, NamespaceMap, RemoteNamespaceStatus};
use crate::liqo::REMOTE_CLUSTER_ID_LABEL;
use crate::liqo::v0_3::{MAP_FINALIZER as FINALIZER, REMOTE_NAMESPACE_ANNOTATION};
use crate::metrics::Metrics;
use crate::remote_clients::RemoteClients;

/// What the remote side shares.
pub struct RemoteContext {
    pub client: Client,
    pub cluster: ClusterView,
    pub remotes: RemoteClients,
    /// The kubeconfig Secrets (labelled with a remote cluster id), watched once.
    pub secrets: Store<Secret>,
    pub metrics: Arc<Metrics>,
    /// Consecutive failures, for the backoff.
    pub failures: Failures,
    /// When each map's accepted remote namespaces were last all checked in their cluster.
    pub checked: Mutex<HashMap<String, std::time::Instant>>,
}

/// Consecutive failures of the remote side, each retried with exponential backoff and jitter.
pub struct Failures {
    /// Per (cluster, local namespace): a remote namespace not created (`CreationLoopBackOff`).
    namespaces: Backoff<(String, String)>,
    /// Per NamespaceMap: a reconcile that failed as a whole (the local API, an unusable kubeconfig,
    /// a remote cluster unreachable while deleting).
    maps: Backoff<String>,
}

/// A remote cluster that comes back is tried again within a minute at most.
const REMOTE_CAP: Duration = Duration::from_secs(60);

impl Default for Failures {
    fn default() -> Self {
        Self {
            namespaces: Backoff::new(backoff::BASE, REMOTE_CAP),
            maps: Backoff::new(backoff::BASE, REMOTE_CAP),
        }
    }
}

/// The fault part and name this loop's refusals by the local API server are reported under.
const PART: &str = "remote-loop";
const LOOP: &str = "NamespaceMap";

/// How often remote namespaces already accepted are checked again (one read each): a map changes
/// with every namespace offloaded, and re-reading thousands of remote namespaces on each change
/// would make the remote side quadratic.
const RECHECK: Duration = Duration::from_secs(55);

/// Who owns a remote namespace, as its annotation says.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    Us,
    Nobody,
    Other(String),
}

fn owner(ns: &Namespace, local_id: &str) -> Owner {
    match ns.annotations().get(REMOTE_NAMESPACE_ANNOTATION) {
        Some(v) if v == local_id => Owner::Us,
        Some(v) => Owner::Other(v.clone()),
        None => Owner::Nobody,
    }
}

pub async fn reconcile(map: Arc<NamespaceMap>, ctx: Arc<RemoteContext>) -> Result<Action, Error> {
    let result = reconcile_map(map, &ctx).await;
    if result.is_ok() {
        backoff::report_success(ctx.cluster.faults(), PART, LOOP);
    }
    result
}

/// The key a map's backoff and checks are kept under.
fn map_key(map: &NamespaceMap) -> String {
    format!("{}/{}", map.namespace().unwrap_or_default(), map.name_any())
}

async fn reconcile_map(map: Arc<NamespaceMap>, ctx: &Arc<RemoteContext>) -> Result<Action, Error> {
    let key = map_key(&map);
    let Some(cluster_id) = map.labels().get(REMOTE_CLUSTER_ID_LABEL).cloned() else {
        return Ok(Action::await_change());
    };
    let tenant = map.namespace().unwrap_or_default();
    let remote = match ctx.remotes.get_cached(&ctx.secrets, &cluster_id, &tenant).await {
        Ok(Some(c)) => c,
        // Nothing says how to reach it: Liqo itself (or nobody) plays the remote side.
        Ok(None) => return Ok(Action::await_change()),
        Err(e) => {
            let wait = ctx.failures.maps.failed(&key);
            warn!(cluster_id = %cluster_id, error = %e, retry_in = ?wait, "remote cluster unusable");
            return Ok(Action::requeue(wait));
        }
    };
    let Some(local_id) = ctx.cluster.cluster_id() else {
        return Err(Error::CachesNotSynced("local cluster id"));
    };
    let api: Api<NamespaceMap> = Api::namespaced(ctx.client.clone(), &tenant);
    // kube-runtime's finalizer() adds ours (one patch, then a new reconcile) or, after the cleanup,
    // removes it (one patch): counted here, as every write is.
    let has = map.finalizers().iter().any(|f| f == FINALIZER);
    let deleting = map.metadata.deletion_timestamp.is_some();
    let result = finalizer(&api, FINALIZER, map, |event| async {
        match event {
            FinalizerEvent::Apply(m) => sync(&m, &cluster_id, &local_id, &remote, ctx, false).await,
            FinalizerEvent::Cleanup(m) => sync(&m, &cluster_id, &local_id, &remote, ctx, true).await,
        }
    })
    .await;
    match &result {
        Ok(_) if has == deleting => ctx.metrics.wrote("namespacemaps"),
        Err(
            kube::runtime::finalizer::Error::AddFinalizer(_)
            | kube::runtime::finalizer::Error::RemoveFinalizer(_),
        ) => ctx.metrics.wrote("namespacemaps"),
        _ => {}
    }
    result.map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    })
}

/// Brings the remote namespaces and currentMapping in line with desiredMapping (or, on cleanup,
/// with an empty one).
async fn sync(
    map: &NamespaceMap,
    cluster_id: &str,
    local_id: &str,
    remote: &Client,
    ctx: &RemoteContext,
    cleanup: bool,
) -> Result<Action, Error> {
    let namespaces: Api<Namespace> = Api::all(remote.clone());
    let current = map.status.as_ref().map(|s| s.current_mapping.clone()).unwrap_or_default();
    let desired = if cleanup { BTreeMap::new() } else { map.spec.desired_mapping.clone() };
    let mut changes: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
    let mut retry: Option<Duration> = None;
    let map_key = map_key(map);
    // Set when something of this map failed as a whole; its backoff is reset otherwise.
    let mut map_failed = false;
    let full =
        ctx.checked.lock().map(|c| c.get(&map_key).is_none_or(|t| t.elapsed() >= RECHECK)).unwrap_or(true);

    for (local_ns, remote_name) in &desired {
        let accepted = current
            .get(local_ns)
            .is_some_and(|c| c.remote_namespace == *remote_name && c.phase == MappingPhase::Accepted);
        if accepted && !full {
            continue;
        }
        let phase = match ensure_remote(&namespaces, remote_name, local_id, &ctx.metrics).await {
            Ok(()) => {
                ctx.failures.namespaces.succeeded(&(cluster_id.to_owned(), local_ns.clone()));
                MappingPhase::Accepted
            }
            Err(why) => {
                let wait = ctx.failures.namespaces.failed(&(cluster_id.to_owned(), local_ns.clone()));
                warn!(cluster_id, namespace = %local_ns, remote = %remote_name, %why, retry_in = ?wait, "remote namespace not created");
                retry = Some(retry.map_or(wait, |r| r.min(wait)));
                MappingPhase::CreationLoopBackOff
            }
        };
        let want = RemoteNamespaceStatus { remote_namespace: remote_name.clone(), phase };
        if current.get(local_ns) != Some(&want) {
            changes.insert(local_ns.clone(), serde_json::to_value(&want).unwrap_or_default());
        }
    }
    for (local_ns, cur) in current.iter().filter(|(ns, _)| !desired.contains_key(*ns)) {
        match namespaces.get_opt(&cur.remote_namespace).await {
            Ok(Some(ns)) if owner(&ns, local_id) == Owner::Us => {
                if ns.metadata.deletion_timestamp.is_none() {
                    ctx.metrics.wrote("remote-namespaces");
                    namespaces.delete(&cur.remote_namespace, &DeleteParams::default()).await?;
                    info!(cluster_id, remote = %cur.remote_namespace, "deleting the remote namespace");
                }
                if cur.phase != MappingPhase::Terminating {
                    let t = RemoteNamespaceStatus {
                        remote_namespace: cur.remote_namespace.clone(),
                        phase: MappingPhase::Terminating,
                    };
                    changes.insert(local_ns.clone(), serde_json::to_value(&t).unwrap_or_default());
                }
                let poll = backoff::jitter(TERMINATING_POLL);
                retry = Some(retry.map_or(poll, |r| r.min(poll)));
            }
            // Gone, or not ours (never deleted): the entry goes.
            Ok(_) => {
                changes.insert(local_ns.clone(), serde_json::Value::Null);
            }
            Err(e) => {
                map_failed = true;
                let wait = ctx.failures.maps.failed(&map_key);
                warn!(cluster_id, remote = %cur.remote_namespace, error = %e, retry_in = ?wait, "remote cluster unreachable");
                retry = Some(retry.map_or(wait, |r| r.min(wait)));
            }
        }
    }
    if !changes.is_empty() {
        // Read back as JSON, like the desiredMapping writes: only our keys are our concern.
        let api: Api<DynamicObject> = Api::namespaced_with(
            ctx.client.clone(),
            &map.namespace().unwrap_or_default(),
            &ApiResource::erase::<NamespaceMap>(&()),
        );
        let patch = json!({ "status": { "currentMapping": changes } });
        ctx.metrics.wrote("namespacemaps/status");
        api.patch_status(&map.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    if !map_failed {
        ctx.failures.maps.succeeded(&map_key);
    }
    if full && let Ok(mut c) = ctx.checked.lock() {
        c.insert(map_key, std::time::Instant::now());
    }
    if cleanup && !current.is_empty() {
        return Err(Error::WaitingForRemote(vec![cluster_id.to_owned()]));
    }
    // Re-checked now and then: nothing watches the remote cluster for a namespace deleted there.
    Ok(Action::requeue(retry.unwrap_or_else(|| backoff::jitter(RECHECK_EVERY))))
}

/// Creates the remote namespace, or accepts it if it is ours already; why not, otherwise.
async fn ensure_remote(
    namespaces: &Api<Namespace>,
    name: &str,
    local_id: &str,
    metrics: &Metrics,
) -> Result<(), String> {
    match namespaces.get_opt(name).await {
        Ok(Some(ns)) => match owner(&ns, local_id) {
            Owner::Us if ns.metadata.deletion_timestamp.is_none() => Ok(()),
            Owner::Us => Err(format!("namespace {name} is still being deleted")),
            Owner::Nobody => {
                Err(format!("namespace {name} exists without annotation {REMOTE_NAMESPACE_ANNOTATION}"))
            }
            Owner::Other(id) => Err(format!("namespace {name} belongs to cluster {id}")),
        },
        Ok(None) => {
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    annotations: Some(BTreeMap::from([(
                        REMOTE_NAMESPACE_ANNOTATION.to_owned(),
                        local_id.to_owned(),
                    )])),
                    ..Default::default()
                },
                ..Default::default()
            };
            metrics.wrote("remote-namespaces");
            namespaces.create(&PostParams::default(), &ns).await.map(|_| ()).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// How often a remote namespace being deleted is looked at again.
const TERMINATING_POLL: Duration = Duration::from_secs(2);
/// How often a map with nothing failing is re-checked (before jitter).
const RECHECK_EVERY: Duration = Duration::from_secs(60);

/// Errors are retried with per-map exponential backoff and jitter; waiting for remote namespaces
/// to go, or for the local cluster id, polls at a jittered pace.
pub fn error_policy(map: Arc<NamespaceMap>, err: &Error, ctx: Arc<RemoteContext>) -> Action {
    match err {
        Error::WaitingForRemote(_) | Error::CachesNotSynced(_) => {
            Action::requeue(backoff::jitter(TERMINATING_POLL))
        }
        e => {
            let wait = ctx.failures.maps.failed(&map_key(&map));
            if backoff::report_failure(ctx.cluster.faults(), PART, LOOP, e) {
                debug!(map = %map.name_any(), error = %e, retry_in = ?wait, "remote side reconcile refused; retrying");
            } else {
                warn!(map = %map.name_any(), error = %e, retry_in = ?wait, "remote side reconcile failed; retrying");
            }
            Action::requeue(wait)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_by_annotation() {
        let ns = |v: Option<&str>| Namespace {
            metadata: ObjectMeta {
                annotations: v
                    .map(|v| BTreeMap::from([(REMOTE_NAMESPACE_ANNOTATION.to_owned(), v.to_owned())])),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(owner(&ns(Some("me")), "me"), Owner::Us);
        assert_eq!(owner(&ns(None), "me"), Owner::Nobody);
        assert_eq!(owner(&ns(Some("them")), "me"), Owner::Other("them".into()));
    }
}

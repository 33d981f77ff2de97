//! NamespaceOffloading -> NamespaceMap desiredMapping entries, annotation, Namespace label, Events
//! and status (docs/behaviour.md, "Per NamespaceOffloading"). The plan is pure (`offloading::status::plan`); this applies only its
//! differences, each write touching only this namespace's keys.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::backoff;
use super::in_flight::Digest;
use super::{Context, Error};
use crate::crd::{MappingPhase, NamespaceOffloading, NamespaceOffloadingStatus};
use crate::liqo::v0_3::OFFLOADING_FINALIZER as FINALIZER;
use crate::liqo::{OFFLOADING_NAME, SCHEDULING_ENABLED};
use crate::metrics::ReconcileLabels;
use crate::offloading::status::{Blocked, Plan, plan};

/// The fault part and name this loop's refusals are reported under.
const PART: &str = "offloading-loop";
const LOOP: &str = "NamespaceOffloading";

pub async fn reconcile(obj: Arc<NamespaceOffloading>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = backoff_key(&obj);
    let result = reconcile_inner(obj, &ctx).await;
    if result.is_ok() {
        ctx.backoff.succeeded(&key);
        backoff::report_success(ctx.cluster.faults(), PART, LOOP);
    }
    let label = match &result {
        Ok(_) => "ok",
        Err(Error::WaitingForRemote(_) | Error::CachesNotSynced(_)) => "waiting",
        Err(_) => "error",
    };
    ctx.metrics.reconciles.get_or_create(&ReconcileLabels { result: label }).inc();
    ctx.metrics.reconcile_seconds.observe(started.elapsed().as_secs_f64());
    ctx.phases_changed();
    result
}

async fn reconcile_inner(obj: Arc<NamespaceOffloading>, ctx: &Context) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    if obj.name_any() != OFFLOADING_NAME {
        // Liqo ignores it too; the webhook refuses new ones, `diagnose` reports old ones.
        debug!(%namespace, name = %obj.name_any(), "not named offloading: ignored");
        return Ok(Action::await_change());
    }
    if ctx.cluster.virtual_nodes().is_none() {
        return Err(Error::CachesNotSynced("virtual node cache"));
    }
    if !ctx.maps_synced() {
        return Err(Error::CachesNotSynced("NamespaceMap and Namespace caches"));
    }
    // Records of writes the cache now shows (or has moved past) are dropped here, on every
    // reconcile, whether or not anything is compared against them below.
    let rv = obj.metadata.resource_version.as_deref().unwrap_or_default();
    ctx.status_sent.settle(&namespace, rv);
    ctx.metadata_sent.settle(&namespace, rv);
    let has_finalizer = obj.finalizers().iter().any(|f| f == FINALIZER);
    match (obj.metadata.deletion_timestamp.is_some(), has_finalizer) {
        (false, _) => apply(&obj, &namespace, ctx, false).await,
        (true, true) => {
            let action = apply(&obj, &namespace, ctx, true).await?;
            info!(%namespace, "no remote namespace left: removing the finalizer");
            let others: Vec<&String> = obj.finalizers().iter().filter(|f| *f != FINALIZER).collect();
            write_metadata(&obj, &namespace, json!({ "finalizers": others }), ctx).await?;
            ctx.status_sent.forget(&namespace);
            ctx.metadata_sent.forget(&namespace);
            ctx.label_sent.forget(&namespace);
            Ok(action)
        }
        // Being deleted, and nothing of ours holds it.
        (true, false) => Ok(Action::await_change()),
    }
}

/// A merge patch of the object's metadata. One that changes the finalizers carries the
/// resourceVersion the decision was made on: a merge patch replaces the whole list, so a stale view
/// must fail (409, retried with the newer object) rather than drop someone else's finalizer.
async fn write_metadata(
    obj: &NamespaceOffloading,
    namespace: &str,
    mut metadata: Value,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    if metadata.get("finalizers").is_some() {
        metadata["resourceVersion"] = json!(obj.resource_version());
    }
    let api: Api<NamespaceOffloading> = Api::namespaced(ctx.client.clone(), namespace);
    ctx.metrics.wrote("namespaceoffloadings");
    let patch = json!({ "metadata": metadata });
    let written = api.patch_metadata(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(written.metadata.resource_version)
}

/// Now, to the second: what Kubernetes stores, so that comparisons after a round trip hold.
fn now() -> Time {
    let t = Timestamp::now();
    Time(t.round(k8s_openapi::jiff::Unit::Second).unwrap_or(t))
}

async fn apply(
    obj: &NamespaceOffloading,
    namespace: &str,
    ctx: &Context,
    cleanup: bool,
) -> Result<Action, Error> {
    let nodes = ctx.cluster.virtual_nodes().ok_or(Error::CachesNotSynced("virtual node cache"))?;
    // Only this namespace's entries are kept, and the maps themselves let go before any write:
    // at scale each is hundreds of KB, rewritten every few seconds, and a version held across an
    // await by each of the concurrent reconciles would stay in memory besides the cache's.
    let mut current: BTreeMap<String, MappingPhase> = BTreeMap::new();
    let mut maps: BTreeMap<String, MapEntry> = BTreeMap::new();
    for (id, m) in ctx.maps_by_cluster() {
        if let Some(c) = m.status.as_ref().and_then(|s| s.current_mapping.get(namespace)) {
            current.insert(id.clone(), c.phase.clone());
        }
        let entry = MapEntry {
            map_namespace: m.namespace().unwrap_or_default(),
            map_name: m.name_any(),
            desired: m.spec.desired_mapping.get(namespace).cloned(),
        };
        maps.insert(id, entry);
    }
    let cluster_id = ctx.cluster.cluster_id();
    let p = plan(obj, namespace, cluster_id.as_deref(), &nodes, &current, &now());

    // The finalizer goes on (with the annotation) before any entry is asked for, so that no remote
    // namespace can be created for an object that then goes away without cleanup.
    // The versions of the object known to predate this reconcile's status write: the one read,
    // and the one this reconcile's own metadata write makes (its watch event comes first).
    let mut stale = vec![obj.metadata.resource_version.clone().unwrap_or_default()];
    if !cleanup && let Some(rv) = write_annotation(obj, namespace, &p, ctx).await? {
        stale.push(rv);
    }
    let mut missing_maps = Vec::new();
    for id in &p.selected {
        if !maps.contains_key(id) {
            missing_maps.push(id.clone());
        }
    }
    // desiredMapping entries go through the batching writer; the map's watch brings us back.
    let mut unwritten = false;
    for (id, map) in &maps {
        let want = if p.selected.contains(id) { p.remote_name.as_deref() } else { None };
        if want != map.desired.as_deref() {
            ctx.map_writer.set(&map.map_namespace, &map.map_name, namespace, want);
            unwritten = true;
        }
    }

    if !cleanup {
        publish_events(obj, &p, ctx).await;
    }
    write_namespace_label(namespace, p.namespace_label, ctx).await?;
    write_status(obj, namespace, &p, &stale, ctx).await?;

    if cleanup {
        let mut left: Vec<String> = current.keys().cloned().collect();
        if unwritten {
            left.push("(desiredMapping removal not yet written)".into());
        }
        if !left.is_empty() {
            return Err(Error::WaitingForRemote(left));
        }
        return Ok(Action::await_change());
    }
    if !missing_maps.is_empty() {
        debug!(%namespace, clusters = ?missing_maps, "selected clusters have no NamespaceMap yet");
        return Ok(Action::requeue(backoff::jitter(Duration::from_secs(2))));
    }
    Ok(Action::await_change())
}

/// What a reconcile needs of one cluster's NamespaceMap: where it is, and this namespace's entry.
struct MapEntry {
    map_namespace: String,
    map_name: String,
    desired: Option<String>,
}

/// The scheduling annotation and, on the first reconcile, our finalizer: one write for both.
async fn write_annotation(
    obj: &NamespaceOffloading,
    namespace: &str,
    p: &Plan,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let mut metadata = serde_json::Map::new();
    if obj.annotations().get(SCHEDULING_ENABLED) != Some(&p.annotation) {
        metadata.insert("annotations".into(), json!({ SCHEDULING_ENABLED: p.annotation }));
    }
    if !obj.finalizers().iter().any(|f| f == FINALIZER) {
        let mut all = obj.finalizers().to_vec();
        all.push(FINALIZER.to_owned());
        metadata.insert("finalizers".into(), json!(all));
    }
    if metadata.is_empty() {
        return Ok(None);
    }
    let metadata = Value::Object(metadata);
    let rv = obj.metadata.resource_version.as_deref().unwrap_or_default();
    let digest = Digest::of(&metadata);
    if ctx.metadata_sent.already(namespace, rv, digest) {
        return Ok(None);
    }
    let written = write_metadata(obj, namespace, metadata, ctx).await?;
    ctx.metadata_sent.wrote(namespace, &[rv], digest);
    Ok(written)
}

/// One Warning Event per generation that cannot be offloaded, not one per reconcile.
async fn publish_events(obj: &NamespaceOffloading, p: &Plan, ctx: &Context) {
    let seen = obj.status.as_ref().and_then(|s| s.observed_generation);
    if seen.is_some() && seen == obj.metadata.generation {
        return;
    }
    let (reason, note) = match &p.blocked {
        Some(Blocked::InvalidSelector(e)) => ("Invalid", format!("Invalid ClusterSelector: {e}")),
        Some(Blocked::InvalidRemoteName(e)) => ("InvalidRemoteName", format!("Not offloaded: {e}")),
        _ => return,
    };
    warn!(namespace = obj.namespace().unwrap_or_default(), reason, %note, "cannot offload");
    let event = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.metrics.wrote("events");
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        warn!(error = %e, "could not publish an Event");
    }
}

async fn write_namespace_label(namespace: &str, want: bool, ctx: &Context) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    // The cache can lag behind a namespace created a moment ago; Namespace events do not trigger
    // reconciles, so a miss is read from the API rather than skipped.
    let (labels, rv) = match ctx.namespaces.get(&kube::runtime::reflector::ObjectRef::new(namespace)) {
        Some(ns) => (ns.labels().clone(), ns.metadata.resource_version.clone()),
        None => match api.get_opt(namespace).await? {
            Some(ns) => (ns.labels().clone(), ns.metadata.resource_version.clone()),
            None => return Ok(()),
        },
    };
    let has = labels.get(SCHEDULING_ENABLED).map(String::as_str) == Some("true");
    let rv = rv.unwrap_or_default();
    ctx.label_sent.settle(namespace, &rv);
    if has == want || ctx.label_sent.already(namespace, &rv, Digest::of(&want)) {
        return Ok(());
    }
    let value = if want { json!("true") } else { Value::Null };
    let patch = json!({ "metadata": { "labels": { SCHEDULING_ENABLED: value } } });
    ctx.metrics.wrote("namespaces");
    api.patch(namespace, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    ctx.label_sent.wrote(namespace, &[&rv], Digest::of(&want));
    Ok(())
}

async fn write_status(
    obj: &NamespaceOffloading,
    namespace: &str,
    p: &Plan,
    stale: &[String],
    ctx: &Context,
) -> Result<(), Error> {
    let rv = obj.metadata.resource_version.as_deref().unwrap_or_default();
    // While the cache lags, the plan stamps new transition times on conditions the write in flight
    // already carries: compared without them, that is the same status.
    if obj.status.as_ref() == Some(&p.status) {
        return Ok(());
    }
    let timeless = Digest::of(&without_times(&p.status));
    if ctx.status_sent.already(namespace, rv, timeless) {
        return Ok(());
    }
    let old = serde_json::to_value(&obj.status).unwrap_or(Value::Null);
    let new = serde_json::to_value(&p.status).unwrap_or(Value::Null);
    let api: Api<NamespaceOffloading> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = json!({ "status": merge_diff(&old, &new) });
    ctx.metrics.wrote("namespaceoffloadings/status");
    api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    let stale: Vec<&str> = stale.iter().map(String::as_str).collect();
    ctx.status_sent.wrote(namespace, &stale, timeless);
    if obj.status.as_ref().and_then(|s| s.offloading_phase.as_ref()) != p.status.offloading_phase.as_ref() {
        info!(%namespace, phase = ?p.status.offloading_phase, "offloading phase");
    }
    Ok(())
}

fn without_times(status: &NamespaceOffloadingStatus) -> NamespaceOffloadingStatus {
    let mut s = status.clone();
    for list in s.remote_namespaces_conditions.values_mut() {
        *list = list
            .iter()
            .cloned()
            .map(|c| crate::crd::RemoteNamespaceCondition { last_transition_time: None, ..c })
            .collect();
    }
    s
}

/// An RFC 7386 merge patch that turns `old` into `new`: keys gone from `new` become null.
pub fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = serde_json::Map::new();
            for (k, v) in n {
                match o.get(k) {
                    Some(ov) if ov == v => {}
                    Some(ov) => {
                        out.insert(k.clone(), merge_diff(ov, v));
                    }
                    None => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

/// The key an object's backoff is kept under.
fn backoff_key(obj: &NamespaceOffloading) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// A stale view (a conflict) waits at least this long: the newer version is on its way through
/// the watch, and a retry before it arrives would conflict again.
const CONFLICT_FLOOR: Duration = Duration::from_millis(500);

/// Errors are retried with per-object exponential backoff and jitter (see [`super::backoff`]);
/// waiting for remote namespaces or for the caches is not a failure, and polls at a jittered pace.
pub fn error_policy(obj: Arc<NamespaceOffloading>, err: &Error, ctx: Arc<Context>) -> Action {
    let namespace = obj.namespace().unwrap_or_default();
    match err {
        Error::WaitingForRemote(ids) => {
            debug!(%namespace, clusters = ?ids, "waiting for remote namespaces to go");
            Action::requeue(backoff::jitter(Duration::from_secs(2)))
        }
        Error::CachesNotSynced(what) => {
            debug!(%namespace, what, "waiting for caches");
            Action::requeue(backoff::jitter(Duration::from_millis(500)))
        }
        // Our view of the object was stale (a finalizer change carries its resourceVersion): the
        // newer version is on its way through the watch.
        Error::Kube(kube::Error::Api(s)) if s.is_conflict() => {
            let wait = ctx.backoff.failed(&backoff_key(&obj)).max(backoff::jitter(CONFLICT_FLOOR));
            debug!(%namespace, retry_in = ?wait, "conflict: retrying with the newer object");
            Action::requeue(wait)
        }
        e => {
            let wait = ctx.backoff.failed(&backoff_key(&obj));
            if backoff::report_failure(ctx.cluster.faults(), PART, LOOP, e) {
                debug!(%namespace, error = %e, retry_in = ?wait, "reconcile refused; retrying");
            } else {
                warn!(%namespace, error = %e, retry_in = ?wait, "reconcile failed; retrying");
            }
            Action::requeue(wait)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::merge_diff;
    use serde_json::json;

    #[test]
    fn merge_diff_nulls_what_is_gone_and_keeps_what_is_equal() {
        let old = json!({"a": 1, "m": {"x": [1], "y": [2]}, "gone": "v"});
        let new = json!({"a": 1, "m": {"x": [1, 3]}, "added": true});
        assert_eq!(
            merge_diff(&old, &new),
            json!({"m": {"x": [1, 3], "y": null}, "gone": null, "added": true})
        );
    }
}

//! Watches of the Liqo custom resources that one bad object cannot stop.
//!
//! kube-runtime decodes a typed list as a whole: a single stored object that does not fit the Rust
//! type (a CRD installed without our schema, a field written by another Liqo version) fails every
//! list, the watch retries forever and nothing at all is reconciled. Here objects are read as JSON
//! and decoded one by one: one that does not decode is reported (a warning naming the object and the
//! field, and a metric) and treated as absent, and the others go on. Once fixed, it is picked up.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt, future};
use kube::core::{ApiResource, ObjectMeta};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::metrics::{KindLabels, Metrics};
use crate::raw_object::{RawObject, decode_text};

/// Reports each object version that fails to decode once, however many watches read it.
pub struct Decoder {
    metrics: Arc<Metrics>,
    /// "Kind namespace/name" -> the resourceVersion last reported.
    reported: Mutex<HashMap<String, String>>,
}

impl Decoder {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self { metrics, reported: Mutex::default() })
    }

    /// `K` from `obj`, or, after reporting why not, its metadata.
    pub fn typed<K>(&self, obj: RawObject) -> Result<K, Box<ObjectMeta>>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let e = match decode_text::<K>(obj.text()) {
            Ok(k) => {
                self.forget::<K>(&obj.metadata);
                return Ok(k);
            }
            Err(e) => e,
        };
        let metadata = obj.metadata;
        let version = metadata.resource_version.clone().unwrap_or_default();
        let new = self
            .reported
            .lock()
            .is_ok_and(|mut r| r.insert(key::<K>(&metadata), version.clone()).as_ref() != Some(&version));
        if new {
            let kind = K::kind(&());
            self.metrics.decode_failures.get_or_create(&KindLabels { kind: kind.to_string() }).inc();
            warn!(
                kind = %kind,
                namespace = metadata.namespace.as_deref().unwrap_or_default(),
                name = metadata.name.as_deref().unwrap_or_default(),
                resource_version = %version,
                field = %e.path,
                error = %e.message,
                "stored object does not decode: it is left alone (not reconciled, nothing removed) \
                 until it is fixed; the others go on"
            );
        }
        Err(Box::new(metadata))
    }

    /// Forgets what was reported of an object that decodes again or is gone.
    fn forget<K: Resource<DynamicType = ()>>(&self, metadata: &ObjectMeta) {
        // Nearly always empty: no key to build on the hot path.
        if let Ok(mut r) = self.reported.lock()
            && !r.is_empty()
        {
            r.remove(&key::<K>(metadata));
        }
    }

    /// The typed event for `ev`. An object that stops decoding is treated as deleted, so that no
    /// store keeps acting on its last good version; one that never decoded is left out of a relist.
    /// A deletion always carries the metadata only (the store needs no more, and a NamespaceMap
    /// gone with its entries then triggers the namespaces it held).
    fn event<K>(&self, ev: watcher::Event<RawObject>) -> Option<watcher::Event<K>>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned + Default,
    {
        Some(match ev {
            watcher::Event::Apply(o) => match self.typed(o) {
                Ok(k) => watcher::Event::Apply(k),
                Err(metadata) => watcher::Event::Delete(stub(*metadata)),
            },
            watcher::Event::InitApply(o) => watcher::Event::InitApply(self.typed(o).ok()?),
            watcher::Event::Delete(o) => {
                self.forget::<K>(&o.metadata);
                watcher::Event::Delete(stub(o.metadata))
            }
            watcher::Event::Init => watcher::Event::Init,
            watcher::Event::InitDone => watcher::Event::InitDone,
        })
    }
}

/// "Kind namespace/name", the key of what was reported.
fn key<K: Resource<DynamicType = ()>>(metadata: &ObjectMeta) -> String {
    let namespace = metadata.namespace.as_deref().unwrap_or_default();
    format!("{} {namespace}/{}", K::kind(&()), metadata.name.as_deref().unwrap_or_default())
}

/// An object of `K` that stands for another by its metadata only: enough to remove it from a store.
fn stub<K: Resource + Default>(metadata: ObjectMeta) -> K {
    let mut k = K::default();
    *k.meta_mut() = metadata;
    k
}

/// A watch of every `K` in the cluster, decoding each object on its own. Without a backoff, like
/// kube-runtime's own watches: the caller runs it under [`crate::failure_policy`] (`retried` or
/// `watched`), since a Controller fed by `reconcile_on` does not back off what it is fed.
pub fn watch<K>(
    client: Client,
    config: watcher::Config,
    decoder: Arc<Decoder>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Default + Clone + Debug + Send + 'static,
{
    let api: Api<RawObject> = Api::all_with(client, &ApiResource::erase::<K>(&()));
    watcher(api, config).filter_map(move |ev| {
        future::ready(match ev {
            Ok(ev) => decoder.event::<K>(ev).map(Ok),
            Err(e) => Some(Err(e)),
        })
    })
}

/// What a watch's events ask a Controller to reconcile (through `reconcile_on`, after the
/// watch's `reflect`): a changed object at once, the objects of a (re)list only at its end.
///
/// kube-runtime's Controller looks each request up in its store and silently drops one the store
/// does not hold (`ObjectNotFound`, no retry). A relist after the store was first filled (an API
/// server restart, an expired resourceVersion) is buffered by the reflector until its end, so an
/// object created while the watch was down, triggered as soon as its page arrives, was never
/// reconciled at all, and one that changed meanwhile was reconciled with its old version. Held
/// here until the relist is in the store, both are read as listed.
pub fn triggers<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Send + 'static,
{
    events
        .scan(None::<Vec<ObjectRef<K>>>, |held, ev| {
            let out = match ev {
                Ok(watcher::Event::Apply(k)) => vec![ObjectRef::from_obj(&k)],
                Ok(watcher::Event::Init) => {
                    *held = Some(Vec::new());
                    Vec::new()
                }
                Ok(watcher::Event::InitApply(k)) => {
                    held.get_or_insert_with(Vec::new).push(ObjectRef::from_obj(&k));
                    Vec::new()
                }
                Ok(watcher::Event::InitDone) => held.take().unwrap_or_default(),
                // A deletion is the finalizer's business (seen as an update), and a watch error
                // is reported and backed off upstream.
                Ok(watcher::Event::Delete(_)) | Err(_) => Vec::new(),
            };
            future::ready(Some(futures::stream::iter(out)))
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::crd::NamespaceOffloading;

    fn raw(v: serde_json::Value) -> RawObject {
        serde_json::from_value(v).unwrap()
    }

    fn events(decoder: &Decoder, evs: Vec<watcher::Event<RawObject>>) -> Vec<String> {
        evs.into_iter()
            .filter_map(|ev| decoder.event::<NamespaceOffloading>(ev))
            .map(|ev| ev.to_string())
            .collect()
    }

    #[test]
    fn a_bad_object_is_absent_and_reported_once_per_version() {
        let metrics = Metrics::new();
        let decoder = Decoder::new(metrics.clone());
        let obj = |rv: &str, terms: serde_json::Value| {
            raw(json!({
                "apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
                "metadata": {"name": "offloading", "namespace": "n", "resourceVersion": rv},
                "spec": {"clusterSelector": {"nodeSelectorTerms": terms}}
            }))
        };
        let bad = obj("1", json!("all"));
        let got = events(
            &decoder,
            vec![
                watcher::Event::Init,
                watcher::Event::InitApply(bad.clone()),
                watcher::Event::InitDone,
                // The same version seen by a second watch: not reported again.
                watcher::Event::Apply(bad.clone()),
                watcher::Event::Apply(obj("2", json!(5))),
                watcher::Event::Apply(obj("3", json!([]))),
            ],
        );
        // Left out of the list; a bad update removes it from stores; the fix brings it back.
        assert_eq!(
            got,
            ["Init", "InitDone", "Delete(offloading)", "Delete(offloading)", "Apply(offloading)"]
        );
        let text = metrics.encode();
        assert!(
            text.contains(r#"offloading_webhook_decode_failures_total{kind="NamespaceOffloading"} 2"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_relists_objects_are_triggered_at_its_end_and_a_change_at_once() {
        let obj = |ns: &str| -> NamespaceOffloading {
            serde_json::from_value(json!({
                "apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
                "metadata": {"name": "offloading", "namespace": ns}, "spec": {}
            }))
            .unwrap()
        };
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let mut out = Box::pin(triggers(rx));
        let send = |ev| tx.unbounded_send(Ok(ev)).unwrap();
        let next = |out: &mut std::pin::Pin<Box<_>>| {
            futures::FutureExt::now_or_never(StreamExt::next(out)).flatten()
        };
        let name = |r: Option<ObjectRef<NamespaceOffloading>>| r.and_then(|r| r.namespace);
        send(watcher::Event::Apply(obj("a")));
        assert_eq!(name(next(&mut out)).as_deref(), Some("a"));
        send(watcher::Event::Init);
        send(watcher::Event::InitApply(obj("b")));
        send(watcher::Event::InitApply(obj("c")));
        assert!(next(&mut out).is_none(), "a relist's object triggered before its end");
        send(watcher::Event::InitDone);
        assert_eq!(name(next(&mut out)).as_deref(), Some("b"));
        assert_eq!(name(next(&mut out)).as_deref(), Some("c"));
        // A relist cut short by an error is listed again whole: what it held goes with it.
        send(watcher::Event::Init);
        send(watcher::Event::InitApply(obj("d")));
        tx.unbounded_send(Err(watcher::Error::NoResourceVersion)).unwrap();
        send(watcher::Event::Init);
        send(watcher::Event::InitApply(obj("e")));
        send(watcher::Event::InitDone);
        assert_eq!(name(next(&mut out)).as_deref(), Some("e"));
        assert!(next(&mut out).is_none());
    }
}

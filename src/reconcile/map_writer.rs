//! Batches desiredMapping changes: many namespaces' reconciles write the same few NamespaceMaps,
//! and one merge patch per map per flush replaces what would be one patch per namespace per map
//! (which, hundreds at a time against one object, time out in the API server). Each patch still
//! names only the keys that changed; the latest wanted value of a key wins.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::crd::NamespaceMap;
use crate::metrics::Metrics;

/// (tenant namespace, map name) -> local namespace -> wanted remote name (None removes the key).
type Pending = HashMap<(String, String), BTreeMap<String, Option<String>>>;

#[derive(Default)]
pub struct MapWriter {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl MapWriter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Asks for `desiredMapping[namespace] = want` on a map (a removal with `None`).
    pub fn set(&self, map_namespace: &str, map_name: &str, namespace: &str, want: Option<&str>) {
        if let Ok(mut p) = self.pending.lock() {
            p.entry((map_namespace.to_owned(), map_name.to_owned()))
                .or_default()
                .insert(namespace.to_owned(), want.map(str::to_owned));
        }
        self.wake.notify_one();
    }

    /// Flushes pending changes until `stop`; a failed patch is retried with what is wanted then.
    pub async fn run(self: Arc<Self>, client: Client, metrics: Arc<Metrics>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
            }
            // Let a burst of reconciles add to the batch.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let batch: Pending = self.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
            let writes = batch.into_iter().map(|((ns, name), keys)| {
                let client = client.clone();
                let metrics = metrics.clone();
                let this = self.clone();
                async move {
                    // Read back as JSON: another namespace's entry that does not decode must not
                    // fail a write that only touches ours.
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(client, &ns, &ApiResource::erase::<NamespaceMap>(&()));
                    let patch = json!({ "spec": { "desiredMapping": keys } });
                    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                        Ok(_) => {
                            metrics.writes.inc();
                            debug!(map = %format!("{ns}/{name}"), keys = keys.len(), "desiredMapping written");
                        }
                        // The map is gone: the tenant loop recreates it, and the next reconcile of
                        // each namespace asks again. Retrying the patch would never succeed.
                        Err(kube::Error::Api(s)) if s.is_not_found() => {
                            warn!(map = %format!("{ns}/{name}"), "NamespaceMap gone; dropping its pending desiredMapping writes");
                        }
                        Err(e) => {
                            warn!(map = %format!("{ns}/{name}"), error = %e, "desiredMapping write failed; retrying");
                            if let Ok(mut p) = this.pending.lock() {
                                let entry = p.entry((ns, name)).or_default();
                                for (k, v) in keys {
                                    // A newer wish made meanwhile wins over the failed one.
                                    entry.entry(k).or_insert(v);
                                }
                            }
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            this.wake.notify_one();
                        }
                    }
                }
            });
            futures::future::join_all(writes).await;
        }
    }
}

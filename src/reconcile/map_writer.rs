//! Batches desiredMapping changes: many namespaces' reconciles write the same few NamespaceMaps,
//! and one merge patch per map per flush replaces what would be one patch per namespace per map
//! (which, hundreds at a time against one object, time out in the API server). Each patch still
//! names only the keys that changed; the latest wanted value of a key wins.
//!
//! At scale a map holds thousands of entries, and every patch makes the API server decode, store
//! and send the whole map again, however few keys it names. So writes are paced: after a flush the
//! writer waits [`PACE`] times as long as the flush took (the API server's own pace: a busy server
//! or a large map answers slowly), collecting what comes in meanwhile into the next patch. Map
//! writes then take at most about 1 / (1 + PACE) of the time, and a small map is still written at
//! once. And a key asked for again with the value already sent is not
//! written twice while the map's watch has not shown it yet.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::backoff::Backoff;
use crate::crd::NamespaceMap;
use crate::metrics::Metrics;

/// (tenant namespace, map name).
type MapKey = (String, String);
/// Local namespace -> wanted remote name (None removes the key).
type Keys = BTreeMap<String, Option<String>>;

#[derive(Default)]
struct State {
    /// Asked for, not sent yet.
    pending: HashMap<MapKey, Keys>,
    /// Sent (or being sent), not yet seen through the map's watch.
    sent: HashMap<MapKey, Keys>,
    /// Maps whose last patch failed: what is pending for them waits until then.
    retry_at: HashMap<MapKey, Instant>,
}

pub struct MapWriter {
    state: Mutex<State>,
    wake: Notify,
    /// Consecutive failed patches per map.
    failures: Backoff<MapKey>,
}

impl Default for MapWriter {
    fn default() -> Self {
        Self { state: Mutex::default(), wake: Notify::new(), failures: Backoff::new(RETRY_BASE, RETRY_CAP) }
    }
}

/// The shortest and the longest wait between two flushes, and the wait as a multiple of the
/// last flush's time.
const MIN_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(4);
const PACE: u32 = 3;
/// No new wish for this long ends the pause early.
const QUIET: Duration = Duration::from_millis(250);
/// Maps patched at once.
const MAX_CONCURRENT_PATCHES: usize = 4;
/// A patch of a map with no answer by then has failed, and is retried as one that failed. kube's
/// client retries a 429, 503 or 504 by itself (up to 15 times, its waits doubling into minutes)
/// and waits for an answer without a timeout: unbounded, one map's patch would hold every map's
/// flush.
const PATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// A failed patch of a map is retried after this, doubling (with jitter) up to the cap. A failed
/// patch at scale is most often the API server out of breath: the first retry is no sooner than a
/// second.
const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(60);

impl MapWriter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Asks for `desiredMapping[namespace] = want` on a map (a removal with `None`), unless that
    /// is already asked for or sent.
    pub fn set(&self, map_namespace: &str, map_name: &str, namespace: &str, want: Option<&str>) {
        let key = (map_namespace.to_owned(), map_name.to_owned());
        let want = want.map(str::to_owned);
        if let Ok(mut s) = self.state.lock() {
            let known = s
                .pending
                .get(&key)
                .and_then(|k| k.get(namespace))
                .or_else(|| s.sent.get(&key).and_then(|k| k.get(namespace)));
            if known == Some(&want) {
                return;
            }
            s.pending.entry(key).or_default().insert(namespace.to_owned(), want);
        }
        self.wake.notify_one();
    }

    /// The map's watch showed a change of these namespaces' entries: what was sent for them is
    /// now what the store says (or was overtaken), and is compared against the store again.
    pub fn seen<'a>(&self, map_namespace: &str, map_name: &str, namespaces: impl Iterator<Item = &'a str>) {
        let key = (map_namespace.to_owned(), map_name.to_owned());
        if let Ok(mut s) = self.state.lock()
            && let Some(sent) = s.sent.get_mut(&key)
        {
            for ns in namespaces {
                sent.remove(ns);
            }
            if sent.is_empty() {
                s.sent.remove(&key);
            }
        }
    }

    /// The map is gone: nothing pending or sent for it stands.
    pub fn forget_map(&self, map_namespace: &str, map_name: &str) {
        let key = (map_namespace.to_owned(), map_name.to_owned());
        if let Ok(mut s) = self.state.lock() {
            s.pending.remove(&key);
            s.sent.remove(&key);
            s.retry_at.remove(&key);
        }
        self.failures.succeeded(&key);
    }

    /// What is pending for maps not waiting to be retried at `now`, now counted as sent.
    fn take_batch(&self, now: Instant) -> HashMap<MapKey, Keys> {
        let Ok(mut s) = self.state.lock() else { return HashMap::new() };
        let mut batch = std::mem::take(&mut s.pending);
        if !s.retry_at.is_empty() {
            s.retry_at.retain(|_, at| *at > now);
            let deferred: Vec<MapKey> =
                batch.keys().filter(|k| s.retry_at.contains_key(*k)).cloned().collect();
            for key in deferred {
                if let Some(keys) = batch.remove(&key) {
                    s.pending.insert(key, keys);
                }
            }
        }
        for (key, keys) in &batch {
            let sent = s.sent.entry(key.clone()).or_default();
            sent.extend(keys.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        batch
    }

    /// When the earliest map waiting to be retried with something pending is due.
    fn next_retry(&self) -> Option<Instant> {
        let s = self.state.lock().ok()?;
        s.retry_at.iter().filter(|(k, _)| s.pending.contains_key(*k)).map(|(_, at)| *at).min()
    }

    /// A patch of `key` with `keys` failed: they are pending again (a newer wish made meanwhile
    /// wins over the failed one), and the map waits its backoff.
    fn failed(&self, key: MapKey, keys: Keys) -> Duration {
        let wait = self.failures.failed(&key);
        if let Ok(mut s) = self.state.lock() {
            if let Some(sent) = s.sent.get_mut(&key) {
                for k in keys.keys() {
                    sent.remove(k);
                }
            }
            s.retry_at.insert(key.clone(), Instant::now() + wait);
            let entry = s.pending.entry(key).or_default();
            for (k, v) in keys {
                entry.entry(k).or_insert(v);
            }
        }
        wait
    }

    /// Flushes pending changes until `stop`; a failed patch is retried, with what is wanted then,
    /// after its map's backoff.
    pub async fn run(self: Arc<Self>, client: Client, metrics: Arc<Metrics>, stop: CancellationToken) {
        let mut pause = MIN_PAUSE;
        loop {
            let retry = self.next_retry();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(retry.unwrap_or_else(Instant::now).into()), if retry.is_some() => {}
            }
            // Let a burst of reconciles add to the batch, and the API server catch up; but once
            // nothing new has been asked for a moment, the burst is over: write it now.
            let deadline = tokio::time::Instant::now() + pause;
            loop {
                tokio::select! {
                    // Leadership lost or shutting down: the next leader recomputes what is pending.
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = tokio::time::sleep(QUIET.min(pause)) => break,
                    _ = self.wake.notified() => {}
                }
            }
            let batch = self.take_batch(Instant::now());
            if batch.is_empty() {
                // Nothing to write (all of it was in the last flush): the next wish goes soon.
                pause = MIN_PAUSE;
                continue;
            }
            let started = Instant::now();
            let writes = batch.into_iter().map(|((ns, name), keys)| {
                let client = client.clone();
                let metrics = metrics.clone();
                let this = self.clone();
                async move {
                    metrics.wrote("namespacemaps");
                    let answer = tokio::time::timeout(PATCH_TIMEOUT, patch(&client, &ns, &name, &keys))
                        .await
                        .unwrap_or(Err(PatchError::NoAnswer(PATCH_TIMEOUT)));
                    match answer {
                        Ok(()) => {
                            debug!(map = %format!("{ns}/{name}"), keys = keys.len(), "desiredMapping written");
                            this.failures.succeeded(&(ns, name));
                        }
                        // The map is gone: the tenant loop recreates it, and the next reconcile of
                        // each namespace asks again. Retrying the patch would never succeed.
                        Err(PatchError::Kube(kube::Error::Api(s))) if s.is_not_found() => {
                            warn!(map = %format!("{ns}/{name}"), "NamespaceMap gone; dropping its pending desiredMapping writes");
                            this.forget_map(&ns, &name);
                        }
                        Err(e) => {
                            let map = format!("{ns}/{name}");
                            let wait = this.failed((ns, name), keys);
                            warn!(%map, error = %e, retry_in = ?wait, "desiredMapping write failed; retrying");
                        }
                    }
                }
            });
            // A few at a time: each answer is a whole map, and each connection that reads one
            // keeps a read buffer of its size for as long as it lives in the pool.
            futures::stream::iter(writes)
                .buffer_unordered(MAX_CONCURRENT_PATCHES)
                .for_each(|()| async {})
                .await;
            pause = (started.elapsed() * PACE).clamp(MIN_PAUSE, MAX_PAUSE);
        }
    }
}

/// What a map patch asks back: only the map's metadata, not the whole map (hundreds of KB at
/// scale, which the API server would encode and send for each patch, and which hyper's read
/// buffers would grow to hold); the map's watch brings the new version anyway. Plain JSON is the
/// fallback of an API server that cannot convert.
const ANSWER_METADATA_ONLY: &str =
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json";

/// Why a patch of a map failed.
#[derive(Debug, thiserror::Error)]
enum PatchError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("no answer from the API server in {0:?}")]
    NoAnswer(Duration),
}

/// One merge patch of desiredMapping keys. The answer is drained as it arrives, not decoded.
async fn patch(client: &Client, ns: &str, name: &str, keys: &Keys) -> Result<(), PatchError> {
    let ar = ApiResource::erase::<NamespaceMap>(&());
    let url = DynamicObject::url_path(&ar, Some(ns));
    let body = json!({ "spec": { "desiredMapping": keys } });
    let mut req = kube::core::Request::new(url)
        .patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .map_err(kube::Error::BuildRequest)?;
    req.headers_mut().insert(http::header::ACCEPT, http::HeaderValue::from_static(ANSWER_METADATA_ONLY));
    let answer = client.request_stream(req).await?;
    let bytes =
        futures::io::copy_buf(answer, &mut futures::io::sink()).await.map_err(kube::Error::ReadEvents)?;
    debug!(namespace = ns, map = name, keys = keys.len(), answer_bytes = bytes, "NamespaceMap patched");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(w: &MapWriter) -> Vec<(String, Option<String>)> {
        let s = w.state.lock().unwrap();
        s.pending.values().flat_map(|k| k.iter().map(|(a, b)| (a.clone(), b.clone()))).collect()
    }

    #[test]
    fn a_value_sent_and_not_yet_seen_is_not_asked_again() {
        let w = MapWriter::default();
        w.set("t", "m", "a", Some("a-x"));
        w.set("t", "m", "a", Some("a-x"));
        assert_eq!(pending(&w), [("a".to_owned(), Some("a-x".to_owned()))]);
        assert_eq!(w.take_batch(Instant::now()).len(), 1);
        // Sent: a reconcile that runs before the watch shows it asks for nothing.
        w.set("t", "m", "a", Some("a-x"));
        assert!(pending(&w).is_empty());
        // Another value is asked for at once.
        w.set("t", "m", "a", None);
        assert_eq!(pending(&w), [("a".to_owned(), None)]);
        w.take_batch(Instant::now());
        // Seen through the watch: the store decides again.
        w.seen("t", "m", ["a"].into_iter());
        w.set("t", "m", "a", Some("a-x"));
        assert_eq!(pending(&w), [("a".to_owned(), Some("a-x".to_owned()))]);
        w.forget_map("t", "m");
        assert!(pending(&w).is_empty());
    }

    #[test]
    fn a_map_whose_patch_failed_waits_its_backoff_and_the_others_do_not() {
        let w = MapWriter::default();
        let (a, b) = (("t".to_owned(), "a".to_owned()), ("t".to_owned(), "b".to_owned()));
        w.set("t", "a", "x", Some("x-1"));
        w.set("t", "b", "y", Some("y-1"));
        let mut batch = w.take_batch(Instant::now());
        assert_eq!(batch.len(), 2);
        let wait = w.failed(a.clone(), batch.remove(&a).unwrap());
        assert!(wait >= RETRY_BASE / 2 && wait <= RETRY_BASE, "{wait:?}");
        // Another map goes at once; the failed one waits, its keys pending.
        w.set("t", "b", "z", Some("z-1"));
        let now = Instant::now();
        assert_eq!(w.take_batch(now).into_keys().collect::<Vec<_>>(), [b]);
        assert!(w.next_retry().is_some_and(|at| at > now));
        let mut batch = w.take_batch(now + RETRY_BASE);
        let keys = batch.remove(&a).unwrap();
        assert_eq!(keys.get("x"), Some(&Some("x-1".to_owned())));
        // Failing again, it waits longer; a success resets it.
        let wait = w.failed(a.clone(), keys);
        assert!(wait >= RETRY_BASE && wait <= 2 * RETRY_BASE, "{wait:?}");
        w.failures.succeeded(&a);
        assert_eq!(w.failures.failures(&a), 0);
    }
}

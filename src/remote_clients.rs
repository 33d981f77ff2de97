//! Clients of the remote clusters, from kubeconfig files given on the command line or from the
//! Secrets Liqo keeps in each tenant namespace. Shared by the reconcile loop's remote side and by
//! `diagnose`; each client has short timeouts, so a cluster that is down delays no other.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use crate::liqo::{KUBECONFIG_KEY, REMOTE_CLUSTER_ID_LABEL};
use crate::rate_limit::ApiRateLimit;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("the kubeconfig of remote cluster {cluster_id} ({source_name}) cannot be used: {detail}")]
    Kubeconfig { cluster_id: String, source_name: String, detail: String },
}

/// Builds a client with short timeouts from kubeconfig text (from `source_name`), its requests
/// limited by `limit`.
pub async fn client_from_kubeconfig(
    cluster_id: &str,
    source_name: &str,
    yaml: &str,
    limit: ApiRateLimit,
) -> Result<Client, RemoteError> {
    let err = |detail: String| RemoteError::Kubeconfig {
        cluster_id: cluster_id.to_owned(),
        source_name: source_name.to_owned(),
        detail,
    };
    let cfg = crate::kube_client::remote_config(yaml).await.map_err(err)?;
    crate::kube_client::client(cfg, limit).map_err(|e| err(e.to_string()))
}

/// How remote clusters are reached: kubeconfig files given on the command line, and Secrets with a
/// `kubeconfig` key labelled `liqo.io/remote-cluster-id` in the tenant namespace.
#[derive(Clone, Default)]
pub struct RemoteClients {
    files: Arc<BTreeMap<String, PathBuf>>,
    /// Built clients, keyed by cluster id, with the text they were built from.
    cache: Arc<Mutex<HashMap<String, (String, Client)>>>,
    /// The limit on each remote cluster's requests (each client its own bucket).
    limit: ApiRateLimit,
    /// Whether the reconcile loop watches the kubeconfig Secrets (`--remote-kubeconfig-secrets`).
    kubeconfig_secrets: bool,
}

impl RemoteClients {
    pub fn new(files: BTreeMap<String, PathBuf>) -> Self {
        Self { files: Arc::new(files), ..Self::default() }
    }

    /// The same, each remote client's requests limited by `limit`.
    pub fn with_rate_limit(mut self, limit: ApiRateLimit) -> Self {
        self.limit = limit;
        self
    }

    /// The same, the reconcile loop also reading kubeconfig Secrets when `on`.
    pub fn with_kubeconfig_secrets(mut self, on: bool) -> Self {
        self.kubeconfig_secrets = on;
        self
    }

    /// Whether the reconcile loop watches kubeconfig Secrets: only when asked, since that needs
    /// list and watch on Secrets cluster-wide.
    pub fn reads_kubeconfig_secrets(&self) -> bool {
        self.kubeconfig_secrets
    }

    /// The client of a remote cluster, `None` when nothing says how to reach it. Lists the
    /// tenant namespace's Secrets (for one-off use: the reconcile loop reads them from its cache,
    /// through [`RemoteClients::get_cached`]).
    pub async fn get(
        &self,
        local: &Client,
        cluster_id: &str,
        tenant_namespace: &str,
    ) -> Result<Option<Client>, RemoteError> {
        if self.files.contains_key(cluster_id) {
            return self.client_for(cluster_id, None).await;
        }
        let secrets: Api<Secret> = Api::namespaced(local.clone(), tenant_namespace);
        let lp = ListParams::default().labels(&format!("{REMOTE_CLUSTER_ID_LABEL}={cluster_id}"));
        let Ok(list) = secrets.list(&lp).await else { return Ok(None) };
        let found = list.items.iter().find_map(|s| kubeconfig_in(s, tenant_namespace));
        self.client_for(cluster_id, found).await
    }

    /// As [`RemoteClients::get`], with the Secrets read from a cache of those labelled with a
    /// remote cluster id.
    pub async fn get_cached(
        &self,
        secrets: &Store<Secret>,
        cluster_id: &str,
        tenant_namespace: &str,
    ) -> Result<Option<Client>, RemoteError> {
        if self.files.contains_key(cluster_id) {
            return self.client_for(cluster_id, None).await;
        }
        let state = secrets.state();
        let found = find_kubeconfig(state.iter().map(|s| &**s), cluster_id, tenant_namespace);
        self.client_for(cluster_id, found).await
    }

    /// As [`RemoteClients::get`], with the Secrets already listed: every Secret labelled with a
    /// remote cluster id, in one list for all the remote clusters.
    pub async fn get_listed(
        &self,
        secrets: &[Secret],
        cluster_id: &str,
        tenant_namespace: &str,
    ) -> Result<Option<Client>, RemoteError> {
        if self.files.contains_key(cluster_id) {
            return self.client_for(cluster_id, None).await;
        }
        self.client_for(cluster_id, find_kubeconfig(secrets.iter(), cluster_id, tenant_namespace)).await
    }

    /// Whether reaching `cluster_id` takes its kubeconfig Secret (no file was given for it).
    pub fn needs_secret(&self, cluster_id: &str) -> bool {
        !self.files.contains_key(cluster_id)
    }

    /// The client from the file given for `cluster_id`, else from `secret` (source name, text).
    async fn client_for(
        &self,
        cluster_id: &str,
        secret: Option<(String, String)>,
    ) -> Result<Option<Client>, RemoteError> {
        let (source, text) = if let Some(path) = self.files.get(cluster_id) {
            let text = std::fs::read_to_string(path).map_err(|e| RemoteError::Kubeconfig {
                cluster_id: cluster_id.to_owned(),
                source_name: path.display().to_string(),
                detail: e.to_string(),
            })?;
            (path.display().to_string(), text)
        } else {
            match secret {
                Some(f) => f,
                None => return Ok(None),
            }
        };
        if let Ok(cache) = self.cache.lock()
            && let Some((t, c)) = cache.get(cluster_id)
            && *t == text
        {
            return Ok(Some(c.clone()));
        }
        let client = client_from_kubeconfig(cluster_id, &source, &text, self.limit).await?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(cluster_id.to_owned(), (text, client.clone()));
        }
        Ok(Some(client))
    }
}

/// The kubeconfig of `cluster_id` among `secrets`: the first Secret of its tenant namespace
/// labelled with its id that holds one.
fn find_kubeconfig<'a>(
    secrets: impl Iterator<Item = &'a Secret>,
    cluster_id: &str,
    tenant_namespace: &str,
) -> Option<(String, String)> {
    secrets
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(tenant_namespace)
                && s.labels().get(REMOTE_CLUSTER_ID_LABEL).map(String::as_str) == Some(cluster_id)
        })
        .find_map(|s| kubeconfig_in(s, tenant_namespace))
}

/// The kubeconfig a Secret holds: (where it comes from, its text).
fn kubeconfig_in(s: &Secret, tenant_namespace: &str) -> Option<(String, String)> {
    let data = s.data.as_ref()?.get(KUBECONFIG_KEY)?;
    Some((format!("secret {tenant_namespace}/{}", s.name_any()), String::from_utf8(data.0.clone()).ok()?))
}

//! The one way this program builds a client of a Kubernetes API server, for every command: the
//! configuration by kubectl's loading rules (a kubeconfig file given on the command line, else
//! `$KUBECONFIG` or `~/.kube/config`, else the pod's service account; for the command-line tools,
//! [`config_as_kubectl`], with `$KUBECONFIG` as a merged list and `--context`), or from kubeconfig
//! text (a remote cluster's), and every client behind the client-side rate limit
//! ([`crate::rate_limit`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::rate_limit::ApiRateLimit;

/// The field manager of everything this program writes (server-side apply and updates).
pub const FIELD_MANAGER: &str = "offloading-webhook";

/// No limit at all: for the Lease, and for a one-off command such as `diagnose`.
pub const UNLIMITED: ApiRateLimit = ApiRateLimit { qps: 0.0, burst: 1 };

#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    #[error("could not read the kubeconfig: {path}: {detail}")]
    Kubeconfig { path: String, detail: String },
    /// Neither `$KUBECONFIG`, `~/.kube/config` nor a service account: no cluster configured.
    #[error(
        "no cluster configured ({0}): give --kubeconfig, set KUBECONFIG, or run in a pod with a service account"
    )]
    NotConfigured(String),
    #[error("could not connect to the Kubernetes API: {0}")]
    Client(#[from] kube::Error),
}

/// The configuration from the kubeconfig file at `path`, else by the usual inference.
pub async fn config(path: Option<&Path>) -> Result<Config, KubeClientError> {
    let Some(path) = path else {
        return Config::infer().await.map_err(|e| KubeClientError::NotConfigured(e.to_string()));
    };
    let err = |detail: String| KubeClientError::Kubeconfig { path: path.display().to_string(), detail };
    let kc = Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.map_err(|e| err(e.to_string()))
}

/// Where a command-line tool (`diagnose`, `plan`) finds the local cluster, as kubectl's flags say it.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// `--kubeconfig`: this one file, as kubectl takes it (not a list).
    pub kubeconfig: Option<PathBuf>,
    /// `--context`: this context of the kubeconfig instead of its current-context.
    pub context: Option<String>,
}

/// The configuration by kubectl's loading rules: the `--kubeconfig` file, else every file of
/// `$KUBECONFIG` merged (the first to set a value wins; files that do not exist are skipped, as
/// kubectl skips them), else `~/.kube/config`, else the pod's service account. `--context` picks
/// a context other than the current one. The configuration's default namespace is the context's
/// (`default` when it names none): what `-n` defaults to.
pub async fn config_as_kubectl(source: &Source) -> Result<Config, KubeClientError> {
    let (kc, shown) = match &source.kubeconfig {
        Some(path) => {
            let shown = path.display().to_string();
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| KubeClientError::Kubeconfig { path: shown.clone(), detail: e.to_string() })?;
            (Some(kc), shown)
        }
        None => from_env_or_home()?,
    };
    let options = KubeConfigOptions { context: source.context.clone(), ..Default::default() };
    match kc {
        Some(kc) => Config::from_custom_kubeconfig(kc, &options)
            .await
            .map_err(|e| KubeClientError::Kubeconfig { path: shown, detail: e.to_string() }),
        None if source.context.is_some() => Err(KubeClientError::NotConfigured(format!(
            "--context {:?} given, and no kubeconfig found ({shown})",
            source.context.as_deref().unwrap_or_default()
        ))),
        None => Config::incluster()
            .map_err(|e| KubeClientError::NotConfigured(format!("{shown}; in-cluster: {e}"))),
    }
}

/// The kubeconfig of `$KUBECONFIG` (merged) or `~/.kube/config`, `None` when there is none; and
/// where it was looked for, for messages.
fn from_env_or_home() -> Result<(Option<Kubeconfig>, String), KubeClientError> {
    let listed: Vec<PathBuf> = std::env::var_os("KUBECONFIG")
        .map(|v| std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect())
        .unwrap_or_default();
    let candidates = if listed.is_empty() {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config")).into_iter().collect()
    } else {
        listed
    };
    let shown = candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
    let mut merged: Option<Kubeconfig> = None;
    for path in candidates.iter().filter(|p| p.exists()) {
        let err = |detail: String| KubeClientError::Kubeconfig { path: path.display().to_string(), detail };
        let next = Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
        merged = Some(match merged {
            Some(m) => m.merge(next).map_err(|e| err(e.to_string()))?,
            None => next,
        });
    }
    Ok((merged, if shown.is_empty() { "no $KUBECONFIG, no $HOME".into() } else { shown }))
}

/// The configuration in kubeconfig text, with short timeouts: a remote cluster that is down must
/// delay nothing else. The error is the reason alone, for the caller to say whose text it was.
pub async fn remote_config(yaml: &str) -> Result<Config, String> {
    let kc = Kubeconfig::from_yaml(yaml).map_err(|e| e.to_string())?;
    let mut cfg =
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.map_err(|e| e.to_string())?;
    cfg.connect_timeout = Some(Duration::from_secs(3));
    cfg.read_timeout = Some(Duration::from_secs(10));
    cfg.write_timeout = Some(Duration::from_secs(10));
    Ok(cfg)
}

/// A client from `config` whose every request first takes a token of `limit`.
pub fn client(config: Config, limit: ApiRateLimit) -> Result<Client, KubeClientError> {
    Ok(crate::rate_limit::client(config, limit)?)
}

/// The clients `serve` uses on the local cluster.
pub struct KubeClients {
    /// Every request it sends takes a token of `--kube-api-qps`/`--kube-api-burst`.
    pub limited: Client,
    /// For the Lease alone: a renewal must never queue behind the loop's own requests, or the
    /// leader would miss its renew deadline under load.
    pub lease: Client,
}

impl KubeClients {
    pub fn new(config: Config, limit: ApiRateLimit) -> Result<Self, KubeClientError> {
        Ok(Self { limited: client(config.clone(), limit)?, lease: client(config, UNLIMITED)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTERS: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: plain\n  context:\n    cluster: c\n    user: u\n";
    const CONTEXTS: &str = "apiVersion: v1\nkind: Config\ncurrent-context: team\ncontexts:\n- name: team\n  context:\n    cluster: c\n    user: u\n    namespace: web\n";

    /// `$KUBECONFIG` as a list, merged as kubectl merges it, and `--context`; one test, as it sets
    /// the process's environment.
    #[tokio::test]
    async fn kubeconfig_as_kubectl_loads_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, CONTEXTS).unwrap();
        std::fs::write(&b, CLUSTERS).unwrap();
        let missing = dir.path().join("missing");
        let list = std::env::join_paths([&a, &missing, &b]).unwrap();
        // SAFETY: the only test of this binary that reads or writes KUBECONFIG.
        unsafe { std::env::set_var("KUBECONFIG", &list) };
        let cfg = config_as_kubectl(&Source::default()).await.unwrap();
        assert_eq!(cfg.cluster_url.to_string(), "https://127.0.0.1:6443/");
        assert_eq!(
            cfg.default_namespace, "web",
            "the current context (from the first file) and its namespace"
        );
        let plain = Source { context: Some("plain".into()), ..Default::default() };
        assert_eq!(config_as_kubectl(&plain).await.unwrap().default_namespace, "default");
        let unknown = Source { context: Some("nope".into()), ..Default::default() };
        assert!(config_as_kubectl(&unknown).await.unwrap_err().to_string().contains("nope"));
        // --kubeconfig is one file, whatever $KUBECONFIG says.
        let one = Source { kubeconfig: Some(b.clone()), context: Some("plain".into()) };
        assert_eq!(config_as_kubectl(&one).await.unwrap().default_namespace, "default");
        let e =
            config_as_kubectl(&Source { kubeconfig: Some(list.into()), context: None }).await.unwrap_err();
        assert!(e.to_string().starts_with("could not read the kubeconfig: "), "{e}");
        unsafe { std::env::remove_var("KUBECONFIG") };
    }

    #[tokio::test]
    async fn a_kubeconfig_that_cannot_be_read_names_the_file() {
        let e = config(Some(Path::new("/nonexistent/kubeconfig"))).await.unwrap_err();
        assert!(e.to_string().starts_with("could not read the kubeconfig: /nonexistent/kubeconfig: "), "{e}");
        let e = remote_config("not: [a kubeconfig").await.unwrap_err();
        assert!(!e.is_empty());
    }
}

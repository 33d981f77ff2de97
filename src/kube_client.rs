//! The one way this program builds a client of a Kubernetes API server, for every command: the
//! configuration by kubectl's loading rules (a kubeconfig file given on the command line, else
//! `$KUBECONFIG` or `~/.kube/config`, else the pod's service account), or from kubeconfig text (a
//! remote cluster's), and every client behind the client-side rate limit ([`crate::rate_limit`]).

use std::path::Path;
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

    #[tokio::test]
    async fn a_kubeconfig_that_cannot_be_read_names_the_file() {
        let e = config(Some(Path::new("/nonexistent/kubeconfig"))).await.unwrap_err();
        assert!(e.to_string().starts_with("could not read the kubeconfig: /nonexistent/kubeconfig: "), "{e}");
        let e = remote_config("not: [a kubeconfig").await.unwrap_err();
        assert!(!e.is_empty());
    }
}

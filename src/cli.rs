//! The command line. Every flag has an environment fallback; [`ServeConfig`] can be built directly
//! by tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tracing::debug;

use crate::admission::Enforcement;
use crate::offloading::names::rfc1123_label_problem;
use crate::server::ServeError;

#[derive(Parser, Debug)]
#[command(
    name = "offloading-webhook",
    version,
    about = "Admission webhook and reconcile loop for Liqo namespace offloading"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Built once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the validating and mutating webhooks, probes and metrics.
    Serve(Box<ServeConfig>),
    /// Write a development CA and a serving certificate (ca.crt, tls.crt, tls.key).
    Certs(CertsArgs),
    /// Print the CustomResourceDefinitions (what manifests/crds.yaml holds).
    Crds,
    /// Print the Validating and Mutating WebhookConfigurations for a webhook reached by URL.
    WebhookConfig(WebhookConfigArgs),
    /// Walk the troubleshooting guide for a namespace and print one verdict (exit 0 healthy,
    /// 1 a problem found, 2 could not look).
    Diagnose(DiagnoseArgs),
}

#[derive(Args, Debug)]
pub struct DiagnoseArgs {
    /// The offloaded namespace to look at.
    #[arg(short = 'n', long)]
    pub namespace: String,
    /// Kubeconfig of the local cluster (default: $KUBECONFIG, ~/.kube/config or in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The local cluster id (default: Liqo's liqo-clusterid-configmap; on v1.x found by its label
    /// app.kubernetes.io/name=clusterid-configmap).
    #[arg(long, env = "CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// The namespace Liqo runs in.
    #[arg(long, env = "LIQO_NAMESPACE", default_value = "liqo")]
    pub liqo_namespace: String,
    /// Kubeconfig of a remote cluster, as CLUSTER_ID=PATH (repeatable), to look at its namespaces
    /// (Secrets labelled liqo.io/remote-cluster-id in the tenant namespace work too).
    #[arg(long = "remote-kubeconfig", value_parser = parse_remote)]
    pub remote_kubeconfigs: Vec<(String, PathBuf)>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Which Liqo API to read: `auto` finds out, as `serve` does.
    #[arg(long, env = "LIQO_API", value_enum, default_value_t = LiqoApi::Auto)]
    pub liqo_api: LiqoApi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ServeConfig {
    /// Address of the HTTPS webhook server.
    #[arg(long, env = "WEBHOOK_ADDR", default_value = "0.0.0.0:9443")]
    pub webhook_addr: SocketAddr,
    /// Address of the plain-HTTP probe server (/healthz, /readyz, /livez).
    #[arg(long, env = "PROBE_ADDR", default_value = "0.0.0.0:8081")]
    pub probe_addr: SocketAddr,
    /// Address of the plain-HTTP metrics server (/metrics).
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// PEM certificate chain served by the webhook; reloaded when it changes.
    #[arg(long, env = "TLS_CERT_FILE", default_value = "certs/tls.crt")]
    pub tls_cert_file: PathBuf,
    /// PEM private key of that certificate; reloaded when it changes.
    #[arg(long, env = "TLS_KEY_FILE", default_value = "certs/tls.key")]
    pub tls_key_file: PathBuf,
    /// How often, in seconds, the certificate files are checked for changes.
    #[arg(long, env = "CERT_RELOAD_SECONDS", default_value_t = 10)]
    pub cert_reload_seconds: u64,
    /// `deny` refuses broken objects; `warn` lets them in with warnings (audit mode).
    #[arg(long, env = "ENFORCEMENT", value_enum, default_value_t = Enforcement::Deny)]
    pub enforcement: Enforcement,
    /// The local cluster id; without it, read (and followed) from Liqo's ConfigMap.
    #[arg(long, env = "CLUSTER_ID", value_parser = parse_cluster_id)]
    pub cluster_id: Option<String>,
    /// The namespace Liqo runs in (where liqo-clusterid-configmap lives).
    #[arg(long, env = "LIQO_NAMESPACE", default_value = "liqo")]
    pub liqo_namespace: String,
    /// Kubeconfig of the local cluster; without it, in-cluster config or $KUBECONFIG, and no
    /// cluster at all when neither is there.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Serve the webhooks alone, without reading anything from a cluster.
    #[arg(long, env = "NO_CLUSTER", default_value_t = false)]
    pub no_cluster: bool,
    /// Run the reconcile loop (NamespaceMaps, status) when a cluster is configured [default: true
    /// on Liqo v0.3; it never runs on Liqo v1.x, where `true` is an error].
    #[arg(long, env = "RECONCILE", action = clap::ArgAction::Set)]
    pub reconcile: Option<bool>,
    /// Namespace of the Lease that elects the one active reconciler.
    #[arg(long, env = "POD_NAMESPACE", default_value = "offloading-webhook")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (its pod name); default: hostname and PID.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a Lease not renewed stays held (how long a standby waits after a leader dies); the
    /// holder renews every 2/15 of it and stops reconciling after 2/3 of it without a renew.
    #[arg(long, env = "LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u64,
    /// Kubeconfig of a remote cluster, as CLUSTER_ID=PATH (repeatable): `serve` then creates the
    /// remote namespaces of that cluster's NamespaceMap itself.
    #[arg(long = "remote-kubeconfig", env = "REMOTE_KUBECONFIGS", value_delimiter = ',', value_parser = parse_remote)]
    pub remote_kubeconfigs: Vec<(String, PathBuf)>,
    /// Also take remote clusters' kubeconfigs from Secrets labelled liqo.io/remote-cluster-id (key
    /// `kubeconfig`) in their tenant namespace. Off, no Secret is read; on, those Secrets are
    /// watched cluster-wide, which needs list and watch on Secrets (the chart's
    /// `remote.kubeconfigSecrets`).
    #[arg(long, env = "REMOTE_KUBECONFIG_SECRETS", default_value_t = false)]
    pub remote_kubeconfig_secrets: bool,
    /// Threads that serve the webhook's connections, each connection on one of them from its
    /// handshake to its close (0: one per core the process may use). One serves thousands of
    /// reviews a second; more only help a cluster that writes NamespaceOffloadings faster.
    #[arg(long, env = "WEBHOOK_THREADS", default_value_t = 1, value_parser = parse_webhook_threads)]
    pub webhook_threads: usize,
    /// Seconds to let in-flight reviews finish after SIGTERM.
    #[arg(long, env = "DRAIN_SECONDS", default_value_t = 20)]
    pub drain_seconds: u64,
    /// Seconds to keep accepting and answering after SIGTERM, with /readyz failing, before the
    /// listener closes: long enough for the API server to stop routing here (endpoint propagation).
    #[arg(long, env = "SHUTDOWN_DELAY_SECONDS", default_value_t = 10)]
    pub shutdown_delay_seconds: u64,
    /// PEM CA bundle: when given, only clients (the API server) presenting a certificate signed by
    /// it are answered (mutual TLS).
    #[arg(long, env = "CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// Which Liqo API the cluster serves: `auto` finds out (NamespaceMaps in
    /// offloading.liqo.io/v1beta1 mean v1.x, in virtualkubelet.liqo.io/v1alpha1 v0.3).
    #[arg(long, env = "LIQO_API", value_enum, default_value_t = LiqoApi::Auto)]
    pub liqo_api: LiqoApi,
    /// Requests per second this process may send to each API server (the local one, and each
    /// remote cluster's), as client-go's QPS; a watch counts once, when it starts. 0 turns the
    /// limit off.
    #[arg(long, env = "KUBE_API_QPS", default_value_t = crate::rate_limit::DEFAULT_QPS, value_parser = parse_qps)]
    pub kube_api_qps: f64,
    /// Requests that may go at once above that rate, as client-go's burst.
    #[arg(long, env = "KUBE_API_BURST", default_value_t = crate::rate_limit::DEFAULT_BURST, value_parser = parse_burst)]
    pub kube_api_burst: u32,
}

fn parse_qps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(q) if q.is_finite() && q >= 0.0 => Ok(q),
        _ => Err(format!(
            "{s:?} is not a rate: give requests per second, e.g. 200 or 0.5 (0 turns the limit off)"
        )),
    }
}

fn parse_burst(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(b) if b >= 1 => Ok(b),
        _ => Err(format!("{s:?} is not a burst: give a count of requests of at least 1")),
    }
}

/// The Liqo generation whose API and behaviour apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LiqoApi {
    /// Find out from the API groups the cluster serves.
    #[default]
    Auto,
    /// Liqo v0.3: NamespaceMaps in virtualkubelet.liqo.io/v1alpha1 (the troubleshooting guide's API).
    #[value(name = "v0.3")]
    V0_3,
    /// Liqo v1.x: NamespaceMaps in offloading.liqo.io/v1beta1; Liqo's own controllers own them.
    #[value(name = "v1")]
    V1,
}

/// Each webhook thread holds a runtime and its own epoll: a typo must not start thousands.
fn parse_webhook_threads(s: &str) -> Result<usize, String> {
    const MAX: usize = 256;
    match s.parse::<usize>() {
        Ok(n) if n <= MAX => Ok(n),
        Ok(n) => {
            Err(format!("{n} threads is more than {MAX}: use 0 for one per core, or a count up to {MAX}"))
        }
        Err(_) => {
            Err(format!("{s:?} is not a number of threads: use 0 for one per core, or a count up to {MAX}"))
        }
    }
}

impl ServeConfig {
    pub fn cert_reload_interval(&self) -> Duration {
        Duration::from_secs(self.cert_reload_seconds.max(1))
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_seconds)
    }

    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_secs(self.shutdown_delay_seconds)
    }

    /// The client-side limit on requests to each API server.
    pub fn api_rate_limit(&self) -> crate::rate_limit::ApiRateLimit {
        crate::rate_limit::ApiRateLimit { qps: self.kube_api_qps, burst: self.kube_api_burst }
    }

    /// The Lease settings: renew deadline and retry period in client-go's proportions.
    pub fn lease(&self) -> crate::reconcile::lease::LeaseConfig {
        let duration = Duration::from_secs(self.lease_seconds.max(3));
        let identity = self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        crate::reconcile::lease::LeaseConfig::new(
            "offloading-webhook-reconciler".into(),
            self.lease_namespace.clone(),
            identity,
            duration,
        )
    }
}

fn parse_remote(s: &str) -> Result<(String, PathBuf), String> {
    crate::reconcile::remote::parse_remote_kubeconfig(s).map_err(|e| e.to_string())
}

fn parse_cluster_id(s: &str) -> Result<String, String> {
    match rfc1123_label_problem(s) {
        None => Ok(s.to_owned()),
        Some(p) => Err(format!("a cluster id must be an RFC 1123 label: {p}")),
    }
}

#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Directory to write ca.crt, ca.key, tls.crt, tls.key into (an existing CA there is reused).
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,
    /// DNS name the certificate is valid for (repeatable).
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// IP address the certificate is valid for (repeatable).
    #[arg(long = "ip")]
    pub ip: Vec<std::net::IpAddr>,
    /// Validity of the serving certificate, in days.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["url", "service"]))]
pub struct WebhookConfigArgs {
    /// Base URL of the webhook as the API server reaches it, e.g. https://127.0.0.1:9443.
    #[arg(long)]
    pub url: Option<String>,
    /// The webhook's Service, as NAMESPACE/NAME (port 443); its namespace is excluded from the webhooks.
    #[arg(long)]
    pub service: Option<String>,
    /// PEM CA that signed the webhook's certificate (goes into caBundle).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Let cert-manager inject the CA of this Certificate (NAMESPACE/NAME) instead of --ca-file.
    #[arg(long, conflicts_with = "ca_file")]
    pub cert_manager_certificate: Option<String>,
    /// Name of the two configurations.
    #[arg(long, default_value = "offloading-webhook")]
    pub name: String,
}

/// The clients of the local cluster, or `None` when none is configured.
pub struct KubeClients {
    /// Every request it sends takes a token of `--kube-api-qps`/`--kube-api-burst`.
    pub limited: Client,
    /// For the Lease alone: a renewal must never queue behind the loop's own requests, or the
    /// leader would miss its renew deadline under load.
    pub lease: Client,
}

/// The clients of the local cluster, or `None` when none is configured.
pub async fn kube_client(cfg: &ServeConfig) -> Result<Option<KubeClients>, ServeError> {
    if cfg.no_cluster {
        return Ok(None);
    }
    let config = match &cfg.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| ServeError::Kubeconfig(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| ServeError::Kubeconfig(format!("{}: {e}", path.display())))?
        }
        None => match Config::infer().await {
            Ok(c) => c,
            Err(e) => {
                debug!(error = %e, "no cluster configuration found");
                return Ok(None);
            }
        },
    };
    let unlimited = crate::rate_limit::ApiRateLimit { qps: 0.0, burst: 1 };
    Ok(Some(KubeClients {
        limited: crate::rate_limit::client(config.clone(), cfg.api_rate_limit())?,
        lease: crate::rate_limit::client(config, unlimited)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_threads_are_bounded_and_say_how() {
        let parse = |v: &str| {
            Cli::try_parse_from(["offloading-webhook", "serve", "--webhook-threads", v]).map(|c| {
                match c.command {
                    Command::Serve(cfg) => cfg.webhook_threads,
                    _ => unreachable!(),
                }
            })
        };
        assert_eq!(parse("0").unwrap(), 0);
        assert_eq!(parse("256").unwrap(), 256);
        let e = parse("100000").unwrap_err().to_string();
        assert!(e.contains("100000 threads is more than 256: use 0 for one per core"), "{e}");
        let e = parse("many").unwrap_err().to_string();
        assert!(e.contains("\"many\" is not a number of threads"), "{e}");
    }

    #[test]
    fn the_api_rate_limit_has_defaults_and_says_what_a_bad_value_should_be() {
        let parse = |args: &[&str]| {
            let mut all = vec!["offloading-webhook", "serve"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|c| match c.command {
                Command::Serve(cfg) => cfg.api_rate_limit(),
                _ => unreachable!(),
            })
        };
        assert_eq!(parse(&[]).unwrap(), crate::rate_limit::ApiRateLimit::DEFAULT);
        let l = parse(&["--kube-api-qps", "0.5", "--kube-api-burst", "3"]).unwrap();
        assert_eq!((l.qps, l.burst), (0.5, 3));
        let e = parse(&["--kube-api-qps=-1"]).unwrap_err().to_string();
        assert!(e.contains("\"-1\" is not a rate: give requests per second"), "{e}");
        let e = parse(&["--kube-api-burst", "0"]).unwrap_err().to_string();
        assert!(e.contains("\"0\" is not a burst"), "{e}");
    }
}

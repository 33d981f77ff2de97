//! The command line. Every flag has an environment fallback; [`ServeConfig`] can be built directly
//! by tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::admission::Enforcement;
use crate::offloading::names::rfc1123_label_problem;

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

/// Whether text logs are coloured: only on a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string (no-color.org). A log file or a pipe gets plain text, which
/// `grep` and log collectors read as written.
pub fn log_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
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
    /// Walk the troubleshooting guide for a namespace (or, with -A, every one) and print one
    /// verdict (exit 0 healthy, 1 a problem found, 2 could not look).
    Diagnose(DiagnoseArgs),
    /// Print a ValidatingAdmissionPolicy and its bindings that check the webhook's static rules
    /// inside the API server (Kubernetes 1.30 or later).
    Policy(PolicyArgs),
    /// Say what applying NamespaceOffloadings would do, writing nothing: the webhook's verdict,
    /// the clusters selected and why not the others, the remote namespace in each (exit 0 would
    /// succeed, 1 would be refused or fail later, 2 could not look).
    Plan(PlanArgs),
    /// Print the completion script of a shell: bash, zsh or fish (e.g.
    /// `source <(offloading-webhook completion bash)`).
    Completion(CompletionArgs),
}

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
    /// The command the script completes: offloading-webhook, or kubectl-offloading when installed
    /// as a kubectl plugin.
    #[arg(long, default_value = BIN_NAME)]
    pub bin_name: String,
}

/// The program's name.
pub const BIN_NAME: &str = "offloading-webhook";
/// Its name as a kubectl plugin (`kubectl offloading ...` runs it).
pub const KUBECTL_PLUGIN: &str = "kubectl-offloading";
/// The exit code of a command line that does not parse (sysexits' EX_USAGE), apart from 2, which
/// `diagnose` and `plan` use for "could not look".
pub const USAGE_ERROR: u8 = 64;

/// Parses a command line (`args[0]` is the program as invoked). Run as `kubectl-offloading` (a
/// kubectl plugin), help and usage speak of `kubectl offloading`.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString>,
{
    use clap::{CommandFactory, FromArgMatches};
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let invoked = args.first().and_then(|a| std::path::Path::new(a).file_name()).and_then(|n| n.to_str());
    let mut cmd = Cli::command();
    if invoked == Some(KUBECTL_PLUGIN) {
        cmd = cmd.bin_name("kubectl offloading");
    }
    Cli::from_arg_matches(&cmd.try_get_matches_from(args)?)
}

#[derive(Args, Debug)]
pub struct PolicyArgs {
    /// The Liqo generation whose rules apply: v0.3 or v1.
    #[arg(long, value_enum)]
    pub liqo_api: LiqoApi,
    /// Name of the policy and of its bindings (NAME and NAME-cluster-id).
    #[arg(long, default_value = "offloading-webhook")]
    pub name: String,
    /// The bindings' validationActions: Deny, or Warn,Audit to roll the policy out on a live
    /// cluster without refusing anything.
    #[arg(long, value_delimiter = ',', default_value = "Deny")]
    pub validation_actions: Vec<String>,
    /// The namespace of Liqo's cluster-id ConfigMap (the parameter of the NAME-cluster-id binding).
    #[arg(long, default_value = "liqo")]
    pub liqo_namespace: String,
    /// The local cluster id, written into the policy instead of read from Liqo's ConfigMap (one
    /// binding, no parameter).
    #[arg(long, value_parser = parse_cluster_id)]
    pub cluster_id: Option<String>,
    /// Namespaces the policy leaves alone, besides kube-system (repeatable, or comma-separated), as
    /// `serve --excluded-namespace`.
    #[arg(long = "excluded-namespace", value_delimiter = ',')]
    pub exclude_namespaces: Vec<String>,
    /// What to print: all, policy (the ValidatingAdmissionPolicy alone) or bindings.
    #[arg(long, value_enum, default_value_t = PolicyPart::All)]
    pub part: PolicyPart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyPart {
    All,
    Policy,
    Bindings,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The objects, as kubectl apply -f takes them: a YAML or JSON file (documents, Lists), a
    /// directory of .yaml, .yml and .json files, or - for standard input (repeatable).
    #[arg(short = 'f', long = "filename", required = true)]
    pub filenames: Vec<PathBuf>,
    /// The namespace of objects that name none (default: the kubeconfig context's, else default).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub look: LookArgs,
}

/// How `diagnose` and `plan` look at the cluster. Their environment variables carry the
/// program's prefix, so that a shell's own CLUSTER_ID or LIQO_API does not change what they say.
#[derive(Args, Debug)]
pub struct LookArgs {
    /// Kubeconfig file of the local cluster (default, as kubectl: every file of $KUBECONFIG
    /// merged, else ~/.kube/config, else in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long)]
    pub context: Option<String>,
    /// The local cluster id (default: Liqo's liqo-clusterid-configmap; on v1.x found by its label
    /// app.kubernetes.io/name=clusterid-configmap).
    #[arg(long, env = "OFFLOADING_WEBHOOK_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// The namespace Liqo runs in.
    #[arg(long, env = "OFFLOADING_WEBHOOK_LIQO_NAMESPACE", default_value = "liqo")]
    pub liqo_namespace: String,
    /// Kubeconfig of a remote cluster, as CLUSTER_ID=PATH (repeatable), to look at its namespaces
    /// (Secrets labelled liqo.io/remote-cluster-id in the tenant namespace work too).
    #[arg(long = "remote-kubeconfig", value_parser = parse_remote)]
    pub remote_kubeconfigs: Vec<(String, PathBuf)>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Which Liqo API to read: `auto` finds out, as `serve` does.
    #[arg(long, env = "OFFLOADING_WEBHOOK_LIQO_API", value_enum, default_value_t = LiqoApi::Auto)]
    pub liqo_api: LiqoApi,
}

#[derive(Args, Debug)]
pub struct DiagnoseArgs {
    /// The offloaded namespace to look at (default: the kubeconfig context's, else default).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Every namespace that holds a NamespaceOffloading: one line each, then the problems grouped
    /// (each kind is read once for the whole cluster).
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    #[command(flatten)]
    pub look: LookArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ServeConfig {
    /// Address of the HTTPS webhook server. `[::]` listens on IPv6 and IPv4 (mapped) alike, and
    /// falls back to 0.0.0.0 where the host has no IPv6.
    #[arg(long, env = "WEBHOOK_ADDR", default_value = "[::]:9443")]
    pub webhook_addr: SocketAddr,
    /// Address of the plain-HTTP probe server (/healthz, /readyz, /livez).
    #[arg(long, env = "PROBE_ADDR", default_value = "[::]:8081")]
    pub probe_addr: SocketAddr,
    /// Address of the plain-HTTP metrics server (/metrics).
    #[arg(long, env = "METRICS_ADDR", default_value = "[::]:8080")]
    pub metrics_addr: SocketAddr,
    /// PEM certificate chain served by the webhook (--certificate-source=files); reloaded when it
    /// changes.
    #[arg(long, env = "TLS_CERT_FILE", default_value = "certs/tls.crt")]
    pub tls_cert_file: PathBuf,
    /// PEM private key of that certificate; reloaded when it changes.
    #[arg(long, env = "TLS_KEY_FILE", default_value = "certs/tls.key")]
    pub tls_key_file: PathBuf,
    /// How often, in seconds, the certificate (files or managed Secret) is checked for changes.
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
    /// The namespace this replica runs in: the Lease that elects the one active reconciler, the
    /// managed certificate's Secret, and the Namespace that owns the registrations.
    #[arg(long, visible_alias = "namespace", env = "POD_NAMESPACE", default_value = "offloading-webhook")]
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
    /// Request bytes that reviews waiting for or under judgment may hold at once (bytes, or with
    /// Ki/Mi/Gi); a review that finds no room within 2 s is answered HTTP 429 and the API server
    /// applies the webhook's failure policy to it. The default keeps a replica under 64 MiB.
    #[arg(long, env = "MAX_REVIEW_BYTES_IN_FLIGHT", default_value = "16Mi", value_parser = parse_review_bytes)]
    pub max_review_bytes_in_flight: usize,
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
    #[command(flatten)]
    pub certificate: CertificateFlags,
    #[command(flatten)]
    pub registration: RegistrationFlags,
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertificateSource {
    /// --tls-cert-file and --tls-key-file (cert-manager's Secret, your own, `certs`).
    Files,
    /// A CA and serving pair the replicas keep and renew themselves in --certificate-secret.
    Managed,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Certificate")]
pub struct CertificateFlags {
    /// `files`: serve --tls-cert-file and --tls-key-file; `managed`: keep a CA and serving pair in
    /// the Secret --certificate-secret (made when empty, renewed before expiry, shared by every
    /// replica) and publish its CA in the registrations.
    #[arg(long = "certificate-source", env = "CERTIFICATE_SOURCE", value_enum, default_value_t = CertificateSource::Files)]
    pub source: CertificateSource,
    /// The Secret, in --namespace, that holds the managed CA and serving pair.
    #[arg(
        long = "certificate-secret",
        env = "CERTIFICATE_SECRET",
        default_value = "offloading-webhook-certificate"
    )]
    pub secret: String,
    /// A name the managed serving certificate is valid for, DNS name or IP address (repeatable);
    /// those of --webhook-service or --webhook-url are always included.
    #[arg(long = "certificate-name", env = "CERTIFICATE_NAMES", value_delimiter = ',')]
    pub names: Vec<String>,
    /// Lifetime of the managed CA, e.g. 1825d, 12h, 90s; renewed once two thirds are gone.
    #[arg(long = "ca-validity", env = "CA_VALIDITY", default_value = "1825d", value_parser = parse_duration)]
    pub ca_validity: Duration,
    /// Lifetime of the managed serving certificate; renewed once two thirds are gone.
    #[arg(long = "cert-validity", env = "CERT_VALIDITY", default_value = "365d", value_parser = parse_duration)]
    pub cert_validity: Duration,
    /// PEM CA to publish in the registrations' caBundle with --certificate-source=files (e.g. the
    /// ca.crt that cert-manager writes beside tls.crt); read again at each look.
    #[arg(long = "ca-bundle-file", env = "CA_BUNDLE_FILE")]
    pub ca_bundle_file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Registration")]
pub struct RegistrationFlags {
    /// Fill in the Validating and MutatingWebhookConfiguration of this name (empty shells, e.g.
    /// the chart's; never created here) once this replica is ready, and keep them; the Namespace
    /// this replica runs in becomes their owner.
    #[arg(long = "webhook-configuration", env = "WEBHOOK_CONFIGURATION")]
    pub configuration: Option<String>,
    /// How the API server reaches the webhooks: a Service, NAMESPACE/NAME[:PORT] (port 443 by
    /// default); its namespace is never sent to the webhooks.
    #[arg(long = "webhook-service", env = "WEBHOOK_SERVICE", conflicts_with = "url", value_parser = parse_service)]
    pub service: Option<crate::webhook_config::Target>,
    /// Or a base URL, e.g. https://[::1]:9443.
    #[arg(long = "webhook-url", env = "WEBHOOK_URL")]
    pub url: Option<String>,
    #[command(flatten)]
    pub hooks: HookFlags,
}

/// What the two webhooks look like, for `serve` (what it registers) and `webhook-config`.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct HookFlags {
    /// Name of the validating webhook (kubectl prints it in every refusal).
    #[arg(long, env = "VALIDATING_WEBHOOK_NAME", default_value = crate::webhook_config::VALIDATE_NAME, value_parser = parse_webhook_name)]
    pub validating_webhook_name: String,
    /// Name of the mutating webhook.
    #[arg(long, env = "MUTATING_WEBHOOK_NAME", default_value = crate::webhook_config::MUTATE_NAME, value_parser = parse_webhook_name)]
    pub mutating_webhook_name: String,
    /// What the API server does when the webhooks cannot be called: `Fail` refuses the write.
    #[arg(long, env = "FAILURE_POLICY", value_enum, default_value_t = FailurePolicy::Fail)]
    pub failure_policy: FailurePolicy,
    /// How long the API server waits for a verdict, 1 to 30 seconds.
    #[arg(long, env = "WEBHOOK_TIMEOUT_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=30))]
    pub webhook_timeout_seconds: i32,
    /// A namespace never sent to the webhooks (repeatable), on top of kube-system and the
    /// webhook's own.
    #[arg(long = "excluded-namespace", env = "EXCLUDED_NAMESPACES", value_delimiter = ',')]
    pub excluded_namespaces: Vec<String>,
    /// Extra namespaceSelector matchExpressions, as JSON, e.g. '[{"key":"team","operator":"Exists"}]'.
    #[arg(long, env = "NAMESPACE_SELECTOR_EXPRESSIONS", value_parser = parse_expressions)]
    pub namespace_selector_expressions: Option<Expressions>,
    /// Extra objectSelector matchExpressions, as JSON.
    #[arg(long, env = "OBJECT_SELECTOR_EXPRESSIONS", value_parser = parse_expressions)]
    pub object_selector_expressions: Option<Expressions>,
    /// Register matchConditions, so that updates changing nothing the webhooks judge (metadata
    /// only: finalizers, annotations, labels) never reach them; CREATE and dry runs always do.
    #[arg(long, env = "MATCH_CONDITIONS", action = clap::ArgAction::Set, default_value_t = true)]
    pub match_conditions: bool,
}

impl Default for HookFlags {
    fn default() -> Self {
        Self {
            validating_webhook_name: crate::webhook_config::VALIDATE_NAME.into(),
            mutating_webhook_name: crate::webhook_config::MUTATE_NAME.into(),
            failure_policy: FailurePolicy::Fail,
            webhook_timeout_seconds: 5,
            excluded_namespaces: Vec::new(),
            namespace_selector_expressions: None,
            object_selector_expressions: None,
            match_conditions: true,
        }
    }
}

impl HookFlags {
    /// The webhooks' settings.
    pub fn settings(&self) -> crate::webhook_config::Settings {
        let expressions = |e: &Option<Expressions>| e.as_ref().map(|e| e.0.clone()).unwrap_or_default();
        crate::webhook_config::Settings {
            validating_name: self.validating_webhook_name.clone(),
            mutating_name: self.mutating_webhook_name.clone(),
            failure_policy: match self.failure_policy {
                FailurePolicy::Fail => "Fail".into(),
                FailurePolicy::Ignore => "Ignore".into(),
            },
            timeout_seconds: self.webhook_timeout_seconds,
            excluded_namespaces: self.excluded_namespaces.clone(),
            namespace_expressions: expressions(&self.namespace_selector_expressions),
            object_expressions: expressions(&self.object_selector_expressions),
            match_conditions: self.match_conditions,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailurePolicy {
    #[value(name = "Fail")]
    Fail,
    #[value(name = "Ignore")]
    Ignore,
}

/// LabelSelector requirements given as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Expressions(pub Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement>);

fn parse_expressions(s: &str) -> Result<Expressions, String> {
    serde_json::from_str(s).map(Expressions).map_err(|e| {
        format!(
            "not a JSON list of matchExpressions ({e}), e.g. '[{{\"key\":\"team\",\"operator\":\"Exists\"}}]'"
        )
    })
}

fn parse_service(s: &str) -> Result<crate::webhook_config::Target, String> {
    crate::webhook_config::Target::service(s)
}

fn parse_webhook_name(s: &str) -> Result<String, String> {
    match crate::webhook_config::webhook_name_problem(s) {
        None => Ok(s.to_owned()),
        Some(p) => Err(p),
    }
}

/// A duration as `90s`, `15m`, `12h`, `365d` or a sum of them (`1h30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("{s:?} is not a duration: write a number and a unit, s, m, h or d (e.g. 90s, 12h, 365d)");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
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

/// At least one review of the largest size must fit, or such a review could never be read.
fn parse_review_bytes(s: &str) -> Result<usize, String> {
    let min = crate::admission::MAX_BODY_BYTES;
    let t = s.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let scale: usize = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => {
            return Err(format!(
                "{s:?} is not a size: write bytes (16777216) or a number with Ki, Mi or Gi (16Mi)"
            ));
        }
    };
    let n = digits.parse::<usize>().ok().and_then(|n| n.checked_mul(scale)).ok_or_else(|| {
        format!("{s:?} is not a size: write bytes (16777216) or a number with Ki, Mi or Gi (16Mi)")
    })?;
    if n < min {
        return Err(format!(
            "{s:?} is less than one review of the largest size ({min} bytes, 3Mi), which could then never be read: use at least 3Mi"
        ));
    }
    Ok(n)
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
}

/// Parses `--remote-kubeconfig CLUSTER_ID=PATH`.
pub fn parse_remote(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((id, path)) if !id.is_empty() && !path.is_empty() => Ok((id.to_owned(), PathBuf::from(path))),
        _ => Err(format!("--remote-kubeconfig must be CLUSTER_ID=PATH, got {s:?}")),
    }
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
    #[command(flatten)]
    pub hooks: HookFlags,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsStr::new(""))));
        assert!(!log_colour(true, Some(OsStr::new("1"))));
        assert!(!log_colour(false, None));
        assert!(!log_colour(false, Some(OsStr::new(""))));
    }

    #[test]
    fn parses_remote_kubeconfig_flags() {
        assert_eq!(parse_remote("c1=/k/c1").unwrap(), ("c1".into(), PathBuf::from("/k/c1")));
        assert!(parse_remote("c1").unwrap_err().contains("CLUSTER_ID=PATH"));
        assert!(parse_remote("=x").is_err());
    }

    #[test]
    fn diagnose_and_plan_read_only_prefixed_environment_variables() {
        // SAFETY: no other test of this binary reads these variables.
        unsafe {
            std::env::set_var("CLUSTER_ID", "from-the-shell");
            std::env::set_var("LIQO_API", "v1");
        }
        let Command::Diagnose(d) = parse_from(["offloading-webhook", "diagnose", "-A"]).unwrap().command
        else {
            unreachable!()
        };
        assert_eq!((d.look.cluster_id, d.look.liqo_api), (None, LiqoApi::Auto));
        unsafe {
            std::env::remove_var("CLUSTER_ID");
            std::env::remove_var("LIQO_API");
        }
    }

    #[test]
    fn a_usage_error_is_not_could_not_look_and_the_plugin_says_its_name() {
        let e = parse_from(["offloading-webhook", "diagnose", "--bogus"]).unwrap_err();
        assert!(e.use_stderr());
        assert_ne!(USAGE_ERROR, 2);
        let e = parse_from(["/usr/local/bin/kubectl-offloading", "plan"]).unwrap_err().to_string();
        assert!(e.contains("Usage: kubectl offloading plan"), "{e}");
        let e = parse_from(["offloading-webhook", "diagnose", "-A", "-n", "web"]).unwrap_err().to_string();
        assert!(e.contains("cannot be used with"), "{e}");
    }

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

    #[test]
    fn durations_read_as_operators_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("365d"), Ok(Duration::from_secs(365 * 86_400)));
        for bad in ["", "10", "5y", "h", "0s", "99999999999999999999d"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(
                e.ends_with("write a number and a unit, s, m, h or d (e.g. 90s, 12h, 365d)"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn serve_registers_by_flags_and_their_defaults_are_the_webhooks_defaults() {
        let serve = |args: &[&str]| {
            let mut argv = vec!["offloading-webhook", "serve"];
            argv.extend_from_slice(args);
            match Cli::try_parse_from(argv).map(|c| c.command) {
                Ok(Command::Serve(cfg)) => Ok(*cfg),
                Ok(_) => unreachable!(),
                Err(e) => Err(e.to_string()),
            }
        };
        let cfg = serve(&[]).unwrap();
        assert_eq!(cfg.registration.hooks, HookFlags::default());
        assert_eq!(cfg.registration.hooks.settings(), crate::webhook_config::Settings::default());
        assert_eq!(cfg.webhook_addr.to_string(), "[::]:9443");
        assert_eq!(cfg.certificate.source, CertificateSource::Files);
        let cfg = serve(&[
            "--webhook-service=webhooks/ow:8443",
            "--namespace=webhooks",
            "--validating-webhook-name=v.example.com",
            "--match-conditions=false",
            "--excluded-namespace=liqo",
            "--namespace-selector-expressions=[{\"key\":\"team\",\"operator\":\"Exists\"}]",
            "--certificate-source=managed",
            "--ca-validity=30d",
        ])
        .unwrap();
        assert_eq!(cfg.lease_namespace, "webhooks");
        let s = cfg.registration.hooks.settings();
        assert_eq!((s.validating_name.as_str(), s.match_conditions), ("v.example.com", false));
        assert_eq!(s.excluded_namespaces, ["liqo"]);
        assert_eq!(s.namespace_expressions[0].key, "team");
        assert_eq!(cfg.certificate.ca_validity, Duration::from_secs(30 * 86_400));
        let e = serve(&["--validating-webhook-name=validate"]).unwrap_err();
        assert!(e.contains("the API server wants a domain of at least three labels"), "{e}");
        let e = serve(&["--webhook-service=ow"]).unwrap_err();
        assert!(e.contains("is not NAMESPACE/NAME[:PORT]"), "{e}");
        let e = serve(&["--namespace-selector-expressions=team"]).unwrap_err();
        assert!(e.contains("not a JSON list of matchExpressions"), "{e}");
    }

    #[test]
    fn the_review_byte_budget_reads_sizes_and_holds_at_least_one_largest_review() {
        let parse = |v: &str| {
            Cli::try_parse_from(["offloading-webhook", "serve", "--max-review-bytes-in-flight", v]).map(|c| {
                match c.command {
                    Command::Serve(cfg) => cfg.max_review_bytes_in_flight,
                    _ => unreachable!(),
                }
            })
        };
        assert_eq!(parse("16Mi").unwrap(), 16 << 20);
        assert_eq!(parse("4194304").unwrap(), 4 << 20);
        assert_eq!(parse("1Gi").unwrap(), 1 << 30);
        let e = parse("1Mi").unwrap_err().to_string();
        assert!(e.contains("less than one review of the largest size (3145728 bytes, 3Mi)"), "{e}");
        let e = parse("16MB").unwrap_err().to_string();
        assert!(
            e.contains("\"16MB\" is not a size: write bytes (16777216) or a number with Ki, Mi or Gi"),
            "{e}"
        );
        let e = parse("99999999999999999999Gi").unwrap_err().to_string();
        assert!(e.contains("is not a size"), "{e}");
        let default = Cli::try_parse_from(["offloading-webhook", "serve"]).unwrap();
        let Command::Serve(cfg) = default.command else { unreachable!() };
        assert_eq!(cfg.max_review_bytes_in_flight, crate::admission::budget::DEFAULT_BUDGET_BYTES);
    }
}

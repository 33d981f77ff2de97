//! The Helm chart in tests: helm and promtool built from Go modules by tests/go/tools/build.sh
//! (cached in target/tools/bin), the chart's path, rendering, and reading YAML documents back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{Printed, ROOT, built_once};

pub const RELEASE: &str = "offloading-webhook";
pub const NAMESPACE: &str = "offloading-webhook";

pub fn chart_dir() -> PathBuf {
    Path::new(ROOT).join("manifests/chart/offloading-webhook")
}

/// One of helm, promtool and oci-layout, built once (tests/go/tools/build.sh): its path.
pub fn tool(name: &str) -> PathBuf {
    built_once("tests/go/tools/build.sh", &[name]).join(name)
}

pub fn helm_bin() -> PathBuf {
    tool("helm")
}

pub fn promtool_bin() -> PathBuf {
    tool("promtool")
}

/// helm with its cache, config and data kept out of $HOME (one directory per test binary).
pub fn helm(args: &[&str]) -> Printed {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    let home = HOME.get_or_init(|| tempfile::Builder::new().prefix("helm-home-").tempdir().unwrap());
    Command::new(helm_bin())
        .args(args)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("could not run helm")
        .into()
}

pub fn helm_ok(args: &[&str]) -> String {
    let p = helm(args);
    assert!(p.ok, "helm {args:?} failed:\n{}{}", p.stdout, p.stderr);
    p.stdout
}

/// `helm template` of the chart as release offloading-webhook in namespace offloading-webhook.
pub fn template(extra: &[&str]) -> Printed {
    let chart = chart_dir();
    let mut args = vec!["template", RELEASE, chart.to_str().unwrap(), "--namespace", NAMESPACE];
    args.extend_from_slice(extra);
    helm(&args)
}

pub fn template_ok(extra: &[&str]) -> String {
    let p = template(extra);
    assert!(p.ok, "helm template {extra:?} failed:\n{}", p.stderr);
    p.stdout
}

/// The YAML documents of a multi-document stream (empty ones dropped).
pub fn documents(yaml: &str) -> Vec<serde_norway::Value> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| serde_norway::Value::deserialize(d).expect("helm printed YAML that does not parse"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The document of this kind (and name), if rendered.
pub fn find<'a>(docs: &'a [serde_norway::Value], kind: &str, name: &str) -> Option<&'a serde_norway::Value> {
    docs.iter().find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
}

/// `KIND/NAME` of each document, as kubectl prints them (lowercase kind).
pub fn kinds(docs: &[serde_norway::Value]) -> Vec<String> {
    docs.iter()
        .map(|d| {
            format!("{}/{}", d["kind"].as_str().unwrap_or("?"), d["metadata"]["name"].as_str().unwrap_or("?"))
        })
        .collect()
}

/// The identifiers of a PromQL expression outside quoted strings (label values, regexes), each with
/// the character that follows it.
fn identifiers(expr: &str) -> Vec<(String, Option<char>)> {
    let mut out = Vec::new();
    let mut ident = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            ident.push(c);
            continue;
        }
        if !ident.is_empty() {
            out.push((std::mem::take(&mut ident), Some(c)));
        }
        if c == '"' || c == '`' || c == '\'' {
            while let Some(q) = chars.next() {
                if q == '\\' {
                    chars.next();
                } else if q == c {
                    break;
                }
            }
        }
    }
    if !ident.is_empty() {
        out.push((ident, None));
    }
    out
}

/// Metric names a PromQL expression selects: each identifier written right before `{` (every
/// selector in the chart's queries carries matchers).
pub fn selected_metrics(expr: &str) -> Vec<String> {
    identifiers(expr).into_iter().filter(|(_, next)| *next == Some('{')).map(|(i, _)| i).collect()
}

/// Every identifier outside quotes that starts with `prefix` (to catch a metric written without
/// matchers).
pub fn identifiers_with_prefix(expr: &str, prefix: &str) -> Vec<String> {
    identifiers(expr).into_iter().map(|(i, _)| i).filter(|i| i.starts_with(prefix)).collect()
}

/// Sample names an exposition exports: each `# TYPE` family with its suffixes (so a family with no
/// sample yet counts), and every sample line's name.
pub fn exported_metrics(exposition: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                _ => &[""],
            };
            for s in suffixes {
                names.insert(if name.ends_with(s) { name.to_owned() } else { format!("{name}{s}") });
            }
        } else if !line.starts_with('#')
            && let Some(name) = line.split(['{', ' ']).next().filter(|n| !n.is_empty())
        {
            names.insert(name.to_owned());
        }
    }
    names
}

/// The queries of the chart's Grafana dashboard (files/dashboard.json), panel title with each.
pub fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(chart_dir().join("files/dashboard.json")).unwrap();
    let dash: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("files/dashboard.json is not valid JSON: {e}"));
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().expect("a dashboard has panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("every target has a PromQL expr");
            out.push((panel["title"].as_str().unwrap_or("?").to_owned(), expr.to_owned()));
        }
    }
    out
}

/// The alert expressions of the chart's PrometheusRule (rendered with default values).
pub fn alert_rules(extra: &[&str]) -> serde_norway::Value {
    let mut args =
        vec!["--set", "metrics.prometheusRule.enabled=true", "--show-only", "templates/prometheusrule.yaml"];
    args.extend_from_slice(extra);
    let docs = documents(&template_ok(&args));
    assert_eq!(docs.len(), 1, "one PrometheusRule");
    docs[0]["spec"].clone()
}

pub fn alert_exprs() -> Vec<(String, String)> {
    let spec = alert_rules(&[]);
    let mut out = Vec::new();
    for group in spec["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            out.push((
                rule["alert"].as_str().unwrap_or("?").to_owned(),
                rule["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

/// The `serve` arguments of the rendered chart's Deployment (without `serve` itself).
pub fn deployment_args(rendered: &str) -> Vec<String> {
    let docs = documents(rendered);
    let d = docs.iter().find(|d| d["kind"].as_str() == Some("Deployment")).expect("a Deployment");
    d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("the container's args")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .filter(|a| a != "serve")
        .collect()
}

/// The Deployment's arguments as a test runs a replica: without the listener addresses
/// (`--webhook-addr`, `--probe-addr`, `--metrics-addr`), which each replica here gets on ports of
/// its own, as each pod has a network of its own (the chart's `[::]:9443` would collide).
pub fn replica_args(rendered: &str) -> Vec<String> {
    const LISTENERS: [&str; 3] = ["--webhook-addr=", "--probe-addr=", "--metrics-addr="];
    deployment_args(rendered).into_iter().filter(|a| !LISTENERS.iter().any(|l| a.starts_with(l))).collect()
}

/// The webhook configurations a replica of the rendered chart registers (Validating, then
/// Mutating), as `webhook-config` builds them from the Deployment's registration arguments: the
/// same code a replica runs, without a cluster.
pub fn registered_configurations(rendered: &str) -> Vec<serde_norway::Value> {
    const SHARED: [&str; 8] = [
        "--validating-webhook-name=",
        "--mutating-webhook-name=",
        "--failure-policy=",
        "--webhook-timeout-seconds=",
        "--match-conditions=",
        "--excluded-namespace=",
        "--namespace-selector-expressions=",
        "--object-selector-expressions=",
    ];
    let args = deployment_args(rendered);
    let service = args
        .iter()
        .find_map(|a| a.strip_prefix("--webhook-service="))
        .expect("the Deployment's --webhook-service")
        .to_owned();
    let hooks = args.iter().filter(|a| SHARED.iter().any(|p| a.starts_with(p)));
    let out = Command::new(crate::support::webhook_bin())
        .args(["webhook-config", "--service", &service])
        .args(hooks)
        .output()
        .expect("could not run webhook-config");
    assert!(out.status.success(), "webhook-config: {}", String::from_utf8_lossy(&out.stderr));
    documents(&String::from_utf8_lossy(&out.stdout))
}

/// The host's first global IPv4 address: an Endpoints object refuses loopback, and kube-apiserver
/// before 1.33 resolves a Service-registered webhook through Endpoints (later, EndpointSlices).
pub fn host_address() -> std::net::IpAddr {
    let out = Command::new("ip").args(["-o", "-4", "addr", "show", "scope", "global"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.split_whitespace().skip_while(|w| *w != "inet").nth(1)?.split('/').next()?.parse().ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "this test needs a non-loopback IPv4 address on the host (`ip -4 addr` shows none):\n{text}"
            )
        })
}

/// Points the release's selectorless Service at a `serve` on `addr`, as the endpoint controllers
/// would for a pod: an Endpoints object (what kube-apiserver before 1.33 reads) and an
/// EndpointSlice managed by `manager` (what later releases read), the port found by the Service
/// port's name, ready.
pub fn endpoints_on_the_host(cp: &super::ControlPlane, addr: std::net::SocketAddr, manager: &str) {
    let (ip, port) = (addr.ip(), addr.port());
    let yaml = format!(
        "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: {RELEASE}\n  namespace: {NAMESPACE}\nsubsets:\n- addresses:\n  - ip: {ip}\n  ports:\n  - name: webhook\n    port: {port}\n    protocol: TCP\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {RELEASE}-host\n  namespace: {NAMESPACE}\n  labels:\n    kubernetes.io/service-name: {RELEASE}\n    endpointslice.kubernetes.io/managed-by: {manager}\naddressType: IPv4\nendpoints:\n- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\nports:\n- name: webhook\n  port: {port}\n  protocol: TCP\n"
    );
    let p = super::apply(cp, &yaml, &[]);
    assert!(p.ok, "{}", p.stderr);
}

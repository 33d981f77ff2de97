//! The Helm chart (manifests/chart/offloading-webhook), with the real helm and promtool built from
//! Go modules (tests/tools/build.sh): lint, the values schema, every supported combination of
//! values through a server-side dry run, install + upgrade + uninstall on the test control plane
//! with the chart's own Service registration answered by a local `serve`, the alerts under
//! `promtool test rules`, and the dashboard's and alerts' metrics against what is exported.

#[path = "support/chart.rs"]
mod chart;
mod support;

use std::path::Path;
use std::time::Duration;

use chart::{NAMESPACE, RELEASE, documents, find, helm_ok, template, template_ok};
use support::{CLUSTER_ID, ControlPlane, Webhook, apply, eventually, install_crds, nsof};

const DENIED: &str = "admission webhook \"validate.offloading-webhook.io\" denied the request: ";
const BAD_OPERATOR: &str = "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: Equals\n        values: [eu]\n";
const BAD_OPERATOR_SAYS: &str = "spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Equals\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\", \"Gt\", \"Lt\"";

/// A supported combination of values: its name, the values file, and objects it must render.
struct Combination {
    name: &'static str,
    values: String,
    renders: &'static [&'static str],
}

/// Every combination the chart supports, as an operator would write the values.
fn combinations(ca_pem: &str) -> Vec<Combination> {
    let ca_block: String = ca_pem.lines().map(|l| format!("      {l}\n")).collect();
    vec![
        Combination {
            name: "defaults: a certificate the replicas keep, deny, 2 replicas",
            values: String::new(),
            renders: &[
                "Secret/offloading-webhook-certificate",
                "Role/offloading-webhook-registration",
                "ValidatingWebhookConfiguration/offloading-webhook",
                "MutatingWebhookConfiguration/offloading-webhook",
                "PodDisruptionBudget/offloading-webhook",
                "Role/offloading-webhook-cluster-id",
                "Role/offloading-webhook-leader-election",
            ],
        },
        Combination {
            name: "cert-manager with the chart's self-signed Issuer",
            values: "certificate:\n  source: certManager\n".into(),
            renders: &["Issuer/offloading-webhook-selfsigned", "Certificate/offloading-webhook"],
        },
        Combination {
            name: "cert-manager with an operator's ClusterIssuer",
            values: "certificate:\n  source: certManager\n  certManager:\n    issuerRef: {kind: ClusterIssuer, name: company-ca, group: cert-manager.io}\n"
                .into(),
            renders: &["Certificate/offloading-webhook"],
        },
        Combination {
            name: "an existing Secret and its CA",
            values: format!(
                "certificate:\n  source: existingSecret\n  existingSecret:\n    name: my-webhook-tls\n    caBundle: |\n{ca_block}"
            ),
            renders: &["ConfigMap/offloading-webhook-ca-bundle", "ValidatingWebhookConfiguration/offloading-webhook"],
        },
        Combination {
            name: "audit mode, Liqo v1, webhooks alone, a fixed cluster id, one replica",
            values: format!(
                "enforcement: warn\nliqoApi: v1\nreconcile: false\nclusterId: {CLUSTER_ID}\nreplicaCount: 1\n"
            ),
            renders: &["Deployment/offloading-webhook"],
        },
        Combination {
            name: "monitoring and a NetworkPolicy",
            values: "networkPolicy:\n  enabled: true\n  webhookFrom:\n  - ipBlock: {cidr: 10.0.0.0/8}\n  metricsFrom:\n  - namespaceSelector:\n      matchLabels: {kubernetes.io/metadata.name: monitoring}\nmetrics:\n  serviceMonitor: {enabled: true, labels: {release: prometheus}}\n  prometheusRule: {enabled: true}\ndashboard:\n  enabled: true\n"
                .into(),
            renders: &[
                "NetworkPolicy/offloading-webhook",
                "ServiceMonitor/offloading-webhook",
                "PrometheusRule/offloading-webhook",
                "ConfigMap/offloading-webhook-dashboard",
            ],
        },
        Combination {
            name: "mutual TLS, a selectorless Service, own selectors and timings, pinned by digest",
            values: "clientCA:\n  configMap: apiserver-client-ca\nservice:\n  selector: false\nwebhooks:\n  failurePolicy: Ignore\n  timeoutSeconds: 10\n  excludedNamespaces: [liqo]\n  namespaceSelectorExpressions:\n  - {key: team, operator: Exists}\n  objectSelectorExpressions:\n  - {key: audit-only, operator: DoesNotExist}\nimage:\n  repository: registry.example/offloading-webhook\n  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nshutdown:\n  preStopSleepSeconds: 10\n  shutdownDelaySeconds: 10\n  drainSeconds: 30\ntopologySpreadConstraints: []\nextraArgs: [--lease-seconds, \"30\"]\n"
                .into(),
            renders: &["Deployment/offloading-webhook", "MutatingWebhookConfiguration/offloading-webhook"],
        },
    ]
}

fn dev_ca(dir: &Path) -> String {
    support::certs_for_loopback(dir);
    std::fs::read_to_string(dir.join("ca.crt")).unwrap()
}

fn values_file(dir: &Path, name: &str, values: &str) -> String {
    let path = dir.join(format!("{}.yaml", name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")));
    std::fs::write(&path, values).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn the_chart_lints_strict_in_every_combination() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dev_ca(&dir.path().join("certs"));
    let chart = chart::chart_dir();
    for c in combinations(&ca) {
        let values = values_file(dir.path(), c.name, &c.values);
        let out =
            helm_ok(&["lint", "--strict", chart.to_str().unwrap(), "--namespace", NAMESPACE, "-f", &values]);
        assert!(out.contains("1 chart(s) linted, 0 chart(s) failed"), "{}: {out}", c.name);
        let docs = documents(&template_ok(&["-f", &values]));
        let rendered = chart::kinds(&docs);
        for want in c.renders {
            assert!(rendered.iter().any(|k| k == want), "{}: {want} not rendered; got {rendered:?}", c.name);
        }
    }
}

#[test]
fn the_deployment_carries_the_drain_and_the_restricted_security_context() {
    let docs = documents(&template_ok(&[]));
    let d = find(&docs, "Deployment", RELEASE).expect("a Deployment");
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], serde_yaml::Value::from(0));
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    // preStop 5 + shutdown delay 5 + drain 20 + 5 of margin.
    assert_eq!(c["lifecycle"]["preStop"]["sleep"]["seconds"], serde_yaml::Value::from(5));
    assert_eq!(pod["terminationGracePeriodSeconds"], serde_yaml::Value::from(35));
    let args: Vec<&str> = c["args"].as_sequence().unwrap().iter().filter_map(|a| a.as_str()).collect();
    for want in [
        "serve",
        "--shutdown-delay-seconds=5",
        "--drain-seconds=20",
        "--enforcement=deny",
        "--liqo-api=auto",
        "--liqo-namespace=liqo",
    ] {
        assert!(args.contains(&want), "{want} missing from {args:?}");
    }
    // An explicit --reconcile=true is refused on Liqo v1.x (two writers): the default leaves it out.
    assert!(!args.iter().any(|a| a.starts_with("--reconcile")), "{args:?}");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], serde_yaml::Value::from(true));
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], serde_yaml::Value::from(true));
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], serde_yaml::Value::from(false));
    assert_eq!(pod["topologySpreadConstraints"][0]["topologyKey"].as_str(), Some("kubernetes.io/hostname"));

    // The grace period follows the values; mutual TLS adds the flag and the mount.
    let docs = documents(&template_ok(&[
        "--set",
        "shutdown.preStopSleepSeconds=10",
        "--set",
        "shutdown.drainSeconds=30",
        "--set",
        "clientCA.configMap=apiserver-ca",
    ]));
    let pod = &find(&docs, "Deployment", RELEASE).unwrap()["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], serde_yaml::Value::from(50));
    let args = serde_yaml::to_string(&pod["containers"][0]["args"]).unwrap();
    assert!(args.contains("--client-ca-file=/etc/offloading-webhook/client-ca/ca.crt"), "{args}");
}

#[test]
fn a_typo_in_values_fails_at_install_with_the_reason() {
    for (set, says) in [
        ("enforcment=warn", "additional properties 'enforcment' not allowed"),
        ("enforcement=block", "at '/enforcement': value must be one of 'deny', 'warn'"),
        ("certificate.source=vault", "value must be one of 'managed', 'certManager', 'existingSecret'"),
        ("certificate.managed.caValidity=5y", "at '/certificate/managed/caValidity'"),
        ("webhooks.validatingName=validate", "at '/webhooks/validatingName'"),
        ("webhooks.failurePolicy=fail", "value must be one of 'Fail', 'Ignore'"),
        ("clusterId=Not_A_Label", "at '/clusterId'"),
        ("replicaCount=0", "at '/replicaCount'"),
    ] {
        let p = template(&["--set", set]);
        assert!(!p.ok, "--set {set} was accepted");
        assert!(
            p.stderr.contains("values don't meet the specifications of the schema"),
            "{set}: {}",
            p.stderr
        );
        assert!(p.stderr.contains(says), "{set}: wanted {says:?} in {}", p.stderr);
    }
    let p = template(&[
        "--set",
        "certificate.source=existingSecret",
        "--set",
        "certificate.existingSecret.name=tls",
    ]);
    assert!(!p.ok);
    assert!(p.stderr.contains("at '/certificate/existingSecret/caBundle'"), "{}", p.stderr);
}

#[test]
fn deploy_yaml_and_the_cert_manager_manifests_are_what_the_chart_renders() {
    // manifests/deploy.yaml is the chart with default values (scripts/manifests.sh writes it).
    let out = std::process::Command::new("bash")
        .arg(format!("{}/scripts/manifests.sh", support::ROOT))
        .arg("--check")
        .env("HELM", chart::helm_bin())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "manifests/deploy.yaml is stale: run scripts/manifests.sh and commit it\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // manifests/cert-manager/certificate.yaml holds the Certificate and Issuer the chart renders
    // (the registrations, manifests/webhooks.yaml, are what a replica writes: tests/e2e_install.rs).
    let file = format!("{}/manifests/cert-manager/certificate.yaml", support::ROOT);
    let rendered = documents(&template_ok(&["--set", "certificate.source=certManager"]));
    for mut want in documents(&std::fs::read_to_string(&file).unwrap()) {
        let (kind, name) = (
            want["kind"].as_str().unwrap().to_owned(),
            want["metadata"]["name"].as_str().unwrap().to_owned(),
        );
        let mut got = find(&rendered, &kind, &name)
            .unwrap_or_else(|| panic!("{file}: the chart renders no {kind}/{name}"))
            .clone();
        for doc in [&mut got, &mut want] {
            if let Some(m) = doc["metadata"].as_mapping_mut() {
                m.remove("labels");
            }
        }
        assert_eq!(got, want, "{file}: {kind}/{name} differs from the chart's");
    }
}

#[test]
fn every_combination_passes_a_server_side_dry_run() {
    let cp = ControlPlane::start();
    install_crds(&cp);
    cp.kubectl_ok(&["apply", "-f", &format!("{}/tests/fixtures/chart-optional-crds.yaml", support::ROOT)]);
    cp.kubectl_ok(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
    // Liqo creates its namespace; the release namespace exists before a dry run of what goes in it.
    cp.kubectl_ok(&["create", "namespace", "liqo"]);
    cp.kubectl_ok(&["create", "namespace", NAMESPACE]);
    let ca = dev_ca(&cp.dir.path().join("certs"));
    for c in combinations(&ca) {
        let values = values_file(cp.dir.path(), c.name, &c.values);
        let rendered = template_ok(&["-f", &values]);
        let p = cp.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], Some(&rendered));
        assert!(p.ok, "{}: the API server refused the rendered chart:\n{}", c.name, p.stderr);
        let count = documents(&rendered).len();
        assert_eq!(
            p.stdout.lines().filter(|l| l.ends_with("(server dry run)")).count(),
            count,
            "{}:\n{}",
            c.name,
            p.stdout
        );
    }
}

#[test]
fn alerts_fire_on_written_series_and_stay_quiet_on_healthy_ones() {
    let dir = tempfile::tempdir().unwrap();
    let rules = serde_yaml::to_string(&chart::alert_rules(&[])).unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
    std::fs::copy(
        format!("{}/tests/alerts/alerts_test.yaml", support::ROOT),
        dir.path().join("alerts_test.yaml"),
    )
    .unwrap();
    let promtool = |args: &[&str]| -> support::Printed {
        std::process::Command::new(chart::promtool_bin())
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
            .into()
    };
    let check = promtool(&["check", "rules", "rules.yaml"]);
    assert!(check.ok, "promtool check rules:\n{}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains("SUCCESS: 8 rules found"), "{}", check.stdout);
    let test = promtool(&["test", "rules", "alerts_test.yaml"]);
    assert!(test.ok, "promtool test rules:\n{}{}", test.stdout, test.stderr);
    assert!(test.stdout.contains("SUCCESS"), "{}", test.stdout);
}

/// The metric names of the dashboard's queries and the alerts' expressions.
fn queried_metrics() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (what, expr) in chart::dashboard_queries().into_iter().chain(chart::alert_exprs()) {
        let mut names = chart::selected_metrics(&expr);
        // A metric written without matchers would escape selected_metrics: none may.
        for prefix in ["offloading_webhook_", "apiserver_"] {
            for n in chart::identifiers_with_prefix(&expr, prefix) {
                assert!(names.contains(&n), "{what}: write {n} with label matchers ({expr})");
            }
        }
        names.dedup();
        out.extend(names.into_iter().map(|n| (what.clone(), n)));
    }
    out
}

/// Metrics that neither the webhook nor the API server exports, and who does.
const OTHER_EXPORTERS: &[(&str, &str)] =
    &[("kube_deployment_status_replicas_available", "kube-state-metrics"), ("up", "Prometheus itself")];

#[test]
fn the_dashboard_and_the_alerts_query_only_metrics_the_webhook_exports() {
    let queries = chart::dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");

    // A running serve's /metrics: every family shows its # TYPE even before its first sample.
    let dir = tempfile::tempdir().unwrap();
    support::certs_for_loopback(dir.path());
    let (port, probe, metrics) = (support::free_port(), support::free_port(), support::free_port());
    let child = std::process::Command::new(support::webhook_bin())
        .args(["serve", "--no-cluster", "--cluster-id", CLUSTER_ID])
        .arg("--tls-cert-file")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key-file")
        .arg(dir.path().join("tls.key"))
        .args(["--webhook-addr", &format!("127.0.0.1:{port}")])
        .args(["--probe-addr", &format!("127.0.0.1:{probe}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .args(["--shutdown-delay-seconds", "0"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    let scraped = eventually(Duration::from_secs(30), "serve's /metrics", || {
        support::http_get_full(metrics, "/metrics").filter(|r| r.contains(" 200 "))
    });
    let body = scraped.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let exported = chart::exported_metrics(body);

    let mut ours = 0;
    for (what, name) in queried_metrics() {
        if name.starts_with("offloading_webhook_") {
            ours += 1;
            assert!(
                exported.contains(&name),
                "{what}: {name} is not exported by serve; it exports {exported:?}"
            );
        } else if !name.starts_with("apiserver_") {
            // apiserver_* are checked against the real kube-apiserver in the install test.
            assert!(
                OTHER_EXPORTERS.iter().any(|(n, _)| *n == name),
                "{what}: {name} is exported by neither the webhook nor the API server"
            );
        }
    }
    assert!(ours >= 10, "the dashboard and alerts query {ours} of our metrics");
}

/// The Secret's key, decoded, as kubectl prints it.
fn secret_key(cp: &ControlPlane, secret: &str, key: &str) -> String {
    cp.kubectl_ok(&[
        "-n",
        NAMESPACE,
        "get",
        "secret",
        secret,
        "-o",
        &format!("go-template={{{{index .data \"{key}\" | base64decode}}}}"),
    ])
}

/// A replica as the chart's Deployment runs it (its namespace as the pod's environment gives it).
fn chart_replica(cp: &ControlPlane, values: &[&str]) -> Webhook {
    let mut args = chart::deployment_args(&template_ok(values));
    args.push(format!("--namespace={NAMESPACE}"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The chart's certificate is the managed one: no files are read.
    Webhook::start(cp, &cp.dir.path().join("no-certs"), &args)
}

/// Points the selectorless Service at a `serve` on loopback, as the EndpointSlice controller would
/// for a pod: FQDN slice (an IPv4 slice refuses loopback), the port found by the Service port's
/// name, `ready: true`.
fn endpoint_slice(cp: &ControlPlane, port: u16) {
    let yaml = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: offloading-webhook-loopback\n  namespace: {NAMESPACE}\n  labels:\n    kubernetes.io/service-name: {RELEASE}\n    endpointslice.kubernetes.io/managed-by: e2e-helm.offloading-webhook\naddressType: FQDN\nendpoints:\n- addresses: [\"127.0.0.1\"]\n  conditions: {{ready: true}}\nports:\n- name: webhook\n  port: {port}\n  protocol: TCP\n"
    );
    let p = apply(cp, &yaml, &[]);
    assert!(p.ok, "{}", p.stderr);
}

fn refused_through_the_chart(cp: &ControlPlane, ns: &str) -> String {
    let bad = nsof(ns, "offloading", BAD_OPERATOR);
    // The API server's resolver reads its own EndpointSlice informer, and the replica registers
    // once it sees its endpoint ready: allow them a moment. Dry runs only, so that nothing is
    // stored before the registration is in effect.
    eventually(Duration::from_secs(60), "the chart's registration to refuse the object", || {
        let p = apply(cp, &bad, &["--dry-run=server"]);
        (!p.ok && p.stderr.contains(DENIED)).then_some(())
    });
    let p = apply(cp, &bad, &[]);
    assert!(!p.ok, "a broken object was stored: {}", p.stdout);
    p.stderr
}

#[test]
fn helm_install_upgrade_and_uninstall_on_the_test_control_plane() {
    // With aggregator routing the API server reaches a Service-registered webhook through the
    // Service's EndpointSlices, as it does in a cluster without kube-proxy in its path.
    let cp = ControlPlane::start_with(&[("UP_APISERVER_ARGS", "--enable-aggregator-routing=true")]);
    install_crds(&cp);
    cp.kubectl_ok(&["create", "namespace", "liqo"]);
    cp.kubectl_ok(&["create", "namespace", "team-a"]);
    let chart_path = chart::chart_dir();
    let chart_path = chart_path.to_str().unwrap();
    let kubeconfig = cp.kubeconfig.to_str().unwrap();
    // No kubelet here: the Service is selectorless and the test plays the endpoints.
    let values = values_file(
        cp.dir.path(),
        "install",
        &format!("service:\n  selector: false\nclusterId: {CLUSTER_ID}\ncertificate:\n  reloadSeconds: 1\n"),
    );

    let out = helm_ok(&[
        "install",
        RELEASE,
        chart_path,
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--kubeconfig",
        kubeconfig,
        "-f",
        &values,
    ]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(out.contains("fail closed"), "the NOTES say what failing closed means: {out}");
    assert!(out.contains("validate.offloading-webhook.io"), "the NOTES name the webhooks: {out}");
    let entries = |cp: &ControlPlane| {
        cp.kubectl_ok(&[
            "get",
            "validatingwebhookconfiguration,mutatingwebhookconfiguration",
            RELEASE,
            "-o",
            "jsonpath={.items[*].webhooks[*].name}",
        ])
    };
    assert_eq!(entries(&cp), "", "the chart's registrations hold no webhook until a replica is ready");

    // The chart's replica, served on loopback behind the chart's Service: it keeps its certificate
    // in the chart's Secret and registers the webhooks.
    let wh = chart_replica(&cp, &["-f", &values]);
    endpoint_slice(&cp, wh.port);
    let stderr = refused_through_the_chart(&cp, "team-a");
    assert_eq!(
        stderr.trim(),
        format!("Error from server: error when creating \"STDIN\": {DENIED}{BAD_OPERATOR_SAYS}")
    );
    assert_eq!(entries(&cp), "validate.offloading-webhook.io mutate.offloading-webhook.io");
    let ca_before = secret_key(&cp, "offloading-webhook-certificate", "ca.crt");
    let bundle = cp.kubectl_ok(&[
        "get",
        "validatingwebhookconfiguration",
        RELEASE,
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
    ]);
    assert!(!bundle.is_empty(), "the replica fills the caBundle");

    // The API server's metrics that the dashboard and the alerts name exist, now that it has
    // called the webhook.
    let apiserver = chart::exported_metrics(&cp.kubectl_ok(&["get", "--raw", "/metrics"]));
    for (what, name) in queried_metrics() {
        if name.starts_with("apiserver_") {
            assert!(apiserver.contains(&name), "{what}: kube-apiserver exports no {name}");
        }
    }

    // Upgrade with changed values: the certificate the replicas keep is left alone, the new
    // replica (a rollout) registers the new settings.
    let upgrade = ["-f", values.as_str(), "--set", "enforcement=warn", "--set", "webhooks.timeoutSeconds=10"];
    let mut args = vec!["upgrade", RELEASE, chart_path, "--namespace", NAMESPACE, "--kubeconfig", kubeconfig];
    args.extend(upgrade);
    let out = helm_ok(&args);
    assert!(out.contains("STATUS: deployed") && out.contains("REVISION: 2"), "{out}");
    assert!(out.contains("Audit mode"), "{out}");
    assert_eq!(
        secret_key(&cp, "offloading-webhook-certificate", "ca.crt"),
        ca_before,
        "the upgrade replaced the CA"
    );
    let deployment_args = cp.kubectl_ok(&[
        "-n",
        NAMESPACE,
        "get",
        "deployment",
        RELEASE,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].args}",
    ]);
    assert!(deployment_args.contains("--enforcement=warn"), "{deployment_args}");
    drop(wh);
    let wh = chart_replica(&cp, &upgrade);
    endpoint_slice(&cp, wh.port);
    let timeouts = || {
        cp.kubectl_ok(&[
            "get",
            "validatingwebhookconfiguration,mutatingwebhookconfiguration",
            RELEASE,
            "-o",
            "jsonpath={.items[*].webhooks[0].timeoutSeconds}",
        ])
    };
    support::wait_eq(Duration::from_secs(30), "the new replica's registration", "10 10", timeouts);
    let bundle_after = cp.kubectl_ok(&[
        "get",
        "validatingwebhookconfiguration",
        RELEASE,
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
    ]);
    assert_eq!(bundle_after, bundle, "the caBundle changed on upgrade");
    // Audit mode through the unchanged caBundle: admitted, with the refusal as a warning.
    cp.kubectl_ok(&["create", "namespace", "team-b"]);
    let p = apply(&cp, &nsof("team-b", "offloading", BAD_OPERATOR), &[]);
    assert!(p.ok && p.stderr.contains(BAD_OPERATOR_SAYS), "{}{}", p.stdout, p.stderr);

    // Uninstall, with the webhook stopped: a registration left behind would now refuse every
    // write with "failed calling webhook".
    drop(wh);
    let out = helm_ok(&["uninstall", RELEASE, "--namespace", NAMESPACE, "--kubeconfig", kubeconfig]);
    assert!(out.contains("release \"offloading-webhook\" uninstalled"), "{out}");
    let left = cp.kubectl_ok(&[
        "get",
        "validatingwebhookconfigurations,mutatingwebhookconfigurations",
        "-o",
        "name",
    ]);
    assert_eq!(left.trim(), "", "webhook configurations left behind");
    let left = cp.kubectl_ok(&[
        "get",
        "clusterroles,clusterrolebindings",
        "-l",
        "app.kubernetes.io/instance=offloading-webhook",
        "-o",
        "name",
    ]);
    assert_eq!(left.trim(), "", "cluster-wide objects left behind");
    let left = cp.kubectl_ok(&["-n", NAMESPACE, "get", "secrets,deployments,services,roles", "-o", "name"]);
    assert_eq!(left.trim(), "", "namespaced objects left behind");
    let left = cp.kubectl_ok(&["-n", "liqo", "get", "roles,rolebindings", "-o", "name"]);
    assert_eq!(left.trim(), "", "the Role in Liqo's namespace was left behind");
    let p = apply(&cp, &nsof("team-a", "offloading", BAD_OPERATOR), &[]);
    assert!(p.ok, "a write was refused after uninstall: {}", p.stderr);
}

#[test]
fn the_webhooks_always_skip_kube_system_their_own_namespace_and_labelled_objects() {
    let rendered = template_ok(&[
        "--namespace",
        "webhooks",
        "--set",
        "webhooks.excludedNamespaces={liqo,kube-system}",
        "--set",
        "webhooks.namespaceSelectorExpressions[0].key=team",
        "--set",
        "webhooks.namespaceSelectorExpressions[0].operator=Exists",
        "--set",
        "webhooks.objectSelectorExpressions[0].key=audit-only",
        "--set",
        "webhooks.objectSelectorExpressions[0].operator=DoesNotExist",
        "--set",
        "replicaCount=1",
    ]);
    // What the replicas register with the chart's arguments: `webhook-config` builds the same
    // entries from the same flags.
    let args = chart::deployment_args(&rendered);
    let service = args.iter().find_map(|a| a.strip_prefix("--webhook-service=")).expect("--webhook-service");
    assert_eq!(service, "webhooks/offloading-webhook");
    let shared = [
        "--validating-webhook-name=",
        "--mutating-webhook-name=",
        "--failure-policy=",
        "--webhook-timeout-seconds=",
        "--match-conditions=",
        "--excluded-namespace=",
        "--namespace-selector-expressions=",
        "--object-selector-expressions=",
    ];
    let hook_args: Vec<&String> = args.iter().filter(|a| shared.iter().any(|p| a.starts_with(p))).collect();
    let out = std::process::Command::new(support::webhook_bin())
        .args(["webhook-config", "--service", service])
        .args(hook_args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let registered = documents(&String::from_utf8(out.stdout).unwrap());
    for (i, kind) in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"].iter().enumerate() {
        let hook = &registered[i]["webhooks"][0];
        let ns = serde_yaml::to_string(&hook["namespaceSelector"]).unwrap();
        assert_eq!(
            ns,
            "matchExpressions:\n- key: kubernetes.io/metadata.name\n  operator: NotIn\n  values:\n  - kube-system\n  - webhooks\n  - liqo\n- key: team\n  operator: Exists\n",
            "{kind}"
        );
        let obj = serde_yaml::to_string(&hook["objectSelector"]).unwrap();
        assert_eq!(
            obj,
            "matchExpressions:\n- key: liqo.io/webhook-skip\n  operator: NotIn\n  values:\n  - 'true'\n- key: audit-only\n  operator: DoesNotExist\n",
            "{kind}"
        );
        assert_eq!(hook["clientConfig"]["service"]["namespace"].as_str(), Some("webhooks"));
    }
    // One replica: no PodDisruptionBudget, which would block every node drain.
    assert!(find(&documents(&rendered), "PodDisruptionBudget", RELEASE).is_none());
}

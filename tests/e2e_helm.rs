//! The Helm chart (manifests/chart/offloading-webhook), with the real helm and promtool built from
//! Go modules (tests/go/tools/build.sh): lint, the values schema, every supported combination of
//! values through a server-side dry run, install + upgrade + uninstall on the test control plane
//! with the chart's own Service registration answered by a local `serve`, the alerts under
//! `promtool test rules`, and the dashboard's and alerts' metrics against what is exported.

mod support;
use support::chart;

use std::path::Path;
use std::time::Duration;

use chart::{NAMESPACE, RELEASE, documents, find, helm_ok, template, template_ok};
use support::{CLUSTER_ID, ControlPlane, Webhook, apply, eventually, install_crds, nsof};

/// Who manages the EndpointSlice that points the Service at a `serve` on the host.
const MANAGER: &str = "e2e-helm.offloading-webhook";

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
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], serde_norway::Value::from(0));
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    // preStop 5 + shutdown delay 5 + drain 20 + 5 of margin.
    assert_eq!(c["lifecycle"]["preStop"]["sleep"]["seconds"], serde_norway::Value::from(5));
    assert_eq!(pod["terminationGracePeriodSeconds"], serde_norway::Value::from(35));
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
    assert_eq!(pod["securityContext"]["runAsNonRoot"], serde_norway::Value::from(true));
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], serde_norway::Value::from(true));
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], serde_norway::Value::from(false));
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
    assert_eq!(pod["terminationGracePeriodSeconds"], serde_norway::Value::from(50));
    let args = serde_norway::to_string(&pod["containers"][0]["args"]).unwrap();
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
    let rules = serde_norway::to_string(&chart::alert_rules(&[])).unwrap();
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
    assert!(check.stdout.contains("SUCCESS: 11 rules found"), "{}", check.stdout);
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

/// The strings of a YAML sequence.
fn strings(v: &serde_norway::Value) -> Vec<String> {
    v.as_sequence().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
}

/// What the rendering of the Deployment, the Service and the NetworkPolicy says about the ports.
fn assert_ports(
    docs: &[serde_norway::Value],
    (webhook, probes, metrics): (u64, u64, u64),
    host_network: bool,
) {
    let pod = &find(docs, "Deployment", RELEASE).expect("a Deployment")["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args = strings(&c["args"]);
    for want in [
        format!("--webhook-addr=[::]:{webhook}"),
        format!("--probe-addr=[::]:{probes}"),
        format!("--metrics-addr=[::]:{metrics}"),
    ] {
        assert!(args.contains(&want), "{want} missing from {args:?}");
    }
    let port = |name: &str| {
        c["ports"].as_sequence().unwrap().iter().find(|p| p["name"].as_str() == Some(name)).unwrap()
            ["containerPort"]
            .as_u64()
    };
    assert_eq!(
        (port("webhook"), port("probes"), port("metrics")),
        (Some(webhook), Some(probes), Some(metrics))
    );
    // The probes, and the Service's targetPorts, name the container's ports: they follow them.
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"].as_str(), Some("probes"), "{probe}");
    }
    let svc = find(docs, "Service", RELEASE).unwrap();
    let svc_ports: Vec<(Option<&str>, Option<u64>, Option<&str>)> = svc["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str(), p["port"].as_u64(), p["targetPort"].as_str()))
        .collect();
    assert_eq!(
        svc_ports,
        [(Some("webhook"), Some(443), Some("webhook")), (Some("metrics"), Some(metrics), Some("metrics"))]
    );
    let np = find(docs, "NetworkPolicy", RELEASE).expect("a NetworkPolicy");
    let np_ports: Vec<Option<u64>> =
        np["spec"]["ingress"].as_sequence().unwrap().iter().map(|r| r["ports"][0]["port"].as_u64()).collect();
    assert_eq!(np_ports, [Some(webhook), Some(metrics)]);
    if host_network {
        assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
        assert_eq!(pod["dnsPolicy"].as_str(), Some("ClusterFirstWithHostNet"));
    } else {
        assert!(pod["hostNetwork"].is_null() && pod["dnsPolicy"].is_null(), "{pod:?}");
    }
}

#[test]
fn ports_and_host_network_follow_the_values() {
    let docs = documents(&template_ok(&["--set", "networkPolicy.enabled=true"]));
    assert_ports(&docs, (9443, 8081, 8080), false);

    // As a GKE private cluster or EKS with a custom CNI needs it: the node's network, free ports.
    let docs = documents(&template_ok(&[
        "--set",
        "ports.webhook=10260",
        "--set",
        "ports.probes=10261",
        "--set",
        "ports.metrics=10262",
        "--set",
        "hostNetwork=true",
        "--set",
        "networkPolicy.enabled=true",
    ]));
    assert_ports(&docs, (10260, 10261, 10262), true);

    let p = template(&["--set", "ports.metrics=8081"]);
    assert!(!p.ok, "two listeners on one port were accepted");
    assert!(
        p.stderr.contains(
            "ports.webhook (9443), ports.probes (8081) and ports.metrics (8081) must be three different ports"
        ),
        "{}",
        p.stderr
    );
    let p = template(&["--set", "ports.webhook=70000"]);
    assert!(!p.ok && p.stderr.contains("at '/ports/webhook'"), "{}", p.stderr);
}

#[test]
fn the_chart_is_usable_as_a_subchart_with_global_values() {
    template_ok(&["--set", "global.imageRegistry=registry.example"]);

    // A parent chart that vendors this one and shares global values with every subchart.
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("platform");
    std::fs::create_dir_all(parent.join("charts")).unwrap();
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(chart::chart_dir())
        .arg(parent.join("charts/offloading-webhook"))
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::write(parent.join("Chart.yaml"), "apiVersion: v2\nname: platform\nversion: 1.0.0\n").unwrap();
    std::fs::write(
        parent.join("values.yaml"),
        "global:\n  imageRegistry: registry.example\n  storageClass: fast\noffloading-webhook:\n  replicaCount: 1\n  enforcement: warn\n",
    )
    .unwrap();
    let docs =
        documents(&helm_ok(&["template", "platform", parent.to_str().unwrap(), "--namespace", NAMESPACE]));
    let d = find(&docs, "Deployment", "platform-offloading-webhook").expect("the subchart's Deployment");
    assert_eq!(d["spec"]["replicas"].as_u64(), Some(1));
    assert!(
        strings(&d["spec"]["template"]["spec"]["containers"][0]["args"])
            .contains(&"--enforcement=warn".into())
    );
}

#[test]
fn chart_yaml_and_the_runbooks_point_at_this_project() {
    let chart: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(chart::chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    let home = chart["home"].as_str().expect("Chart.yaml has a home");
    assert!(!home.contains("liqotech"), "Chart.yaml's home is Liqo's repository: {home}");
    assert_eq!(chart["sources"][0].as_str(), Some(home));
    let values: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(chart::chart_dir().join("values.yaml")).unwrap())
            .unwrap();
    let runbooks = values["metrics"]["prometheusRule"]["runbookBaseUrl"].as_str().unwrap();
    assert!(runbooks.starts_with(home) && runbooks.ends_with("/docs/runbooks"), "{runbooks}");
}

#[test]
fn deploy_yaml_carries_no_helm_ownership_labels() {
    let text = std::fs::read_to_string(format!("{}/manifests/deploy.yaml", support::ROOT)).unwrap();
    let docs = documents(&text);
    assert!(docs.len() >= 8, "{}", chart::kinds(&docs).join(" "));
    for doc in &docs {
        let labels = serde_norway::to_string(&doc["metadata"]["labels"]).unwrap();
        for helm_only in ["helm.sh/chart", "app.kubernetes.io/managed-by", "meta.helm.sh/"] {
            assert!(
                !labels.contains(helm_only),
                "{}: {helm_only} in {labels}",
                chart::kinds(std::slice::from_ref(doc))[0]
            );
        }
    }
    assert!(!text.contains("managed-by") && !text.contains("helm.sh/chart"));
    // The labels that select and group the objects stay.
    assert!(text.contains("app.kubernetes.io/instance: offloading-webhook"));
}

#[test]
fn helm_adopts_what_deploy_yaml_created() {
    let cp = ControlPlane::start();
    let deploy = format!("{}/manifests/deploy.yaml", support::ROOT);
    let chart_path = chart::chart_dir();
    let chart_path = chart_path.to_str().unwrap();
    let kubeconfig = cp.kubeconfig.to_str().unwrap();
    let helm = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--namespace", NAMESPACE, "--kubeconfig", kubeconfig]);
        chart::helm(&all)
    };
    // Liqo's namespace, where the chart's Role reads the cluster id.
    cp.kubectl_ok(&["create", "namespace", "liqo"]);
    cp.kubectl_ok(&["apply", "-f", &deploy]);

    // Helm installs nothing over objects it does not own, and says why.
    let p = helm(&["install", RELEASE, chart_path]);
    assert!(!p.ok, "helm install over kubectl's objects succeeded without adopting them");
    assert!(
        p.stderr.contains("exists and cannot be imported into the current release: invalid ownership metadata; label validation error: missing key \"app.kubernetes.io/managed-by\": must be set to \"Helm\""),
        "{}",
        p.stderr
    );

    // Helm 3.17 and later adopt them with --take-ownership; an upgrade then works as usual.
    let p = helm(&["install", RELEASE, chart_path, "--take-ownership"]);
    assert!(p.ok && p.stdout.contains("STATUS: deployed"), "{}{}", p.stdout, p.stderr);
    let owners = |cp: &ControlPlane| {
        cp.kubectl_ok(&[
            "get",
            "-f",
            &deploy,
            "-o",
            r#"jsonpath={range .items[*]}{.kind}/{.metadata.name} {.metadata.labels.app\.kubernetes\.io/managed-by} {.metadata.annotations.meta\.helm\.sh/release-name}{"\n"}{end}"#,
        ])
    };
    let owned = owners(&cp);
    // Every object but the Namespace, which the chart does not render (--create-namespace's job).
    for line in owned.lines().filter(|l| !l.starts_with("Namespace/")) {
        assert!(line.ends_with(" Helm offloading-webhook"), "not adopted: {line}\n{owned}");
    }
    let p = helm(&["upgrade", RELEASE, chart_path, "--set", "replicaCount=3"]);
    assert!(p.ok && p.stdout.contains("REVISION: 2"), "{}{}", p.stdout, p.stderr);
    assert_eq!(
        cp.kubectl_ok(&["-n", NAMESPACE, "get", "deployment", RELEASE, "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );

    // Older Helm: the labels and annotations Helm checks, set by hand, then a plain install.
    let p = helm(&["uninstall", RELEASE, "--wait"]);
    assert!(p.ok, "{}", p.stderr);
    cp.kubectl_ok(&["apply", "-f", &deploy]);
    cp.kubectl_ok(&["label", "-f", &deploy, "app.kubernetes.io/managed-by=Helm", "--overwrite"]);
    cp.kubectl_ok(&[
        "annotate",
        "-f",
        &deploy,
        "meta.helm.sh/release-name=offloading-webhook",
        "meta.helm.sh/release-namespace=offloading-webhook",
        "--overwrite",
    ]);
    let p = helm(&["install", RELEASE, chart_path]);
    assert!(p.ok && p.stdout.contains("STATUS: deployed"), "{}{}", p.stdout, p.stderr);
}

/// The base of every runbook_url, from values.yaml.
fn runbook_base() -> String {
    let values: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(chart::chart_dir().join("values.yaml")).unwrap())
            .unwrap();
    values["metrics"]["prometheusRule"]["runbookBaseUrl"].as_str().unwrap().to_owned()
}

/// (alert, severity, runbook_url) of each rule.
fn alert_summaries(extra: &[&str]) -> Vec<(String, String, String)> {
    let spec = chart::alert_rules(extra);
    let mut out = Vec::new();
    for group in spec["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let s = |v: &serde_norway::Value| v.as_str().unwrap_or("").to_owned();
            out.push((
                s(&rule["alert"]),
                s(&rule["labels"]["severity"]),
                s(&rule["annotations"]["runbook_url"]),
            ));
        }
    }
    out
}

#[test]
fn every_alert_links_its_runbook_and_only_refused_writes_are_critical() {
    let base = runbook_base();
    let alerts = alert_summaries(&[]);
    let runbooks = Path::new(support::ROOT).join("docs/runbooks");
    let index = std::fs::read_to_string(runbooks.join("README.md")).unwrap();
    for (alert, severity, url) in &alerts {
        assert_eq!(url, &format!("{base}/{alert}.md"), "{alert}");
        let page = std::fs::read_to_string(runbooks.join(format!("{alert}.md")))
            .unwrap_or_else(|e| panic!("{alert} links docs/runbooks/{alert}.md: {e}"));
        assert!(page.starts_with(&format!("# {alert}\n")), "{alert}: the page names another alert");
        assert!(
            page.contains(&format!("**Severity: {severity}.**")),
            "{alert}: the page says another severity"
        );
        for section in ["## What you see", "## Confirm", "## Fix"] {
            assert!(page.contains(section), "{alert}: no {section:?} section");
        }
        assert!(page.contains("```bash\n"), "{alert}: no command to confirm it");
        assert!(index.contains(&format!("[{alert}]({alert}.md) | {severity} |")), "{alert} not in the index");
    }
    // No page without its alert.
    for entry in std::fs::read_dir(&runbooks).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(alert) = name.strip_suffix(".md").filter(|n| *n != "README") else { continue };
        assert!(alerts.iter().any(|(a, _, _)| a == alert), "docs/runbooks/{name} has no alert");
    }
    // Critical means the cluster refuses NamespaceOffloading writes, and nothing else.
    let critical: Vec<&str> =
        alerts.iter().filter(|(_, s, _)| s == "critical").map(|(a, _, _)| a.as_str()).collect();
    assert_eq!(critical, ["OffloadingWebhookCallsFailing", "OffloadingWebhookNoReadyReplica"]);
    assert!(alerts.iter().all(|(_, s, _)| s == "critical" || s == "warning"), "{alerts:?}");

    // The links follow the value; with no reconcile loop there is no leader to miss.
    let alerts = alert_summaries(&[
        "--set",
        "metrics.prometheusRule.runbookBaseUrl=https://wiki.example/ops/runbooks",
        "--set",
        "reconcile=false",
    ]);
    for (alert, _, url) in &alerts {
        assert_eq!(url, &format!("https://wiki.example/ops/runbooks/{alert}.md"));
    }
    assert!(!alerts.iter().any(|(a, _, _)| a == "OffloadingWebhookNoLeader"), "{alerts:?}");
    let p = template(&["--set", "metrics.prometheusRule.runbookBaseUrl=https://wiki.example/runbooks/"]);
    assert!(!p.ok && p.stderr.contains("at '/metrics/prometheusRule/runbookBaseUrl'"), "{}", p.stderr);
}

/// The rendered dashboard (the ConfigMap's JSON).
fn rendered_dashboard(extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--set", "dashboard.enabled=true", "--show-only", "templates/dashboard.yaml"];
    args.extend_from_slice(extra);
    let docs = documents(&template_ok(&args));
    let json = docs[0]["data"]["offloading-webhook.json"].as_str().expect("the dashboard's JSON");
    serde_json::from_str(json).expect("the rendered dashboard is JSON")
}

fn names_regex(validating: &str, mutating: &str) -> String {
    format!("{}|{}", validating.replace('.', "[.]"), mutating.replace('.', "[.]"))
}

/// Asserts that every API server metric the alerts and the dashboard select is selected by exactly
/// `regex` (the dashboard through its hidden $webhooks variable), and every dashboard query by
/// $cluster.
fn assert_keyed_to(extra: &[&str], regex: &str) {
    let matcher = format!("{{name=~\"{regex}\"");
    let mut alerts = 0;
    for group in chart::alert_rules(extra)["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            let selectors =
                chart::selected_metrics(expr).iter().filter(|m| m.starts_with("apiserver_")).count();
            assert_eq!(
                expr.matches(&matcher).count(),
                selectors,
                "{}: {expr}",
                rule["alert"].as_str().unwrap()
            );
            alerts += usize::from(selectors > 0);
        }
    }
    assert!(alerts >= 3, "{alerts} alerts on the API server's metrics");

    let dash = rendered_dashboard(extra);
    let vars = dash["templating"]["list"].as_array().unwrap();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no ${name}"));
    assert_eq!(var("webhooks")["query"].as_str(), Some(regex));
    assert_eq!(var("webhooks")["type"], "constant");
    assert_eq!(var("cluster")["type"], "query");
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            let title = panel["title"].as_str().unwrap();
            assert_eq!(
                expr.matches('{').count(),
                expr.matches("{cluster=\"$cluster\",").count(),
                "{title}: every selector starts with cluster=\"$cluster\": {expr}"
            );
            let selectors =
                chart::selected_metrics(expr).iter().filter(|m| m.starts_with("apiserver_")).count();
            assert_eq!(selectors, expr.matches("name=~\"$webhooks\"").count(), "{title}: {expr}");
        }
    }
}

#[test]
fn the_alerts_and_the_dashboard_follow_the_webhook_names() {
    assert_keyed_to(&[], &names_regex("validate.offloading-webhook.io", "mutate.offloading-webhook.io"));
    let names = [
        "--set",
        "webhooks.validatingName=check.platform.example",
        "--set",
        "webhooks.mutatingName=annotate.platform.example",
    ];
    assert_keyed_to(&names, &names_regex("check.platform.example", "annotate.platform.example"));
    // Liqo's names are never selected: its webhook's calls are not ours.
    let rules = serde_norway::to_string(&chart::alert_rules(&[])).unwrap();
    assert!(!rules.contains("liqo[.]io"), "{rules}");
    let p = template(&["--set", "webhooks.validatingName=validate"]);
    assert!(!p.ok && p.stderr.contains("at '/webhooks/validatingName'"), "{}", p.stderr);
}

/// The webhook names the chart's replicas register (validating, mutating): the chart renders its
/// configurations empty and a ready replica fills them in from the Deployment's arguments.
fn registered_names(extra: &[&str]) -> (String, String) {
    let registered = chart::registered_configurations(&template_ok(extra));
    let name = |kind: &str| {
        let config = registered.iter().find(|d| d["kind"].as_str() == Some(kind));
        config
            .and_then(|d| d["webhooks"][0]["name"].as_str())
            .unwrap_or_else(|| panic!("no {kind} entry"))
            .to_owned()
    };
    (name("ValidatingWebhookConfiguration"), name("MutatingWebhookConfiguration"))
}

#[test]
fn the_alerts_and_the_dashboard_select_the_names_the_chart_registers() {
    for extra in [
        &[][..],
        &[
            "--set",
            "webhooks.validatingName=check.platform.example",
            "--set",
            "webhooks.mutatingName=annotate.platform.example",
        ][..],
    ] {
        let (validating, mutating) = registered_names(extra);
        assert_keyed_to(extra, &names_regex(&validating, &mutating));
    }
}

/// Whether every field of `want` is in `got` with the same value (maps key by key, lists item by
/// item); collects the paths that differ. What the API server kept of what the chart set: a release
/// that does not know a field drops it without a word.
fn kept(want: &serde_json::Value, got: &serde_json::Value, path: &str, lost: &mut Vec<String>) {
    use serde_json::Value;
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                match g.get(k) {
                    Some(gv) => kept(v, gv, &format!("{path}.{k}"), lost),
                    None => lost.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                kept(wv, gv, &format!("{path}[{i}]"), lost);
            }
        }
        _ if want == got => {}
        _ => lost.push(format!("{path}: set {want}, stored {got}")),
    }
}

/// The Kubernetes version a control-plane directory builds (its versions.env).
fn kubernetes_version(versions_env: &str) -> String {
    let text =
        std::fs::read_to_string(format!("{}/tests/go/controlplane/{versions_env}", support::ROOT)).unwrap();
    text.lines().find_map(|l| l.strip_prefix("KUBERNETES_VERSION=")).unwrap().trim().to_owned()
}

/// The oldest minor release Chart.yaml's kubeVersion admits, as a control-plane directory ("v1.30").
fn oldest_claimed_release() -> String {
    let chart: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(chart::chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    let constraint = chart["kubeVersion"].as_str().unwrap();
    let version =
        constraint.strip_prefix(">=").unwrap_or_else(|| panic!("kubeVersion {constraint} is not >=X"));
    let mut parts = version.split(['.', '-']);
    format!("v{}.{}", parts.next().unwrap(), parts.next().unwrap())
}

/// On one control plane: the chart installed (Helm checks its kubeVersion against the server), the
/// API server keeping every field the chart sets on the registrations and the container (preStop
/// sleep included), a broken object refused through the chart's own registration with the name it
/// registers, a call that fails open counted under that name, and nothing left after uninstall.
fn install_and_refuse_on(cp: &ControlPlane, kubernetes: &str) {
    let version: serde_json::Value =
        serde_json::from_str(&cp.kubectl_ok(&["version", "-o", "json"])).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"].as_str(), Some(kubernetes));
    install_crds(cp);
    cp.kubectl_ok(&["create", "namespace", "liqo"]);
    cp.kubectl_ok(&["create", "namespace", "team-a"]);
    let chart_path = chart::chart_dir();
    let values = values_file(cp.dir.path(), "install", "service:\n  selector: false\n");
    let out = helm_ok(&[
        "install",
        RELEASE,
        chart_path.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--kubeconfig",
        cp.kubeconfig.to_str().unwrap(),
        "-f",
        &values,
    ]);
    assert!(out.contains("STATUS: deployed"), "{out}");

    // What the API server stored is what the chart rendered.
    let rendered = documents(&helm_ok(&[
        "get",
        "manifest",
        RELEASE,
        "--namespace",
        NAMESPACE,
        "--kubeconfig",
        cp.kubeconfig.to_str().unwrap(),
    ]));
    let stored = |kind: &str, ns: Option<&str>| -> serde_json::Value {
        let mut args = vec!["get", kind, RELEASE, "-o", "json"];
        if let Some(ns) = ns {
            args.extend_from_slice(&["-n", ns]);
        }
        serde_json::from_str(&cp.kubectl_ok(&args)).unwrap()
    };
    let mut lost = Vec::new();
    for kind in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
        let mut want =
            serde_json::to_value(find(&rendered, kind, RELEASE).unwrap()["webhooks"].clone()).unwrap();
        // Entries the chart renders; none when the replicas register them once ready.
        let Some(hooks) = want.as_array_mut() else { continue };
        for hook in hooks {
            // Filled by whoever keeps the certificate, not necessarily at install.
            hook["clientConfig"].as_object_mut().unwrap().remove("caBundle");
        }
        kept(&want, &stored(&kind.to_lowercase(), None)["webhooks"], kind, &mut lost);
    }
    let want = serde_json::to_value(
        find(&rendered, "Deployment", RELEASE).unwrap()["spec"]["template"]["spec"]["containers"].clone(),
    )
    .unwrap();
    let deployment = stored("deployment", Some(NAMESPACE));
    kept(&want, &deployment["spec"]["template"]["spec"]["containers"], "Deployment", &mut lost);
    assert!(lost.is_empty(), "Kubernetes {kubernetes} did not keep what the chart set:\n{}", lost.join("\n"));
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"],
        5
    );

    // A replica as the chart's Deployment runs it (its managed certificate, its registration),
    // behind the chart's Service on the host's address.
    let addr = std::net::SocketAddr::new(chart::host_address(), support::free_port());
    let mut args = chart::replica_args(&template_ok(&[]));
    args.extend([
        format!("--namespace={NAMESPACE}"),
        format!("--cluster-id={CLUSTER_ID}"),
        format!("--kubeconfig={}", cp.kubeconfig.display()),
    ]);
    let wh = support::serving::Replica::spawn_args(
        &cp.dir.path().join("logs"),
        &cp.dir.path().join("no-certs"),
        addr,
        &args,
    );
    eventually(Duration::from_secs(30), "the webhook's /readyz to answer 200", || {
        wh.readyz().filter(|r| r.starts_with("HTTP/1.1 200")).map(|_| ())
    });
    chart::endpoints_on_the_host(cp, addr, MANAGER);
    let refused = refused_through_the_chart(cp, "team-a");
    let validating =
        stored("validatingwebhookconfiguration", None)["webhooks"][0]["name"].as_str().unwrap().to_owned();
    assert_eq!(
        refused.trim(),
        format!(
            "Error from server: error when creating \"STDIN\": admission webhook \"{validating}\" denied the request: {BAD_OPERATOR_SAYS}"
        )
    );

    // Registrations that fail open, a webhook gone: the write passes, and the API server counts it
    // under the name the alerts select.
    for kind in ["validatingwebhookconfiguration", "mutatingwebhookconfiguration"] {
        cp.kubectl_ok(&[
            "patch",
            kind,
            RELEASE,
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Ignore"}]"#,
        ]);
    }
    drop(wh);
    cp.kubectl_ok(&["create", "namespace", "team-b"]);
    let good = nsof("team-b", "offloading", "  podOffloadingStrategy: LocalAndRemote\n");
    eventually(Duration::from_secs(30), "a write to fail open", || apply(cp, &good, &[]).ok.then_some(()));
    let metrics = cp.kubectl_ok(&["get", "--raw", "/metrics"]);
    assert!(
        metrics.lines().any(|l| l.starts_with("apiserver_admission_webhook_fail_open_count{")
            && l.contains(&format!("name=\"{validating}\""))),
        "no fail-open call of {validating} counted"
    );
    let exported = chart::exported_metrics(&metrics);
    for (what, name) in queried_metrics() {
        if name.starts_with("apiserver_") {
            assert!(exported.contains(&name), "{what}: kube-apiserver {kubernetes} exports no {name}");
        }
    }

    let out = helm_ok(&[
        "uninstall",
        RELEASE,
        "--namespace",
        NAMESPACE,
        "--kubeconfig",
        cp.kubeconfig.to_str().unwrap(),
    ]);
    assert!(out.contains("uninstalled"), "{out}");
    let left = cp.kubectl_ok(&[
        "get",
        "validatingwebhookconfigurations,mutatingwebhookconfigurations",
        "-o",
        "name",
    ]);
    assert_eq!(left.trim(), "", "webhook configurations left behind");
}

/// With aggregator routing the API server reaches a Service-registered webhook through the
/// Service's endpoints, as it does in a cluster without kube-proxy in its path.
const AGGREGATOR_ROUTING: (&str, &str) = ("UP_APISERVER_ARGS", "--enable-aggregator-routing=true");

#[test]
fn the_chart_installs_and_refuses_on_the_oldest_kubernetes_it_claims() {
    let release = oldest_claimed_release();
    let kubernetes = kubernetes_version(&format!("{release}/versions.env"));
    let cp = ControlPlane::start_release(&release, &[AGGREGATOR_ROUTING]);
    install_and_refuse_on(&cp, &kubernetes);
}

#[test]
fn the_chart_installs_and_refuses_on_the_newest_kubernetes() {
    let cp = ControlPlane::start_with(&[AGGREGATOR_ROUTING]);
    install_and_refuse_on(&cp, &kubernetes_version("versions.env"));
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
    let mut args = chart::replica_args(&template_ok(values));
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
    // The API server's resolver reads its own informer of the endpoints, and the replica registers
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
        // A counter the API server creates on the first call that fails open: install_and_refuse_on
        // makes one.
        if name.starts_with("apiserver_") && name != "apiserver_admission_webhook_fail_open_count" {
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
    let registered = chart::registered_configurations(&rendered);
    for (i, kind) in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"].iter().enumerate() {
        let hook = &registered[i]["webhooks"][0];
        let ns = serde_norway::to_string(&hook["namespaceSelector"]).unwrap();
        assert_eq!(
            ns,
            "matchExpressions:\n- key: kubernetes.io/metadata.name\n  operator: NotIn\n  values:\n  - kube-system\n  - webhooks\n  - liqo\n- key: team\n  operator: Exists\n",
            "{kind}"
        );
        let obj = serde_norway::to_string(&hook["objectSelector"]).unwrap();
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

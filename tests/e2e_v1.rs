//! `serve` and `diagnose` on a cluster that serves Liqo v1.2's real CRDs (installed from the Go
//! module `github.com/liqotech/liqo@v1.2.0`, a 4 MB download cached by Go): the Liqo API is found
//! by discovery, the reconcile loop does not start, the webhooks judge with v1.x facts (the cluster
//! id from the ConfigMap Liqo finds by label, VirtualNodes), and `diagnose` reads v1.x objects.
//! Liqo's own controllers are not needed here: the objects they would write are written by hand.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::{ControlPlane, Printed, Webhook, apply, certs_for_loopback, eventually};

/// The local cluster id, in the ConfigMap Liqo v1.x finds by label (a liqoctl-style name).
const LOCAL_ID: &str = "frosty-bird";
const REMOTE_ID: &str = "calm-sea";
const LIQO_MODULE: &str = "github.com/liqotech/liqo@v1.2.0";

/// Where Go keeps Liqo v1.2's chart CRDs (downloaded on first use).
fn liqo_crds_dir() -> PathBuf {
    let go = std::env::var("GO").unwrap_or_else(|_| {
        if Command::new("go").arg("version").output().is_ok() {
            "go".into()
        } else {
            "/usr/local/go/bin/go".into()
        }
    });
    // Outside any Go module, so that no go.mod around decides anything.
    let out = Command::new(go)
        .args(["mod", "download", "-json", LIQO_MODULE])
        .current_dir(std::env::temp_dir())
        .env("GOFLAGS", "-mod=mod")
        .output()
        .expect("could not run go (needed to fetch Liqo's CRDs)");
    assert!(out.status.success(), "go mod download {LIQO_MODULE}: {}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    PathBuf::from(info["Dir"].as_str().unwrap()).join("deployments/liqo/charts/liqo-crds/crds")
}

/// Installs Liqo v1.2's 28 CRDs (server-side: the VirtualNode CRD is too large for client-side apply).
fn install_liqo_crds(cp: &ControlPlane) {
    let dir = liqo_crds_dir();
    cp.kubectl_ok(&["apply", "--server-side", "-f", dir.to_str().unwrap()]);
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/namespaceoffloadings.offloading.liqo.io",
        "crd/namespacemaps.offloading.liqo.io",
        "crd/virtualnodes.offloading.liqo.io",
    ]);
}

fn nsof_v1(namespace: &str, spec: &str, labels: &str) -> String {
    format!(
        "apiVersion: offloading.liqo.io/v1beta1\nkind: NamespaceOffloading\nmetadata:\n  name: offloading\n  namespace: {namespace}\n{labels}spec:\n{spec}"
    )
}

fn namespace(cp: &ControlPlane, name: &str) {
    cp.kubectl_ok(&["create", "namespace", name]);
}

fn diagnose(cp: &ControlPlane, ns: &str) -> (i32, Printed) {
    let out = Command::new(support::webhook_bin())
        .args(["diagnose", "-n", ns, "--kubeconfig"])
        .arg(&cp.kubeconfig)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), out.into())
}

fn log_of(cp: &ControlPlane, wh: &Webhook) -> String {
    std::fs::read_to_string(cp.dir.path().join(format!("webhook-{}.log", wh.port))).unwrap_or_default()
}

/// The JSON log line whose message is `message`.
fn log_line(log: &str, message: &str) -> serde_json::Value {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == message)
        .unwrap_or_else(|| panic!("no log line {message:?} in:\n{log}"))
}

#[tokio::test]
async fn serve_and_diagnose_on_liqo_v1() {
    let cp = ControlPlane::start();
    install_liqo_crds(&cp);
    // Liqo v1.x finds its cluster id ConfigMap by label: this one has another name on purpose.
    namespace(&cp, "liqo");
    let cm = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cluster-identity\n  namespace: liqo\n  labels:\n    app.kubernetes.io/name: clusterid-configmap\ndata:\n  CLUSTER_ID: {LOCAL_ID}\n"
    );
    assert!(apply(&cp, &cm, &[]).ok);
    // A remote cluster the v1.x way: tenant namespace and VirtualNode, no Node (its spec.labels count).
    let tenant = format!("liqo-tenant-{REMOTE_ID}");
    namespace(&cp, &tenant);
    let id_label = format!("liqo.io/remote-cluster-id={REMOTE_ID}");
    cp.kubectl_ok(&["label", "namespace", &tenant, "liqo.io/tenant-namespace=true", &id_label]);
    let vn = format!(
        "apiVersion: offloading.liqo.io/v1beta1\nkind: VirtualNode\nmetadata:\n  name: {REMOTE_ID}\n  namespace: {tenant}\nspec:\n  clusterID: {REMOTE_ID}\n  createNode: false\n  labels:\n    topology.liqo.io/region: eu-west\n"
    );
    let p = apply(&cp, &vn, &[]);
    assert!(p.ok, "{}", p.stderr);
    for ns in ["web", "broken", "kube-like", "a-namespace-that-is-exactly-fifty-two-characters-lng"] {
        namespace(&cp, ns);
    }

    let certs = cp.dir.path().join("certs");
    certs_for_loopback(&certs);

    // Two writers are impossible by accident: an explicit --reconcile=true on v1.x is refused.
    let out = Command::new(support::webhook_bin())
        .args(["serve", "--kubeconfig"])
        .arg(&cp.kubeconfig)
        .arg("--tls-cert-file")
        .arg(certs.join("tls.crt"))
        .arg("--tls-key-file")
        .arg(certs.join("tls.key"))
        .args([
            "--webhook-addr",
            "127.0.0.1:0",
            "--probe-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(["--reconcile=true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: --reconcile=true (or RECONCILE=true) on a Liqo v1.x cluster (found by discovery or --liqo-api): Liqo's own controller-manager writes NamespaceMaps and NamespaceOffloading status there"),
        "{stderr}"
    );
    support::readme::assert_block("reconcile-true-v1", &stderr);

    // Found by discovery, said in the log; no reconcile loop.
    let wh = Webhook::start(&cp, &certs, &["--log-format", "json"]);
    wh.register(&cp, &certs);
    let log = log_of(&cp, &wh);
    let found = log_line(&log, "Liqo API");
    assert_eq!(found["fields"]["liqo_api"], "v1.x", "{log}");
    assert_eq!(found["fields"]["why"], "NamespaceMaps are served in offloading.liqo.io/v1beta1", "{log}");
    log_line(
        &log,
        "Liqo v1.x: the reconcile loop does not run (Liqo's controller-manager owns NamespaceMaps and NamespaceOffloading status); serving the webhooks, judging with v1.x facts",
    );
    assert_eq!(log_line(&log, "local cluster id")["fields"]["cluster_id"], LOCAL_ID, "{log}");
    assert!(!log.contains("reconcile loops started"), "{log}");

    // No clusterSelector: what Liqo v1.x would leave NoClusterSelected forever.
    let p = apply(&cp, &nsof_v1("web", "  namespaceMappingStrategy: DefaultName\n", ""), &[]);
    assert!(!p.ok);
    assert!(
        p.stderr.contains("admission webhook \"validate.offloading-webhook.io\" denied the request: spec.clusterSelector.nodeSelectorTerms: Required value: Liqo v1.x needs it: without it, Liqo's controller writes nodeSelectorTerms: null with its finalizer, its own CRD refuses that, and the object stays NoClusterSelected forever, with no Event; to offload to every remote cluster set clusterSelector: {nodeSelectorTerms: []}"),
        "{}",
        p.stderr
    );
    support::readme::assert_block("v1-no-terms", &p.stderr);
    // The remote name uses the id of the labelled ConfigMap: 52 + 1 + 11 = 64 characters.
    let long = "a-namespace-that-is-exactly-fifty-two-characters-lng";
    let p = apply(&cp, &nsof_v1(long, "  clusterSelector:\n    nodeSelectorTerms: []\n", ""), &[]);
    assert!(!p.ok);
    assert!(
        p.stderr.contains(&format!("the remote namespace name \"{long}-{LOCAL_ID}\" is 64 characters, over the limit of 63 for a namespace name: with cluster id \"{LOCAL_ID}\" (11 characters) the DefaultName strategy fits local namespaces of at most 51 characters")),
        "{}",
        p.stderr
    );
    // A remote name every cluster has.
    let p = apply(
        &cp,
        &nsof_v1(
            "kube-like",
            "  namespaceMappingStrategy: SelectedName\n  remoteNamespaceName: kube-system\n  clusterSelector:\n    nodeSelectorTerms: []\n",
            "",
        ),
        &[],
    );
    assert!(!p.ok);
    assert!(
        p.stderr.contains(
            "the remote namespace name \"kube-system\" is a namespace every Kubernetes cluster already has"
        ),
        "{}",
        p.stderr
    );

    // A broken term beside one that matches the VirtualNode's spec.labels: allowed, loudly.
    let mixed = "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: Equals\n        values: [eu-west]\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: In\n        values: [eu-west]\n";
    let warned = eventually(Duration::from_secs(30), "the VirtualNode in the webhook's cache", || {
        let p = apply(&cp, &nsof_v1("broken", mixed, ""), &["--dry-run=server"]);
        (p.ok && p.stderr.contains("is malformed and works only by luck")).then_some(p)
    });
    assert!(
        warned.stderr.contains("Warning: spec.clusterSelector.nodeSelectorTerms[0] is malformed and works only by luck: spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Equals\""),
        "{}",
        warned.stderr
    );
    // The same broken term when the good one matches no cluster: Liqo would fail now.
    let p =
        apply(&cp, &nsof_v1("broken", &mixed.replace("values: [eu-west]\n", "values: [us-east]\n"), ""), &[]);
    assert!(!p.ok);
    assert!(
        p.stderr.contains(&format!("spec.clusterSelector: Forbidden: remote cluster {REMOTE_ID} (node {REMOTE_ID}) matches none of the well-formed terms")),
        "{}",
        p.stderr
    );

    // Every cluster: admitted.
    let p = apply(&cp, &nsof_v1("web", "  clusterSelector:\n    nodeSelectorTerms: []\n", ""), &[]);
    assert!(p.ok, "{}", p.stderr);

    // diagnose on hand-made v1.x objects: the NamespaceMap named <id> whose entry failed.
    let remote_name = format!("web-{LOCAL_ID}");
    let map = format!(
        "apiVersion: offloading.liqo.io/v1beta1\nkind: NamespaceMap\nmetadata:\n  name: {REMOTE_ID}\n  namespace: {tenant}\n  labels:\n    liqo.io/replication: \"true\"\n    liqo.io/remoteID: {REMOTE_ID}\n    liqo.io/remote-cluster-id: {REMOTE_ID}\nspec:\n  desiredMapping:\n    web: {remote_name}\n"
    );
    assert!(apply(&cp, &map, &[]).ok);
    let status = format!(
        r#"{{"status":{{"currentMapping":{{"web":{{"remoteNamespace":"{remote_name}","phase":"CreationLoopBackOff"}}}}}}}}"#
    );
    cp.kubectl_ok(&[
        "patch",
        "namespacemap",
        REMOTE_ID,
        "-n",
        &tenant,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
    let status = format!(
        r#"{{"status":{{"offloadingPhase":"AllFailed","remoteNamespaceName":"{remote_name}","remoteNamespacesConditions":{{"{REMOTE_ID}":[{{"type":"Ready","status":"False","reason":"CreationLoopBackOff","lastTransitionTime":"2026-01-01T00:00:00Z"}}]}}}}}}"#
    );
    cp.kubectl_ok(&[
        "patch",
        "nsof",
        "offloading",
        "-n",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
    let (code, p) = diagnose(&cp, "web");
    assert_eq!(code, 1, "{}{}", p.stdout, p.stderr);
    assert!(p.stdout.contains("liqo API:            v1.x"), "{}", p.stdout);
    assert!(p.stdout.contains(&format!("local cluster id {LOCAL_ID}")), "{}", p.stdout);
    assert!(p.stdout.contains(&format!("currentMapping: {remote_name} CreationLoopBackOff")), "{}", p.stdout);
    assert!(p.stdout.contains("conditions:     Ready=False (CreationLoopBackOff)"), "{}", p.stdout);
    assert!(
        p.stdout.contains(&format!("the remote namespace cannot be created in cluster {REMOTE_ID} (CreationLoopBackOff)\n     fix: look at namespace {remote_name} in cluster {REMOTE_ID}: if it exists without liqo.io/managed-by-namespace-map=liqo-tenant-{LOCAL_ID}/{REMOTE_ID}, rename or remove it")),
        "{}",
        p.stdout
    );
    support::readme::assert_block("diagnose-v1", &p.stdout);

    // A selector Liqo refused, let in past the webhook by the escape hatch, and Liqo's Event.
    let bad = "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: Equals\n        values: [eu-west]\n";
    let p = apply(&cp, &nsof_v1("broken", bad, "  labels:\n    liqo.io/webhook-skip: \"true\"\n"), &[]);
    assert!(p.ok, "{}", p.stderr);
    let note = "Invalid ClusterSelector: nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Equals\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\", \"Gt\", \"Lt\"";
    let event = format!(
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: offloading.invalid\n  namespace: broken\ninvolvedObject:\n  apiVersion: offloading.liqo.io/v1beta1\n  kind: NamespaceOffloading\n  name: offloading\n  namespace: broken\ntype: Warning\nreason: Invalid\nmessage: {}\nsource:\n  component: liqo-namespace-offloading-controller\n",
        serde_json::to_string(note).unwrap()
    );
    let p = apply(&cp, &event, &[]);
    assert!(p.ok, "{}", p.stderr);
    cp.kubectl_ok(&[
        "patch",
        "nsof",
        "offloading",
        "-n",
        "broken",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"offloadingPhase":"NoClusterSelected"}}"#,
    ]);
    let (code, p) = diagnose(&cp, "broken");
    assert_eq!(code, 1, "{}{}", p.stdout, p.stderr);
    assert!(p.stdout.contains(&format!("event: Warning Invalid: {note}")), "{}", p.stdout);
    assert!(
        p.stdout.contains("the clusterSelector is invalid, so Liqo selects no cluster (Event Invalid, never retried): spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Equals\""),
        "{}",
        p.stdout
    );
    assert!(
        p.stdout.contains("fix: correct spec.clusterSelector as the message says and apply it again"),
        "{}",
        p.stdout
    );

    // Nothing of ours wrote to what Liqo owns: no finalizer, no status writes but the test's.
    let finalizers = support::get(
        &cp,
        &["get", "nsof", "offloading", "-n", "web", "-o", "jsonpath={.metadata.finalizers}"],
    );
    assert_eq!(finalizers, "");
    let log = log_of(&cp, &wh);
    assert!(!log.contains("reconcile loops started") && !log.contains("Lease"), "{log}");
    // Every write to NamespaceOffloadings and NamespaceMaps (spec and status) came from kubectl here.
    for kind in ["namespaceoffloadings.offloading.liqo.io", "namespacemaps.offloading.liqo.io"] {
        let managers = support::get(
            &cp,
            &["get", kind, "-A", "-o", "jsonpath={.items[*].metadata.managedFields[*].manager}"],
        );
        assert!(!managers.is_empty(), "{kind}");
        for m in managers.split_whitespace() {
            assert!(m.starts_with("kubectl"), "{kind} written by {m}: {managers}");
        }
    }
    assert!(wh.terminate().success());
}

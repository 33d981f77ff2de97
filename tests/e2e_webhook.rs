//! The webhooks on a real kube-apiserver, registered by URL, exercised with the real kubectl: what
//! kubectl prints for each kind of broken object, and what the API stored for good ones.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{
    ControlPlane, Webhook, apply, certs_for_loopback, eventually, http_get_full, install_crds, nsof,
};

use support::CLUSTER_ID;
const DENIED: &str = "admission webhook \"validate.offloading-webhook.io\" denied the request: ";

const BAD_OPERATOR: &str = "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: In\n        values: [eu-west]\n      - key: topology.liqo.io/region\n        operator: Equals\n        values: [eu]\n";

#[tokio::test]
async fn kubectl_apply_refuses_broken_namespace_offloadings_and_says_why() {
    let (cp, _certs, wh) = support::cluster_with_webhook(&["--cluster-id", CLUSTER_ID, "--reconcile=false"]);
    let long_ns = "payments-processing-europe-1";
    for ns in ["web", "api", long_ns] {
        cp.kubectl_ok(&["create", "namespace", ns]);
    }

    // The registration takes effect within a second or two.
    let bad = nsof("web", "offloading", BAD_OPERATOR);
    let refused = eventually(Duration::from_secs(30), "the webhook to be called", || {
        let p = apply(&cp, &bad, &[]);
        (!p.ok).then_some(p)
    });
    assert_eq!(
        refused.stderr.trim(),
        format!(
            "Error from server: error when creating \"STDIN\": {DENIED}spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[1].operator: Unsupported value: \"Equals\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\", \"Gt\", \"Lt\""
        )
    );
    // The README shows this refusal.
    support::readme::assert_block("apply-refused", &refused.stderr);
    // Nothing was stored.
    assert!(!cp.kubectl(&["get", "nsof", "-n", "web", "offloading"]).ok);

    // --dry-run=server is refused the same way.
    let p = apply(&cp, &bad, &["--dry-run=server"]);
    assert!(!p.ok);
    assert!(p.stderr.contains(&format!("{DENIED}spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[1].operator: Unsupported value: \"Equals\"")), "{}", p.stderr);

    // Each class of broken object, and the words kubectl shows.
    let cases: Vec<(String, String)> = vec![
        (
            nsof("web", "offloading", "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: region\n        operator: In\n"),
            "spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].values: Required value: must be specified when `operator` is \"In\": list the label values to match".into(),
        ),
        (
            nsof("web", "offloading", "  clusterSelector:\n    nodeSelectorTerms:\n    - matchFields:\n      - key: metadata.labels\n        operator: In\n        values: [a]\n"),
            "spec.clusterSelector.nodeSelectorTerms[0].matchFields[0].key: Unsupported value: \"metadata.labels\": supported values: \"metadata.name\"".into(),
        ),
        (
            nsof("web", "my-offloading", "  podOffloadingStrategy: Local\n"),
            "metadata.name: Invalid value: \"my-offloading\": a NamespaceOffloading must be named \"offloading\"".into(),
        ),
        (
            nsof("web", "offloading", "  namespaceMappingStrategy: SelectedName\n"),
            "spec.remoteNamespaceName: Required value: SelectedName needs spec.remoteNamespaceName".into(),
        ),
        (
            nsof(long_ns, "offloading", "  podOffloadingStrategy: LocalAndRemote\n"),
            format!("metadata.namespace: Invalid value: \"{long_ns}\": the remote namespace name \"{long_ns}-{CLUSTER_ID}\" is 65 characters, over the limit of 63 for a namespace name: with cluster id \"{CLUSTER_ID}\" (36 characters) the DefaultName strategy fits local namespaces of at most 26 characters"),
        ),
    ];
    for (yaml, message) in &cases {
        let p = apply(&cp, yaml, &[]);
        assert!(!p.ok, "accepted:\n{yaml}");
        assert!(
            p.stderr
                .contains(&format!("Error from server: error when creating \"STDIN\": {DENIED}{message}")),
            "for\n{yaml}\nkubectl printed:\n{}",
            p.stderr
        );
    }
    // Several problems are listed at once.
    let p = apply(&cp, &nsof("web", "wrong", BAD_OPERATOR), &[]);
    assert!(p.stderr.contains(&format!("{DENIED}[metadata.name: Invalid value: \"wrong\"")), "{}", p.stderr);
    // A value outside the strategy enum never reaches the webhook: the CRD schema refuses it.
    let p = apply(&cp, &nsof("web", "offloading", "  namespaceMappingStrategy: Same\n"), &[]);
    assert!(p.stderr.contains("spec.namespaceMappingStrategy: Unsupported value: \"Same\": supported values: \"DefaultName\", \"EnforceSameName\", \"SelectedName\""), "{}", p.stderr);

    // A good object is stored, annotated "true" by the mutating webhook.
    let good = nsof(
        "web",
        "offloading",
        "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: In\n        values: [eu-west]\n",
    );
    let p = apply(&cp, &good, &[]);
    assert!(p.ok, "{}", p.stderr);
    assert_eq!(p.stdout.trim(), "namespaceoffloading.offloading.liqo.io/offloading created");
    let ann = cp.kubectl_ok(&[
        "get",
        "nsof",
        "offloading",
        "-n",
        "web",
        "-o",
        "jsonpath={.metadata.annotations.liqo\\.io/scheduling-enabled}",
    ]);
    assert_eq!(ann, "true");
    let spec = cp.kubectl_ok(&[
        "get",
        "nsof",
        "offloading",
        "-n",
        "web",
        "-o",
        "jsonpath={.spec.namespaceMappingStrategy}/{.spec.podOffloadingStrategy}",
    ]);
    assert_eq!(spec, "DefaultName/LocalAndRemote");

    // An UPDATE that changes the mapping strategy is refused; other updates go through.
    let changed = good.replace("spec:\n", "spec:\n  namespaceMappingStrategy: EnforceSameName\n");
    let p = apply(&cp, &changed, &[]);
    assert!(!p.ok);
    assert!(p.stderr.contains(&format!("{DENIED}spec.namespaceMappingStrategy: Invalid value: \"EnforceSameName\": field is immutable (it was \"DefaultName\")")), "{}", p.stderr);
    let restricted = good.replace("spec:\n", "spec:\n  podOffloadingStrategy: Remote\n");
    let p = apply(&cp, &restricted, &[]);
    assert!(p.ok, "{}", p.stderr);
    assert!(p.stderr.contains("Warning: spec.podOffloadingStrategy: changed from \"LocalAndRemote\" to \"Remote\", which is more restrictive"), "{}", p.stderr);

    // The operator's escape hatch: the label skips both webhooks.
    let skipped = bad
        .replace("  namespace: web\n", "  namespace: api\n  labels:\n    liqo.io/webhook-skip: \"true\"\n");
    let p = apply(&cp, &skipped, &[]);
    assert!(p.ok, "{}", p.stderr);

    // A selector that matches none of the virtual nodes known now: allowed, with a warning.
    cp.kubectl_ok(&["delete", "nsof", "-n", "api", "offloading"]);
    let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: liqo-cluster-a\n  labels:\n    liqo.io/type: virtual-node\n    liqo.io/remote-cluster-id: cluster-a\n    topology.liqo.io/region: us-east\n";
    assert!(apply(&cp, node, &[]).ok);
    let us_only = nsof(
        "api",
        "offloading",
        "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: In\n        values: [eu-west]\n",
    );
    let p = eventually(Duration::from_secs(20), "the virtual node to reach the webhook's cache", || {
        let p = apply(&cp, &us_only, &["--dry-run=server"]);
        p.stderr.contains("matches none").then_some(p)
    });
    assert!(p.ok);
    assert!(p.stderr.contains("Warning: spec.clusterSelector matches none of the 1 virtual nodes known now (remote clusters cluster-a)"), "{}", p.stderr);

    let metrics = http_get_full(wh.metrics_port, "/metrics").unwrap();
    assert!(metrics.contains(r#"offloading_webhook_admission_reviews_total{endpoint="validate",operation="CREATE",result="denied"}"#), "{metrics}");
    assert!(metrics.contains("offloading_webhook_certificate_expiry_timestamp_seconds"));

    assert!(wh.terminate().success(), "the webhook did not exit 0 on SIGTERM");
}

#[tokio::test]
async fn warn_mode_lets_broken_objects_in_and_the_cluster_id_comes_from_liqo_configmap() {
    let cp = ControlPlane::start();
    install_crds(&cp);
    let certs = cp.dir.path().join("certs");
    certs_for_loopback(&certs);
    cp.kubectl_ok(&["create", "namespace", "liqo"]);
    cp.kubectl_ok(&[
        "create",
        "configmap",
        "liqo-clusterid-configmap",
        "-n",
        "liqo",
        &format!("--from-literal=CLUSTER_ID={CLUSTER_ID}"),
    ]);
    let wh = Webhook::start(&cp, &certs, &["--enforcement", "warn", "--reconcile=false"]);
    wh.register(&cp, &certs);
    let ns = "team-a-namespace-with-27chr";
    assert_eq!(ns.len(), 27);
    cp.kubectl_ok(&["create", "namespace", ns]);
    cp.kubectl_ok(&["create", "namespace", "web"]);

    let bad = nsof("web", "offloading", BAD_OPERATOR);
    let p = eventually(Duration::from_secs(30), "the webhook to be called", || {
        let p = apply(&cp, &bad, &[]);
        p.stderr.contains("Warning:").then_some(p)
    });
    assert!(p.ok, "{}", p.stderr);
    assert_eq!(p.stdout.trim(), "namespaceoffloading.offloading.liqo.io/offloading created");
    assert!(p.stderr.contains("Warning: would be denied (enforcement=warn): spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[1].operator: Unsupported value: \"Equals\""), "{}", p.stderr);
    // The troubleshooting guide's own command shows the error in the annotation.
    let script = format!(
        "{} --kubeconfig {} get namespaceoffloadings.offloading.liqo.io -n web -o yaml | grep \"liqo.io/scheduling-enabled:\" -A 1",
        support::bin_dir().join("kubectl").display(),
        cp.kubeconfig.display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("liqo.io/scheduling-enabled: 'Invalid Cluster Selector : spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[1].operator:"), "{shown}");

    // The cluster id was read from Liqo's ConfigMap: a 27-character namespace is one too long.
    let p = apply(&cp, &nsof(ns, "offloading", "  podOffloadingStrategy: Local\n"), &["--dry-run=server"]);
    assert!(p.stderr.contains(&format!("Warning: would be denied (enforcement=warn): metadata.namespace: Invalid value: \"{ns}\": the remote namespace name \"{ns}-{CLUSTER_ID}\" is 64 characters")), "{}", p.stderr);
    // ... and followed live: a shorter id makes it fit.
    cp.kubectl_ok(&[
        "patch",
        "configmap",
        "liqo-clusterid-configmap",
        "-n",
        "liqo",
        "-p",
        "{\"data\":{\"CLUSTER_ID\":\"short-id\"}}",
    ]);
    eventually(Duration::from_secs(20), "the new cluster id to be used", || {
        let p =
            apply(&cp, &nsof(ns, "offloading", "  podOffloadingStrategy: Local\n"), &["--dry-run=server"]);
        (p.ok && !p.stderr.contains("would be denied")).then_some(())
    });
    assert!(wh.terminate().success());
}

#[tokio::test]
async fn the_deploy_manifests_pass_a_server_side_dry_run() {
    let cp = ControlPlane::start();
    install_crds(&cp);
    // The Role reading Liqo's ConfigMap lives in Liqo's namespace, which Liqo creates.
    cp.kubectl_ok(&["create", "namespace", "liqo"]);
    let m = format!("{}/manifests", support::ROOT);
    // The namespace must exist for a dry run of what goes into it.
    cp.kubectl_ok(&["create", "namespace", "offloading-webhook"]);
    let out = cp.kubectl_ok(&[
        "apply",
        "--dry-run=server",
        "-f",
        &format!("{m}/deploy.yaml"),
        "-f",
        &format!("{m}/webhooks.yaml"),
        "-f",
        &format!("{m}/cert-manager/webhooks.yaml"),
    ]);
    for kind in [
        "serviceaccount/offloading-webhook",
        "clusterrole.rbac.authorization.k8s.io/offloading-webhook",
        "role.rbac.authorization.k8s.io/offloading-webhook-cluster-id",
        "role.rbac.authorization.k8s.io/offloading-webhook-leader-election",
        "deployment.apps/offloading-webhook",
        "service/offloading-webhook",
        "poddisruptionbudget.policy/offloading-webhook",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/offloading-webhook",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/offloading-webhook",
    ] {
        assert!(out.contains(kind), "{kind} missing from:\n{out}");
    }
}

#[tokio::test]
async fn a_hundred_thousand_bad_values_get_a_short_refusal_that_says_what_to_fix() {
    let (cp, _certs, wh) = support::cluster_with_webhook(&["--cluster-id", CLUSTER_ID, "--reconcile=false"]);
    cp.kubectl_ok(&["create", "namespace", "web"]);
    // The issue's hostile object: one `In` with 100 000 invalid values (kubectl create: apply would
    // copy the object into its last-applied annotation, over the API server's annotation limit).
    let values: String = (0..100_000).map(|i| format!("\"bad value {i}\",")).collect();
    let spec = format!(
        "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: region\n        operator: In\n        values: [{}]\n",
        values.trim_end_matches(',')
    );
    let p = cp.kubectl_stdin(&["create", "-f", "-"], Some(&nsof("web", "offloading", &spec)));
    assert!(!p.ok);
    assert_eq!(
        p.stderr.trim(),
        format!(
            "Error from server: error when creating \"STDIN\": {DENIED}spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].values: Too many: 100000: must have at most 256 items"
        )
    );
    // Still serving: a second one right after gets the same answer (the memory figures are a
    // benchmark's, scripts/memory-bench.sh, not this test's).
    let p = cp.kubectl_stdin(&["create", "-f", "-"], Some(&nsof("web", "offloading", &spec)));
    assert!(p.stderr.contains("Too many: 100000"), "{}", p.stderr);
    drop(wh);
}

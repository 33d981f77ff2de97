//! The whole troubleshooting story on two real control planes: the remote side creating (or
//! failing to create) remote namespaces, and `diagnose` walking the guide for each failure.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{
    CLUSTER_ID, ControlPlane, Printed, Webhook, apply, certs_for_loopback, get, install_crds, nsof,
    virtual_node, wait_eq,
};

const WAIT: Duration = Duration::from_secs(90);

fn jsonpath(cp: &ControlPlane, args: &[&str], path: &str) -> String {
    let p = format!("jsonpath={path}");
    get(cp, &[args, &["-o", &p]].concat())
}

fn phase(cp: &ControlPlane, ns: &str) -> String {
    jsonpath(cp, &["get", "nsof", "offloading", "-n", ns], "{.status.offloadingPhase}")
}

fn diagnose(cp: &ControlPlane, args: &[&str]) -> (i32, Printed) {
    let out = Command::new(support::webhook_bin())
        .arg("diagnose")
        .args(args)
        .arg("--kubeconfig")
        .arg(&cp.kubeconfig)
        .args(["--cluster-id", CLUSTER_ID])
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), out.into())
}

fn selector_for(ids: &[&str]) -> String {
    format!(
        "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: liqo.io/remote-cluster-id\n        operator: In\n        values: [{}]\n",
        ids.join(", ")
    )
}

#[tokio::test]
async fn remote_namespaces_and_diagnose_walk_the_whole_guide() {
    let (local, remote) = (ControlPlane::start(), ControlPlane::start());
    install_crds(&local);
    let certs = local.dir.path().join("certs");
    certs_for_loopback(&certs);
    // A remote cluster that is down: its kubeconfig points at a port nobody listens on.
    let down = local.dir.path().join("down.kubeconfig");
    let closed = support::free_port();
    let text = std::fs::read_to_string(&remote.kubeconfig).unwrap();
    let server = text.lines().find(|l| l.trim_start().starts_with("server:")).unwrap().trim().to_owned();
    std::fs::write(&down, text.replace(&server, &format!("server: https://127.0.0.1:{closed}"))).unwrap();

    let remote_flag = format!("cluster-r={}", remote.kubeconfig.display());
    let down_flag = format!("cluster-down={}", down.display());
    let wh = Webhook::start(
        &local,
        &certs,
        &[
            "--cluster-id",
            CLUSTER_ID,
            "--lease-namespace",
            "default",
            "--enforcement",
            "warn",
            "--remote-kubeconfig",
            &remote_flag,
            "--remote-kubeconfig",
            &down_flag,
        ],
    );
    wh.register(&local, &certs);
    virtual_node(&local, "cluster-r", "eu-west");
    virtual_node(&local, "cluster-down", "eu-west");
    let long_ns = "payments-processing-europe-1";
    for ns in ["solo", "taken", "both", "nomatch", long_ns] {
        local.kubectl_ok(&["create", "namespace", ns]);
    }

    // 1. Healthy: the remote namespace is created and annotated; Ready; diagnose exits 0.
    assert!(apply(&local, &nsof("solo", "offloading", &selector_for(&["cluster-r"])), &[]).ok);
    let remote_solo = format!("solo-{CLUSTER_ID}");
    wait_eq(WAIT, "phase Ready for solo", "Ready", || phase(&local, "solo"));
    let ann = jsonpath(
        &remote,
        &["get", "namespace", &remote_solo],
        "{.metadata.annotations.liqo\\.io/remote-namespace}",
    );
    assert_eq!(ann, CLUSTER_ID);
    let (code, p) = diagnose(&local, &["-n", "solo", "--remote-kubeconfig", &remote_flag]);
    assert_eq!(code, 0, "{}{}", p.stdout, p.stderr);
    assert!(p.stdout.contains("phase:               Ready"), "{}", p.stdout);
    assert!(p.stdout.contains(&format!("currentMapping: {remote_solo} Accepted")), "{}", p.stdout);
    assert!(
        p.stdout.contains(&format!(
            "remote cluster: namespace {remote_solo} exists, liqo.io/remote-namespace={CLUSTER_ID}"
        )),
        "{}",
        p.stdout
    );
    assert!(p.stdout.ends_with("verdict: healthy\n"), "{}", p.stdout);

    // The same through kubectl, as a plugin named kubectl-offloading on PATH.
    let plugins = local.dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::os::unix::fs::symlink(support::webhook_bin(), plugins.join("kubectl-offloading")).unwrap();
    let out = Command::new(support::bin_dir().join("kubectl"))
        .args(["offloading", "diagnose", "-n", "solo", "--cluster-id", CLUSTER_ID, "-o", "json"])
        .env("KUBECONFIG", &local.kubeconfig)
        .env("PATH", format!("{}:{}", plugins.display(), std::env::var("PATH").unwrap_or_default()))
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(json["healthy"], true);
    assert_eq!(json["phase"], "Ready");
    let r = json["clusters"].as_array().unwrap().iter().find(|c| c["clusterId"] == "cluster-r").unwrap();
    assert_eq!(r["selected"], true);
    assert_eq!(r["current"], format!("{remote_solo} Accepted"));

    // 2. The name is taken remotely by a namespace Liqo did not create: CreationLoopBackOff, AllFailed.
    let remote_taken = format!("taken-{CLUSTER_ID}");
    remote.kubectl_ok(&["create", "namespace", &remote_taken]);
    assert!(apply(&local, &nsof("taken", "offloading", &selector_for(&["cluster-r"])), &[]).ok);
    wait_eq(WAIT, "phase AllFailed for taken", "AllFailed", || phase(&local, "taken"));
    let (code, p) = diagnose(&local, &["-n", "taken", "--remote-kubeconfig", &remote_flag]);
    assert_eq!(code, 1, "{}", p.stdout);
    assert!(p.stdout.contains(&format!("the remote namespace \"{remote_taken}\" in cluster cluster-r exists without the annotation liqo.io/remote-namespace, so Liqo did not create it")), "{}", p.stdout);
    assert!(
        p.stdout.contains(&format!("fix: rename or remove namespace {remote_taken} in cluster cluster-r")),
        "{}",
        p.stdout
    );
    // The README shows this report.
    support::readme::assert_block("diagnose-v0.3", &p.stdout);
    // The namespace it does not own is left alone.
    assert!(remote.kubectl(&["get", "namespace", &remote_taken]).ok);

    // 3. One cluster down: the other still works; SomeFailed; diagnose names the unreachable one.
    assert!(
        apply(&local, &nsof("both", "offloading", &selector_for(&["cluster-r", "cluster-down"])), &[]).ok
    );
    wait_eq(WAIT, "phase SomeFailed for both", "SomeFailed", || phase(&local, "both"));
    assert!(remote.kubectl(&["get", "namespace", &format!("both-{CLUSTER_ID}")]).ok);
    let (code, p) = diagnose(
        &local,
        &["-n", "both", "--remote-kubeconfig", &remote_flag, "--remote-kubeconfig", &down_flag],
    );
    assert_eq!(code, 1, "{}", p.stdout);
    assert!(p.stdout.contains("remote cluster cluster-down cannot be reached"), "{}", p.stdout);

    // 4. Warn mode let a too-long namespace in: nothing written; diagnose gives length and limit.
    assert!(apply(&local, &nsof(long_ns, "offloading", &selector_for(&["cluster-r"])), &[]).ok);
    wait_eq(WAIT, "phase NoClusterSelected for the long name", "NoClusterSelected", || {
        phase(&local, long_ns)
    });
    let (code, p) = diagnose(&local, &["-n", long_ns]);
    assert_eq!(code, 1);
    assert!(
        p.stdout.contains(&format!(
            "the remote namespace name \"{long_ns}-{CLUSTER_ID}\" is 65 characters, over the limit of 63"
        )),
        "{}",
        p.stdout
    );
    assert!(p.stdout.contains("fits local namespaces of at most 26 characters"), "{}", p.stdout);

    // 5. A selector that matches nothing: which requirement failed on which cluster.
    let us = "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: In\n        values: [us-east]\n";
    assert!(apply(&local, &nsof("nomatch", "offloading", us), &[]).ok);
    wait_eq(WAIT, "phase NoClusterSelected", "NoClusterSelected", || phase(&local, "nomatch"));
    let (code, p) = diagnose(&local, &["-n", "nomatch"]);
    assert_eq!(code, 1);
    assert!(p.stdout.contains("the clusterSelector matches none of the 2 virtual nodes"), "{}", p.stdout);
    assert!(p.stdout.contains("cluster cluster-r (node liqo-cluster-r): spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0] wants topology.liqo.io/region In [us-east], but the node's label topology.liqo.io/region is \"eu-west\""), "{}", p.stdout);

    // 6. No NamespaceOffloading, or one with another name.
    let (code, p) = diagnose(&local, &["-n", "default"]);
    assert_eq!(code, 1);
    assert!(
        p.stdout.contains("namespace default has no NamespaceOffloading: it is not offloaded"),
        "{}",
        p.stdout
    );
    let out = Command::new(support::webhook_bin())
        .args(["diagnose", "-n", "solo", "--kubeconfig", "/nonexistent"])
        .output()
        .unwrap();
    let code = out.status.code();
    let p: Printed = out.into();
    assert_eq!(code, Some(2), "{}{}", p.stdout, p.stderr);
    assert!(
        p.stderr.starts_with("error: diagnose could not look: could not connect to the cluster"),
        "{}",
        p.stderr
    );

    // 7. Deleting the NamespaceOffloading removes the remote namespace, then the finalizer.
    local.kubectl_ok(&["delete", "nsof", "offloading", "-n", "solo", "--wait=false"]);
    wait_eq(WAIT, "the remote namespace to be gone", "", || {
        jsonpath(&remote, &["get", "namespace", &remote_solo], "{.metadata.name}")
    });
    wait_eq(WAIT, "the NamespaceOffloading to be gone", "", || {
        jsonpath(&local, &["get", "nsof", "offloading", "-n", "solo"], "{.metadata.name}")
    });
    assert!(wh.terminate().success());
}

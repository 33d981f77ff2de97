//! A clear word for every misconfiguration: each case below is set up on a real kube-apiserver
//! (or none, where none is needed), and the test asserts what the person at the terminal reads:
//! the log line, the metrics and `/readyz?verbose`, `/readyz`'s reason when the webhook cannot
//! judge, or the exit status and stderr. A problem of the reconcile loop alone never makes a
//! replica unready.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::serving::{Replica, openssl_client_cert, run_to_exit};
use support::{CLUSTER_ID, ControlPlane, certs_for_loopback, free_port, install_crds};

const WAIT: Duration = Duration::from_secs(60);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Polls the replica's log until one line satisfies `pred`; panics with the log's end otherwise.
async fn log_line(r: &Replica, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(line) = r.log_text().lines().find(|l| pred(l)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line {what} within {WAIT:?}; the log ends:\n{}",
            r.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The log must not hold a Rust debug dump of an API error (what it printed before).
fn assert_no_debug_dump(r: &Replica) {
    let log = r.log_text();
    assert!(!log.contains("ErrorResponse {"), "a debug dump in the log:\n{}", r.log_tail(30));
}

#[tokio::test]
async fn a_missing_lease_namespace_is_named_with_its_flag_in_the_log_and_the_metrics_and_the_replica_stays_ready()
 {
    let cp = ControlPlane::start();
    install_crds(&cp);
    let certs = cp.dir.path().join("certs");
    certs_for_loopback(&certs);
    let mut r = Replica::spawn(
        &cp,
        &certs,
        loopback(),
        &["--cluster-id", CLUSTER_ID, "--lease-namespace", "webhook-system"],
    );
    // Ready: it can answer reviews, whatever the reconcile loop's Lease.
    r.ready(WAIT).await;

    let line = log_line(&r, "naming the missing Lease namespace and its flag", |l| {
        l.contains("webhook-system") && l.contains("--lease-namespace")
    })
    .await;
    assert!(line.contains("POD_NAMESPACE"), "{line}");

    // Still ready; the fault is exported, and listed beside the checks by /readyz?verbose.
    let readyz = r.readyz().unwrap_or_default();
    assert!(readyz.starts_with("HTTP/1.1 200"), "a Lease problem made the replica unready: {readyz:?}");
    let verbose = support::http_get_full(r.probe_port, "/readyz?verbose").unwrap_or_default();
    let body = verbose.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(verbose.starts_with("HTTP/1.1 200"), "{verbose}");
    assert!(body.contains("readyz check passed"), "{body}");
    let lease = body.lines().find(|l| l.trim_start().starts_with("lease: ")).unwrap_or_default();
    assert!(lease.contains("webhook-system"), "{body}");
    assert!(lease.contains("--lease-namespace") || lease.contains("POD_NAMESPACE"), "{body}");
    assert_eq!(r.metric("offloading_webhook_reconcile_up"), Some(0.0));
    assert_eq!(r.metric(r#"offloading_webhook_problem{part="lease"}"#), Some(1.0));
    eprintln!("log: {line}\n/readyz?verbose:\n{body}");
    assert_no_debug_dump(&r);

    // Once the namespace exists, the loop recovers on its own.
    cp.kubectl_ok(&["create", "namespace", "webhook-system"]);
    let deadline = Instant::now() + WAIT;
    while r.metric("offloading_webhook_reconcile_up") != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "reconcile_up still 0 with the namespace there:\n{}",
            r.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(r.metric(r#"offloading_webhook_problem{part="lease"}"#), Some(0.0));
    assert!(r.readyz().unwrap_or_default().starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_403_names_the_verb_the_resource_and_the_cluster_role() {
    let cp = ControlPlane::start();
    install_crds(&cp);
    let certs = cp.dir.path().join("certs");
    certs_for_loopback(&certs);
    // A user the API server knows (its CA signed the certificate) but RBAC grants nothing.
    let pki = cp.dir.path().join("pki");
    let (crt, key) = openssl_client_cert(
        (&pki.join("ca.crt"), &pki.join("ca.key")),
        &cp.dir.path().join("nobody"),
        "nobody",
        "/CN=nobody",
    );
    let kubeconfig = cp.dir.path().join("nobody/kubeconfig");
    cp.kubeconfig_for(&kubeconfig, &crt, &key);
    let args: Vec<String> = [
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--cluster-id",
        CLUSTER_ID,
        "--lease-namespace",
        "default",
    ]
    .map(String::from)
    .to_vec();
    let r = Replica::spawn_args(&cp.dir.path().join("logs"), &certs, loopback(), &args);

    // The virtual nodes are read through the ClusterRole's grant...
    let line = log_line(&r, "naming the refused node list and the ClusterRole", |l| {
        l.contains("ClusterRole") && l.contains("nodes")
    })
    .await;
    eprintln!("log: {line}");
    for word in ["list", "offloading-webhook"] {
        assert!(line.contains(word), "{word:?} missing from: {line}");
    }
    // ... the Lease through a Role in the Lease's namespace.
    let line = log_line(&r, "naming the refused Lease read and its Role", |l| {
        l.contains("leases") && l.contains("Role")
    })
    .await;
    eprintln!("log: {line}");
    for word in ["get", "default", "offloading-webhook"] {
        assert!(line.contains(word), "{word:?} missing from: {line}");
    }
    assert_no_debug_dump(&r);
    // Without the virtual nodes it cannot judge: not ready, and /readyz says why.
    let readyz = r.readyz().unwrap_or_default();
    assert!(readyz.starts_with("HTTP/1.1 503"), "ready without being able to read nodes: {readyz:?}");
    let reason = readyz.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(reason.starts_with("not ready: virtual node cache not synced yet: virtual nodes: forbidden to list and watch nodes cluster-wide"), "{reason}");
    assert!(reason.contains("ClusterRole offloading-webhook"), "{reason}");
}

#[tokio::test]
async fn missing_crds_are_reported_with_the_command_that_installs_them() {
    let cp = ControlPlane::start();
    let certs = cp.dir.path().join("certs");
    certs_for_loopback(&certs);
    let r = Replica::spawn(
        &cp,
        &certs,
        loopback(),
        &["--cluster-id", CLUSTER_ID, "--lease-namespace", "default"],
    );

    let line = log_line(&r, "naming the missing CRDs", |l| {
        l.contains("kubectl apply -f manifests/crds.yaml")
            || l.contains("offloading-webhook crds | kubectl apply -f -")
    })
    .await;
    eprintln!("log: {line}");
    assert!(line.contains("namespaceoffloadings") || line.contains("namespacemaps"), "no CRD named: {line}");
    assert_no_debug_dump(&r);
}

#[test]
fn a_missing_or_unreadable_certificate_file_stops_serve_with_the_path_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    certs_for_loopback(&certs);
    let serve = |cert: &std::path::Path, key: &std::path::Path| {
        let (cert, key) = (cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned());
        let (addr, probes, metrics) = (loopback(), loopback(), loopback());
        run_to_exit(
            &[
                "serve",
                "--no-cluster",
                "--cluster-id",
                CLUSTER_ID,
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--webhook-addr",
                &addr.to_string(),
                "--probe-addr",
                &probes.to_string(),
                "--metrics-addr",
                &metrics.to_string(),
            ],
            Duration::from_secs(30),
        )
    };

    // Missing.
    let missing = dir.path().join("secret/tls.crt");
    let (status, p) = serve(&missing, &certs.join("tls.key"));
    let status = status.expect("serve kept running without its certificate");
    assert!(!status.success());
    eprintln!("missing: {}", p.stderr.trim());
    assert!(p.stderr.contains(missing.to_str().unwrap()), "{}", p.stderr);
    assert!(p.stderr.contains("No such file or directory"), "{}", p.stderr);

    // Unreadable: a directory where the key should be (file modes do not stop root, who runs CI).
    let (status, p) = serve(&certs.join("tls.crt"), &certs);
    let status = status.expect("serve kept running without a readable key");
    assert!(!status.success());
    eprintln!("unreadable: {}", p.stderr.trim());
    assert!(p.stderr.contains(certs.to_str().unwrap()), "{}", p.stderr);
    assert!(p.stderr.contains("Is a directory"), "{}", p.stderr);
}

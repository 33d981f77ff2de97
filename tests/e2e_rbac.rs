//! The shipped RBAC is what the code needs, no less and no more: a replica runs as the
//! ServiceAccount of `manifests/deploy.yaml` (a token of it, bound by exactly the shipped
//! ClusterRole, Roles and bindings) through everything the reconcile loop does, and the API
//! server's audit log shows not one request of it refused. With the chart's
//! `remote.kubeconfigSecrets`, the same for the remote side reading kubeconfig Secrets; without it,
//! not one Secret is read.

mod support;

use support::{audit, chart};

use std::net::SocketAddr;
use std::time::Duration;

use audit::{Audited, service_account_kubeconfig, service_account_user};
use support::serving::Replica;
use support::{CLUSTER_ID, ControlPlane, apply, certs_for_loopback, free_port, get, install_crds, nsof};

const WAIT: Duration = Duration::from_secs(90);
/// The release's namespace and ServiceAccount in `manifests/deploy.yaml`.
const NS: &str = "offloading-webhook";
const SA: &str = "offloading-webhook";

/// The kinds of the shipped manifests that make the webhook's identity and its rights.
const IDENTITY_KINDS: [&str; 6] =
    ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];

/// Applies the identity and RBAC documents of a rendered manifest (nothing that runs).
fn apply_identity(cp: &ControlPlane, manifests: &str) -> Vec<String> {
    let docs: Vec<&str> = manifests
        .split("\n---\n")
        .filter(|d| {
            IDENTITY_KINDS
                .iter()
                .any(|k| d.contains(&format!("\nkind: {k}\n")) || d.starts_with(&format!("kind: {k}\n")))
        })
        .collect();
    let p = cp.kubectl_stdin(&["apply", "-f", "-"], Some(&docs.join("\n---\n")));
    assert!(p.ok, "{}", p.stderr);
    p.stdout.lines().map(str::to_owned).collect()
}

fn jsonpath(cp: &ControlPlane, args: &[&str], path: &str) -> String {
    get(cp, &[args, &["-o", &format!("jsonpath={path}")]].concat())
}

/// Starts a replica as the ServiceAccount, the cluster id read from Liqo's ConfigMap (through the
/// shipped Role in `liqo`), and waits until it is ready.
async fn replica_as_service_account(cp: &ControlPlane, extra: &[&str]) -> Replica {
    let kubeconfig = service_account_kubeconfig(cp, NS, SA);
    let certs = cp.dir.path().join("certs");
    certs_for_loopback(&certs);
    let mut args: Vec<String> =
        ["--kubeconfig", kubeconfig.to_str().unwrap(), "--lease-namespace", NS, "--identity", "replica-0"]
            .map(String::from)
            .to_vec();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut r = Replica::spawn_args(&cp.dir.path().join("logs"), &certs, addr, &args);
    r.ready(WAIT).await;
    r
}

/// Every series of `offloading_webhook_problem` and `offloading_webhook_reconcile_up` the replica
/// exports.
fn fault_series(r: &Replica) -> Vec<String> {
    let text = support::http_get_full(r.metrics_port, "/metrics").unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("offloading_webhook_problem{") || l.starts_with("offloading_webhook_reconcile_up ")
        })
        .map(str::to_owned)
        .collect()
}

/// The requests of the ServiceAccount the API server refused so far.
fn refused(a: &Audited) -> Vec<String> {
    a.requests_by(&service_account_user(NS, SA))
        .iter()
        .filter(|q| q.code == 401 || q.code == 403)
        .map(|q| format!("{} {} {} -> {}", q.verb, q.resource, q.uri, q.code))
        .collect()
}

/// Polls `f` until it returns `want`; on timeout, says what was refused meanwhile (the likely why).
fn wait_for(a: &Audited, what: &str, want: &str, mut f: impl FnMut() -> String) {
    let deadline = std::time::Instant::now() + WAIT;
    let mut last = f();
    while last != want {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: wanted {want:?}, last saw {last:?}; refused meanwhile:\n{}",
            refused(a).join("\n")
        );
        std::thread::sleep(Duration::from_millis(250));
        last = f();
    }
}

/// What the audit log shows of the ServiceAccount: no request refused, and the requests made (verb
/// resource), to check the test went through what it meant to. A watch is logged when it ends, so
/// an open one shows by its list (a refused one ends at once, and shows).
fn audited(a: &Audited, r: &Replica) -> std::collections::BTreeSet<String> {
    let user = service_account_user(NS, SA);
    let requests = a.requests_by(&user);
    let refused = refused(a);
    assert!(
        refused.is_empty(),
        "the shipped RBAC refused {} requests of {user}:\n{}\nthe replica's log ends:\n{}",
        refused.len(),
        refused.join("\n"),
        r.log_tail(20)
    );
    let made: std::collections::BTreeSet<String> =
        requests.iter().map(|q| format!("{} {}", q.verb, q.resource)).collect();
    eprintln!("{} requests of {user}, none refused: {made:?}", requests.len());
    made
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_rbac_grants_everything_the_loop_does_and_no_secret() {
    let a = Audited::start(&service_account_user(NS, SA));
    let cp = &a.cp;
    install_crds(cp);
    support::liqo::cluster_id_configmap(cp, CLUSTER_ID);
    let manifests = std::fs::read_to_string(format!("{}/manifests/deploy.yaml", support::ROOT)).unwrap();
    let applied = apply_identity(cp, &manifests);
    eprintln!("applied from manifests/deploy.yaml:\n{}", applied.join("\n"));
    let r = replica_as_service_account(cp, &[]).await;

    // Everything the loop writes: a tenant namespace and NamespaceMap for a new virtual node, the
    // desiredMapping entry, the finalizer and annotation, the Namespace label, the status; an
    // Event for an object it cannot offload (stored: no webhook is registered here); the
    // finalizer removed when an object is deleted; its Lease all along.
    support::virtual_node(cp, "c1", "eu-west");
    cp.kubectl_ok(&["create", "namespace", "alpha"]);
    let p = apply(cp, &nsof("alpha", "offloading", "  podOffloadingStrategy: LocalAndRemote\n"), &[]);
    assert!(p.ok, "{}", p.stderr);
    let remote = format!("alpha-{CLUSTER_ID}");
    wait_for(&a, "desiredMapping[alpha] in c1's NamespaceMap", &remote, || {
        jsonpath(
            cp,
            &["get", "namespacemaps", "-n", "liqo-tenant-c1"],
            "{.items[0].spec.desiredMapping.alpha}",
        )
    });
    wait_for(&a, "the status of alpha", "InProgress", || {
        jsonpath(cp, &["get", "nsof", "offloading", "-n", "alpha"], "{.status.offloadingPhase}")
    });
    wait_for(&a, "the scheduling label of alpha", "true", || {
        jsonpath(cp, &["get", "namespace", "alpha"], "{.metadata.labels.liqo\\.io/scheduling-enabled}")
    });
    cp.kubectl_ok(&["create", "namespace", "broken"]);
    let p = apply(cp, &nsof("broken", "offloading", "  namespaceMappingStrategy: SelectedName\n"), &[]);
    assert!(p.ok, "{}", p.stderr);
    wait_for(&a, "a Warning Event for broken", "InvalidRemoteName", || {
        jsonpath(cp, &["get", "events", "-n", "broken"], "{.items[0].reason}")
    });
    cp.kubectl_ok(&["delete", "nsof", "offloading", "-n", "alpha", "--wait=false"]);
    wait_for(&a, "alpha's NamespaceOffloading gone", "", || {
        jsonpath(cp, &["get", "nsof", "-n", "alpha"], "{.items[*].metadata.name}")
    });

    let faults = fault_series(&r);
    assert!(
        faults.iter().any(|l| l == "offloading_webhook_reconcile_up 1"),
        "the loop is not up: {faults:?}\n{}",
        r.log_tail(20)
    );
    let problems: Vec<&String> = faults
        .iter()
        .filter(|l| l.starts_with("offloading_webhook_problem{") && !l.ends_with(" 0"))
        .collect();
    assert!(problems.is_empty(), "problems exported: {problems:?}");

    let made = audited(&a, &r);
    for want in [
        "create namespaces",
        "create namespacemaps",
        "patch namespacemaps",
        "patch namespaceoffloadings",
        "patch namespaceoffloadings/status",
        "patch namespaces",
        "create events",
        "create leases",
        "update leases",
        "list leases",
        "list configmaps",
    ] {
        assert!(made.contains(want), "the test never made the loop {want}: {made:?}");
    }
    assert!(
        !made.iter().any(|m| m.ends_with(" secrets")),
        "a Secret was read without --remote-kubeconfig-secrets: {made:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kubeconfig_secrets_the_charts_rbac_grants_the_remote_side() {
    let a = Audited::start(&service_account_user(NS, SA));
    let (cp, far) = (&a.cp, ControlPlane::start());
    install_crds(cp);
    support::liqo::cluster_id_configmap(cp, CLUSTER_ID);
    cp.kubectl_ok(&["create", "namespace", NS]);
    let rendered = chart::template_ok(&["--set", "remote.kubeconfigSecrets=true"]);
    assert!(rendered.contains("- --remote-kubeconfig-secrets"), "the chart does not pass the flag");
    apply_identity(cp, &rendered);
    // The far cluster's kubeconfig, as Liqo v0.3 keeps it: a Secret in its tenant namespace.
    cp.kubectl_ok(&["create", "namespace", "liqo-tenant-far"]);
    let kubeconfig = far.kubectl_ok(&["config", "view", "--raw", "--flatten"]);
    let file = cp.dir.path().join("far.kubeconfig");
    std::fs::write(&file, kubeconfig).unwrap();
    cp.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "far-kubeconfig",
        "-n",
        "liqo-tenant-far",
        &format!("--from-file=kubeconfig={}", file.display()),
    ]);
    cp.kubectl_ok(&[
        "label",
        "secret",
        "far-kubeconfig",
        "-n",
        "liqo-tenant-far",
        "liqo.io/remote-cluster-id=far",
    ]);
    let r = replica_as_service_account(cp, &["--remote-kubeconfig-secrets"]).await;

    support::virtual_node(cp, "far", "eu-west");
    cp.kubectl_ok(&["create", "namespace", "alpha"]);
    let p = apply(cp, &nsof("alpha", "offloading", "  podOffloadingStrategy: LocalAndRemote\n"), &[]);
    assert!(p.ok, "{}", p.stderr);
    let remote = format!("alpha-{CLUSTER_ID}");
    wait_for(&a, "alpha's remote namespace in the far cluster", CLUSTER_ID, || {
        jsonpath(&far, &["get", "namespace", &remote], "{.metadata.annotations.liqo\\.io/remote-namespace}")
    });
    wait_for(&a, "currentMapping[alpha] Accepted", "Accepted", || {
        jsonpath(
            cp,
            &["get", "namespacemaps", "-n", "liqo-tenant-far"],
            "{.items[0].status.currentMapping.alpha.phase}",
        )
    });
    wait_for(&a, "phase Ready for alpha", "Ready", || {
        jsonpath(cp, &["get", "nsof", "offloading", "-n", "alpha"], "{.status.offloadingPhase}")
    });
    let faults = fault_series(&r);
    assert!(
        faults.iter().any(|l| l == "offloading_webhook_reconcile_up 1"),
        "{faults:?}\n{}",
        r.log_tail(20)
    );

    let made = audited(&a, &r);
    for want in ["list secrets", "patch namespacemaps/status"] {
        assert!(made.contains(want), "the test never made the loop {want}: {made:?}");
    }
}

//! Leadership under chaos, on the real control plane: two `serve` replicas with identities of their
//! own, bound to the RBAC that manifests/deploy.yaml ships, while NamespaceOffloadings keep
//! arriving. The leader's right to update Leases is taken away; the API server's audit log, not
//! our own counters, must show that the old leader wrote nothing once the new one had acquired the
//! Lease, and that the new one went on converging. And two installs on one cluster: the younger
//! stands by, both say so, and it takes over once the older is gone.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ListParams, PostParams};
use offloading_webhook::crd::{NamespaceMap, NamespaceOffloading};
use support::serving::{Replica, openssl_client_cert};
use support::{
    CLUSTER_ID, ControlPlane, Webhook, certs_for_loopback, eventually, free_port, get, http_get_full,
    install_crds, virtual_node,
};

const WAIT: Duration = Duration::from_secs(60);
/// The chart's release namespace, where manifests/deploy.yaml's leader-election Role lives.
const LEASE_NS: &str = "offloading-webhook";
const LEASE: &str = "offloading-webhook-reconciler";
/// A short Lease keeps the test short: renew deadline 4 s, retry period 0.8 s.
const LEASE_SECONDS: &str = "6";
const WRITES: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// Every write, at Metadata level (who, what, when, the answer); nothing else.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [\"RequestReceived\"]
rules:
- level: Metadata
  verbs: [\"create\", \"update\", \"patch\", \"delete\", \"deletecollection\"]
- level: None
";

/// The documents of manifests/deploy.yaml of this kind and name.
fn shipped(kind: &str, name: &str) -> String {
    let text = std::fs::read_to_string(format!("{}/manifests/deploy.yaml", support::ROOT)).unwrap();
    let doc = text
        .split("\n---\n")
        .find(|d| d.contains(&format!("\nkind: {kind}\n")) && d.contains(&format!("\n  name: {name}\n")))
        .unwrap_or_else(|| panic!("no {kind} {name} in manifests/deploy.yaml"));
    doc.to_owned()
}

/// A user the API server authenticates by a client certificate, in no group that RBAC exempts.
fn user(cp: &ControlPlane, name: &str) -> std::path::PathBuf {
    let pki = cp.dir.path().join("pki");
    let dir = cp.dir.path().join("users");
    let (crt, key) =
        openssl_client_cert((&pki.join("ca.crt"), &pki.join("ca.key")), &dir, name, &format!("/CN={name}"));
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    cp.kubeconfig_for(&kubeconfig, &crt, &key);
    kubeconfig
}

fn lease_binding(user: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: leases-{user}\n  namespace: {LEASE_NS}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: offloading-webhook-leader-election\nsubjects:\n- kind: User\n  apiGroup: rbac.authorization.k8s.io\n  name: {user}\n"
    )
}

fn holder(cp: &ControlPlane) -> String {
    holder_in(cp, LEASE_NS)
}

fn holder_in(cp: &ControlPlane, namespace: &str) -> String {
    get(cp, &["get", "lease", "-n", namespace, LEASE, "-o", "jsonpath={.spec.holderIdentity}"])
}

/// A metric's value as the replica with this metrics port exports it (`None` when it exports no
/// such sample).
fn metric(port: u16, sample: &str) -> Option<String> {
    let body = http_get_full(port, "/metrics")?;
    body.lines().find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')).map(str::to_owned))
}

/// One line of the audit log that matters here.
#[derive(Debug)]
struct Audited {
    user: String,
    verb: String,
    resource: String,
    namespace: String,
    name: String,
    code: i64,
    received: Timestamp,
}

fn audit_log(path: &Path) -> Vec<Audited> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["stage"] == "ResponseComplete")
        .map(|e| {
            let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            let r = &e["objectRef"];
            let resource = match r["subresource"].as_str() {
                Some(sub) => format!("{}/{sub}", s(&r["resource"])),
                None => s(&r["resource"]),
            };
            Audited {
                user: s(&e["user"]["username"]),
                verb: s(&e["verb"]),
                resource,
                namespace: s(&r["namespace"]),
                name: s(&r["name"]),
                code: e["responseStatus"]["code"].as_i64().unwrap_or(0),
                received: s(&e["requestReceivedTimestamp"]).parse().unwrap(),
            }
        })
        .collect()
}

/// Every namespace that cluster `id`'s NamespaceMap wants offloaded.
async fn desired(maps: &Api<NamespaceMap>, id: &str) -> BTreeSet<String> {
    let lp = ListParams::default().labels(&format!("liqo.io/remote-cluster-id={id}"));
    let Ok(list) = maps.list(&lp).await else { return BTreeSet::new() };
    list.items.iter().flat_map(|m| m.spec.desired_mapping.keys().cloned()).collect()
}

/// Namespaces with a NamespaceOffloading whose status the loop wrote.
async fn with_status(offloadings: &Api<NamespaceOffloading>) -> BTreeSet<String> {
    let Ok(list) = offloadings.list(&ListParams::default()).await else { return BTreeSet::new() };
    list.items
        .iter()
        .filter(|o| o.status.as_ref().is_some_and(|s| s.offloading_phase.is_some()))
        .filter_map(|o| o.metadata.namespace.clone())
        .collect()
}

async fn converged(client: &kube::Client, created: &BTreeSet<String>) -> bool {
    let maps: Api<NamespaceMap> = Api::all(client.clone());
    let offloadings: Api<NamespaceOffloading> = Api::all(client.clone());
    let (a, b, s) = (
        desired(&maps, "cluster-a").await,
        desired(&maps, "cluster-b").await,
        with_status(&offloadings).await,
    );
    created.is_subset(&a) && created.is_subset(&b) && created.is_subset(&s)
}

/// Creates a namespace and its NamespaceOffloading, as a user would.
async fn offload(client: &kube::Client, ns: &str) {
    let namespace: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.unwrap();
    let o: NamespaceOffloading = serde_json::from_value(serde_json::json!({
        "apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
        "metadata": {"name": "offloading", "namespace": ns},
        "spec": {"clusterSelector": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "topology.liqo.io/region", "operator": "In", "values": ["eu-west"]}]}]}},
    }))
    .unwrap();
    Api::<NamespaceOffloading>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &o)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_has_stopped_writing_when_the_standby_takes_over() {
    let audit = tempfile::Builder::new().prefix("audit-").tempdir().unwrap();
    let (policy, log) = (audit.path().join("policy.yaml"), audit.path().join("audit.log"));
    std::fs::write(&policy, AUDIT_POLICY).unwrap();
    let args = format!(
        "--audit-policy-file={} --audit-log-path={} --audit-log-format=json",
        policy.display(),
        log.display()
    );
    let cp = ControlPlane::start_with(&[("UP_APISERVER_ARGS", &args)]);
    install_crds(&cp);
    cp.kubectl_ok(&["create", "namespace", LEASE_NS]);

    // The shipped ClusterRole and leader-election Role, bound to two users of their own.
    let roles = format!(
        "{}\n---\n{}",
        shipped("ClusterRole", "offloading-webhook"),
        shipped("Role", "offloading-webhook-leader-election")
    );
    assert!(cp.kubectl_stdin(&["apply", "-f", "-"], Some(&roles)).ok);
    let names = ["replica-a", "replica-b"];
    let cluster_binding = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: offloading-webhook-replicas\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: offloading-webhook\nsubjects:\n{}",
        names
            .iter()
            .map(|n| format!("- kind: User\n  apiGroup: rbac.authorization.k8s.io\n  name: {n}\n"))
            .collect::<String>()
    );
    let bindings =
        format!("{cluster_binding}---\n{}---\n{}", lease_binding(names[0]), lease_binding(names[1]));
    let p = cp.kubectl_stdin(&["apply", "-f", "-"], Some(&bindings));
    assert!(p.ok, "{}", p.stderr);

    for (id, region) in [("cluster-a", "eu-west"), ("cluster-b", "eu-west")] {
        virtual_node(&cp, id, region);
    }
    let certs = cp.dir.path().join("certs");
    certs_for_loopback(&certs);
    let logs = cp.dir.path().join("logs");
    let mut replicas = Vec::new();
    for name in names {
        let kubeconfig = user(&cp, name);
        let args: Vec<String> = [
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--cluster-id",
            CLUSTER_ID,
            "--lease-namespace",
            LEASE_NS,
            "--identity",
            name,
            "--lease-seconds",
            LEASE_SECONDS,
        ]
        .map(String::from)
        .to_vec();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut r = Replica::spawn_args(&logs, &certs, addr, &args);
        r.ready(WAIT).await;
        replicas.push(r);
    }

    // One leads; the gauges say which.
    let leader_name = eventually(WAIT, "a replica to hold the Lease", || {
        let h = holder(&cp);
        names.contains(&h.as_str()).then_some(h)
    });
    let (old, new) = if leader_name == names[0] { (0, 1) } else { (1, 0) };
    let (old_name, new_name) = (names[old], names[new]);
    let gauge = |i: usize| metric(replicas[i].metrics_port, "offloading_webhook_leader");
    eventually(WAIT, "the leader gauges: 1 on the holder, 0 on the standby", || {
        (gauge(old).as_deref() == Some("1") && gauge(new).as_deref() == Some("0")).then_some(())
    });

    // NamespaceOffloadings keep arriving.
    let client = cp.client().await;
    let created = Arc::new(std::sync::Mutex::new(BTreeSet::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let creator = {
        let (client, created, stop, count) = (client.clone(), created.clone(), stop.clone(), count.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let ns = format!("chaos-{}", count.fetch_add(1, Ordering::AcqRel));
                offload(&client, &ns).await;
                created.lock().unwrap().insert(ns);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let first: BTreeSet<String> = eventually(WAIT, "three NamespaceOffloadings created", || {
        let now = created.lock().unwrap().clone();
        (now.len() >= 3).then_some(now)
    });
    let deadline = Instant::now() + WAIT;
    while !converged(&client, &first).await {
        assert!(Instant::now() < deadline, "the first NamespaceOffloadings did not converge: {first:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("{} NamespaceOffloadings converged under {old_name}", first.len());
    eventually(WAIT, "the leader's phase gauges", || {
        metric(replicas[old].metrics_port, "offloading_webhook_namespace_offloadings{phase=\"InProgress\"}")
    });

    // The leader may no longer update (or read) Leases.
    let taken = Instant::now();
    cp.kubectl_ok(&["delete", "rolebinding", "-n", LEASE_NS, &format!("leases-{old_name}")]);
    eventually(WAIT, "the standby to take the Lease over", || (holder(&cp) == new_name).then_some(()));
    eprintln!(
        "{new_name} holds the Lease {:.1} s after {old_name} lost its Lease rights",
        taken.elapsed().as_secs_f64()
    );
    // Some more arrive after the handover, then no more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Release);
    creator.await.unwrap();
    let all = created.lock().unwrap().clone();
    let deadline = Instant::now() + WAIT;
    while !converged(&client, &all).await {
        assert!(
            Instant::now() < deadline,
            "the new leader did not converge all {} NamespaceOffloadings",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eventually(WAIT, "the leader gauges flipped: 0 on the old leader, 1 on the new", || {
        (gauge(old).as_deref() == Some("0") && gauge(new).as_deref() == Some("1")).then_some(())
    });
    // Phase gauges are the active reconciler's only.
    assert_eq!(
        metric(replicas[old].metrics_port, "offloading_webhook_namespace_offloadings{phase=\"InProgress\"}"),
        None
    );
    eventually(WAIT, "the new leader's phase gauges", || {
        metric(replicas[new].metrics_port, "offloading_webhook_namespace_offloadings{phase=\"InProgress\"}")
    });

    // The old leader said why it stopped.
    let old_log = replicas[old].log_text();
    let line = old_log.lines().find(|l| l.contains("renew deadline passed")).unwrap_or_else(|| {
        panic!("no renew-deadline line in the old leader's log:\n{}", replicas[old].log_tail(30))
    });
    assert!(line.contains("forbidden to update leases.coordination.k8s.io"), "{line}");

    // The audit log: the new leader's acquiring Lease write, then nothing by the old leader.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = audit_log(&log);
    let removed = events
        .iter()
        .find(|e| {
            e.verb == "delete" && e.resource == "rolebindings" && e.name == format!("leases-{old_name}")
        })
        .expect("the RoleBinding's deletion in the audit log")
        .received;
    let acquired = events
        .iter()
        .find(|e| {
            e.user == new_name
                && e.resource == "leases"
                && e.namespace == LEASE_NS
                && matches!(e.verb.as_str(), "update" | "create")
                && (200..300).contains(&e.code)
                && e.received > removed
        })
        .expect("the new leader's acquiring Lease write in the audit log")
        .received;
    let old_writes: Vec<&Audited> = events
        .iter()
        .filter(|e| e.user == old_name && WRITES.contains(&e.verb.as_str()) && e.received > removed)
        .collect();
    let after: Vec<&&Audited> = old_writes.iter().filter(|e| e.received >= acquired).collect();
    let last_old = old_writes.iter().map(|e| e.received).max();
    let new_writes = events
        .iter()
        .filter(|e| {
            e.user == new_name
                && e.resource != "leases"
                && e.received > acquired
                && (200..300).contains(&e.code)
        })
        .count();
    eprintln!(
        "audit: {} writes by {old_name} between losing its Lease rights and {new_name}'s acquisition, its last {} before it; {} writes by {old_name} after; {new_writes} non-Lease writes by {new_name} after",
        old_writes.len(),
        last_old
            .map(|t| format!("{:.2} s", acquired.duration_since(t).as_secs_f64()))
            .unwrap_or_else(|| "-".into()),
        after.len()
    );
    assert!(after.is_empty(), "the old leader wrote after the new one acquired the Lease: {after:#?}");
    assert!(new_writes > 0, "no writes by the new leader after it acquired the Lease");
}

#[tokio::test]
async fn a_second_install_stands_by_says_so_and_takes_over_once_the_first_is_gone() {
    let cp = ControlPlane::start();
    install_crds(&cp);
    for ns in ["team-a", "team-b"] {
        cp.kubectl_ok(&["create", "namespace", ns]);
    }
    virtual_node(&cp, "cluster-a", "eu-west");
    let certs = cp.dir.path().join("certs");
    certs_for_loopback(&certs);
    let install = |namespace: &str, identity: &str| {
        let args = [
            "--cluster-id",
            CLUSTER_ID,
            "--lease-namespace",
            namespace,
            "--identity",
            identity,
            "--lease-seconds",
            LEASE_SECONDS,
        ];
        Webhook::start(&cp, &certs, &args)
    };
    let log = |w: &Webhook| {
        std::fs::read_to_string(cp.dir.path().join(format!("webhook-{}.log", w.port))).unwrap_or_default()
    };
    let leader = |w: &Webhook| metric(w.metrics_port, "offloading_webhook_leader");
    let others = |w: &Webhook| metric(w.metrics_port, "offloading_webhook_other_installs");

    let a = install("team-a", "a-1");
    eventually(WAIT, "the first install to reconcile", || (leader(&a).as_deref() == Some("1")).then_some(()));
    let b = install("team-b", "b-1");
    eventually(WAIT, "the second install to hold its own Lease", || {
        (holder_in(&cp, "team-b") == "b-1").then_some(())
    });
    eventually(WAIT, "each install to count the other", || {
        (others(&a).as_deref() == Some("1") && others(&b).as_deref() == Some("1")).then_some(())
    });
    // The younger holds its Lease but never reconciles while the older lives.
    assert_eq!(leader(&b).as_deref(), Some("0"));
    assert!(!log(&b).contains("became the active reconciler"), "{}", log(&b));
    let said = eventually(WAIT, "the younger install's error line", || {
        log(&b).lines().find(|l| l.contains("ERROR") && l.contains("another install")).map(str::to_owned)
    });
    assert!(
        said.contains("is the older: this one stands by")
            && said.contains("team-a/offloading-webhook-reconciler"),
        "{said}"
    );
    let said = eventually(WAIT, "the older install's error line", || {
        log(&a).lines().find(|l| l.contains("ERROR") && l.contains("another install")).map(str::to_owned)
    });
    assert!(
        said.contains("this one is the older and reconciles")
            && said.contains("team-b/offloading-webhook-reconciler"),
        "{said}"
    );

    // diagnose lists both Leases and says which install reconciles.
    let out = std::process::Command::new(support::webhook_bin())
        .args(["diagnose", "-n", "default", "--cluster-id", CLUSTER_ID, "--kubeconfig"])
        .arg(&cp.kubeconfig)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    for want in [
        "reconcile leases:\n  team-a/offloading-webhook-reconciler  holder a-1, renewed ",
        "(lease 6 s): reconciles\n  team-b/offloading-webhook-reconciler  holder b-1, renewed ",
        "(lease 6 s): stands by: another install is older\n",
        "note: 2 installs of offloading-webhook run a reconcile loop on this cluster",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    // The older install goes (and releases its Lease): the younger reconciles once that Lease has
    // stayed unchanged for its duration.
    let gone = Instant::now();
    assert!(a.terminate().success());
    eventually(WAIT, "the second install to reconcile", || {
        (leader(&b).as_deref() == Some("1")).then_some(())
    });
    let after = gone.elapsed();
    eprintln!("the second install reconciles {:.1} s after the first stopped", after.as_secs_f64());
    assert!(after >= Duration::from_secs(6), "{after:?}");
    assert_eq!(others(&b).as_deref(), Some("0"));
    assert!(log(&b).contains("no other install of offloading-webhook reconciles on this cluster any more"));
}

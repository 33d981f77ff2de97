//! Chaos on the real control plane, while the webhook serves: what an operator can take away by
//! mistake and what a cluster goes through. Each test asserts from what kubectl prints, from the
//! API server's audit log, and from what a kubelet (`/readyz`) and Prometheus (`/metrics`) read.
//!
//! - the reconcile loop's RBAC taken away and given back, two replicas: every replica stays ready,
//!   broken objects are still refused, the problem is said, and the loop resumes by itself;
//! - kube-apiserver restarted in the middle of converging 1 000 namespaces on 10 clusters: it
//!   converges, and the writes per namespace stay within 10 % of an undisturbed run;
//! - a remote cluster unreachable for a minute: the others go on, and it catches up.

mod support;

use support::audit;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::{Value, json};

use audit::{Audit, Audited, user_kubeconfig};
use support::serving::{Replica, register};
use support::{
    CLUSTER_ID, ControlPlane, Webhook, apply, certs_for_loopback, free_port, get, install_crds, nsof,
    virtual_node, wait_eq,
};

const WAIT: Duration = Duration::from_secs(90);
const DENIED: &str = "admission webhook \"validate.offloading-webhook.io\" denied the request: ";
/// The webhook's own user in the audit log.
const USER: &str = "offloading-webhook";

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

fn jsonpath(cp: &ControlPlane, args: &[&str], path: &str) -> String {
    get(cp, &[args, &["-o", &format!("jsonpath={path}")]].concat())
}

fn phase(cp: &ControlPlane, ns: &str) -> String {
    jsonpath(cp, &["get", "nsof", "offloading", "-n", ns], "{.status.offloadingPhase}")
}

// ---------------------------------------------------------------------------------------------
// 1. The loop's RBAC taken away while serving

/// Where the Role of the manifests grants the Lease.
const LEASE_NS: &str = "offloading-webhook";

/// The ClusterRole and the Lease Role of `manifests/deploy.yaml`, as shipped: all the loop needs
/// (no Secret is read without `--remote-kubeconfig-secrets`).
fn install_roles(cp: &ControlPlane) {
    let manifests = std::fs::read_to_string(format!("{}/manifests/deploy.yaml", support::ROOT)).unwrap();
    let roles: Vec<&str> = manifests
        .split("\n---\n")
        .filter(|d| {
            (d.contains("\nkind: ClusterRole\n") || d.contains("\nkind: Role\n"))
                && !d.contains("name: offloading-webhook-cluster-id")
        })
        .collect();
    assert_eq!(roles.len(), 2, "the ClusterRole and the Lease Role in manifests/deploy.yaml");
    let p = cp.kubectl_stdin(&["apply", "-f", "-"], Some(&roles.join("\n---\n")));
    assert!(p.ok, "{}", p.stderr);
}

/// Binds the roles to the webhook's user (what a ServiceAccount's bindings do in a deployment).
fn grant(cp: &ControlPlane) {
    cp.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "offloading-webhook",
        "--clusterrole=offloading-webhook",
        &format!("--user={USER}"),
    ]);
    cp.kubectl_ok(&[
        "create",
        "rolebinding",
        "offloading-webhook-leader-election",
        "-n",
        LEASE_NS,
        "--role=offloading-webhook-leader-election",
        &format!("--user={USER}"),
    ]);
}

/// Takes every binding away: the webhook's user may do nothing but discovery.
fn revoke(cp: &ControlPlane) {
    cp.kubectl_ok(&["delete", "clusterrolebinding", "offloading-webhook"]);
    cp.kubectl_ok(&["delete", "rolebinding", "-n", LEASE_NS, "offloading-webhook-leader-election"]);
}

/// Creates namespace `ns` with a NamespaceOffloading (no selector: every cluster).
fn offload(cp: &ControlPlane, ns: &str) {
    cp.kubectl_ok(&["create", "namespace", ns]);
    let p = apply(cp, &nsof(ns, "offloading", "  podOffloadingStrategy: LocalAndRemote\n"), &[]);
    assert!(p.ok, "{}", p.stderr);
}

/// Waits until the loop has handled `ns` for cluster `id`: the desiredMapping entry, and a status
/// of the current generation (InProgress: no remote side here).
fn converged(cp: &ControlPlane, ns: &str, id: &str) {
    let remote = format!("{ns}-{CLUSTER_ID}");
    wait_eq(WAIT, &format!("desiredMapping[{ns}] in cluster {id}'s NamespaceMap"), &remote, || {
        jsonpath(
            cp,
            &["get", "namespacemaps", "-n", &format!("liqo-tenant-{id}")],
            &format!("{{.items[0].spec.desiredMapping.{ns}}}"),
        )
    });
    wait_eq(WAIT, &format!("the status of {ns}"), "InProgress true", || {
        let p = jsonpath(
            cp,
            &["get", "nsof", "offloading", "-n", ns],
            "{.status.offloadingPhase} {.status.observedGeneration}={.metadata.generation}",
        );
        match p.split_once(' ') {
            Some((phase, gens)) => {
                let same = gens.split_once('=').is_some_and(|(a, b)| !a.is_empty() && a == b);
                format!("{phase} {same}")
            }
            None => p,
        }
    });
}

/// Polls `/readyz` of each replica every 100 ms until stopped; keeps every answer that was not 200.
struct ReadyWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl ReadyWatch {
    fn start(replicas: &[&Replica]) -> Self {
        let ports: Vec<u16> = replicas.iter().map(|r| r.probe_port).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut polls, mut bad) = (0, Vec::new());
            while !s.load(Ordering::Relaxed) {
                for port in &ports {
                    let answer =
                        support::http_get_full(*port, "/readyz").unwrap_or_else(|| "no answer".into());
                    if !answer.starts_with("HTTP/1.1 200") {
                        bad.push(format!("port {port}: {answer}"));
                    }
                    polls += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (polls, bad)
        });
        Self { stop, thread }
    }

    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Waits until `metric` of `r` reads `want`.
async fn metric_reads(r: &Replica, metric: &str, want: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = r.metric(metric);
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{metric} of the replica on {} is {got:?}, not {want}; its log ends:\n{}",
            r.addr,
            r.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loops_rbac_taken_away_leaves_every_replica_ready_and_is_resumed_from_once_given_back() {
    let a = Audited::start(USER);
    let cp = &a.cp;
    install_crds(cp);
    cp.kubectl_ok(&["create", "namespace", LEASE_NS]);
    install_roles(cp);
    grant(cp);
    let kubeconfig = user_kubeconfig(cp, USER, &format!("/CN={USER}"));
    let certs = cp.dir.path().join("certs");
    certs_for_loopback(&certs);
    let args = |identity: &str| -> Vec<String> {
        [
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--cluster-id",
            CLUSTER_ID,
            "--lease-namespace",
            LEASE_NS,
            "--identity",
            identity,
            "--lease-seconds",
            "6",
        ]
        .map(String::from)
        .to_vec()
    };
    let logs = cp.dir.path().join("logs");
    let mut replicas = [
        Replica::spawn_args(&logs, &certs, loopback(), &args("replica-a")),
        Replica::spawn_args(&logs, &certs, loopback(), &args("replica-b")),
    ];
    for r in &mut replicas {
        r.ready(WAIT).await;
    }
    register(cp, ("--url", &format!("https://{}", replicas[0].addr)), &certs);
    virtual_node(cp, "c1", "eu-west");
    offload(cp, "before");
    converged(cp, "before", "c1");
    for r in &replicas {
        metric_reads(r, "offloading_webhook_reconcile_up", 1.0).await;
    }

    let watch = ReadyWatch::start(&[&replicas[0], &replicas[1]]);
    revoke(cp);
    let revoked = Timestamp::now();

    // Every replica still judges: a broken object is refused, with our message, by each.
    let broken = nsof("broken", "offloading", "  namespaceMappingStrategy: SelectedName\n");
    cp.kubectl_ok(&["create", "namespace", "broken"]);
    for r in &replicas {
        register(cp, ("--url", &format!("https://{}", r.addr)), &certs);
        let p = apply(cp, &broken, &[]);
        assert!(!p.ok, "accepted through {}", r.addr);
        let want = format!(
            "{DENIED}spec.remoteNamespaceName: Required value: SelectedName needs spec.remoteNamespaceName"
        );
        assert!(p.stderr.contains(&want), "through {}, kubectl printed:\n{}", r.addr, p.stderr);
    }
    // A good object is admitted; the loop cannot handle it yet.
    offload(cp, "during");

    // The problem is said, and exported, by every replica (each reads the Lease).
    for r in &replicas {
        metric_reads(r, "offloading_webhook_reconcile_up", 0.0).await;
        let log = r.log_text();
        let line = log.lines().find(|l| l.contains("forbidden to") && l.contains("Role"));
        assert!(
            line.is_some(),
            "no log line says what is forbidden and which Role grants it:\n{}",
            r.log_tail(30)
        );
        eprintln!("{}: {}", r.addr, line.unwrap_or_default());
    }
    // The refusal stays refused a while: long enough to see that the loop's retries back off.
    tokio::time::sleep(Duration::from_secs(10)).await;
    grant(cp);
    let granted = Timestamp::now();

    // The loop resumes by itself: what came meanwhile and what comes now are both handled.
    offload(cp, "after");
    converged(cp, "after", "c1");
    converged(cp, "during", "c1");
    for r in &replicas {
        metric_reads(r, "offloading_webhook_reconcile_up", 1.0).await;
    }
    let (polls, not_ready) = watch.finish();
    assert!(
        not_ready.is_empty(),
        "a replica was not ready while the loop's RBAC was gone:\n{}",
        not_ready.join("\n")
    );
    assert!(polls > 100, "only {polls} polls of /readyz");
    eprintln!("/readyz: {polls} polls, every one 200");

    // The audit log: the rights were really gone (refusals), and the refused requests came at a
    // pace that spares the API server (backoff: no retry loop without a wait).
    let requests = a.requests_by(USER);
    let outage: Vec<&Audit> = requests.iter().filter(|r| r.at >= revoked && r.at < granted).collect();
    let refused = outage.iter().filter(|r| r.code == 403).count();
    let seconds = granted.duration_since(revoked).as_secs_f64();
    eprintln!(
        "audit: {} requests by {USER} in the {seconds:.1} s without rights, {refused} refused (403); writes: {:?}",
        outage.len(),
        outage
            .iter()
            .filter(|r| r.is_write())
            .map(|r| format!("{} {} {}", r.verb, r.resource, r.code))
            .collect::<Vec<_>>()
    );
    assert!(refused > 0, "no request by {USER} was refused while its bindings were gone");
    assert!(
        (outage.len() as f64) < 5.0 * seconds,
        "{} requests in {seconds:.1} s by two replicas refused every time: a retry without backoff",
        outage.len()
    );
}

// ---------------------------------------------------------------------------------------------
// 3. kube-apiserver restarted while converging

const NAMESPACES: usize = 1000;
const CLUSTERS: usize = 10;

/// What one round measured.
#[derive(Debug)]
struct Round {
    writes: usize,
    by_resource: BTreeMap<String, usize>,
    seconds: f64,
}

impl Round {
    fn per_namespace(&self) -> f64 {
        self.writes as f64 / NAMESPACES as f64
    }
}

fn offloading_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("offloading.liqo.io", "v1alpha1", "NamespaceOffloading"),
        "namespaceoffloadings",
    )
}

fn map_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("virtualkubelet.liqo.io", "v1alpha1", "NamespaceMap"),
        "namespacemaps",
    )
}

/// Set while the test restarts kube-apiserver: the client holds its creates meanwhile, so that a
/// starting API server is not also answering a client's retries (the loop under test is what
/// should ride the restart out, not the test's own client).
static RESTARTING: AtomicBool = AtomicBool::new(false);

/// Creates `obj`, again after any failure but AlreadyExists (the API server may be restarting, and
/// a create it committed before going down counts).
async fn create_until_stored<K>(api: &Api<K>, obj: &K)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        while RESTARTING.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        match api.create(&PostParams::default(), obj).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.is_already_exists() => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "could not create {:?}: {e}", obj.meta().name);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// desiredMapping entries over every NamespaceMap.
async fn entries(maps: &Api<DynamicObject>) -> usize {
    match maps.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|m| m.data["spec"]["desiredMapping"].as_object().map_or(0, |d| d.len()))
            .sum(),
        Err(_) => 0,
    }
}

/// What is not right yet, or `None` once every entry and every status is.
async fn not_converged(client: &kube::Client) -> Option<String> {
    let maps: Api<DynamicObject> = Api::all_with(client.clone(), &map_resource());
    let maps = match maps.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => return Some(format!("maps not listed: {e}")),
    };
    if maps.len() != CLUSTERS {
        return Some(format!("{} NamespaceMaps", maps.len()));
    }
    for m in &maps {
        let desired = m.data["spec"]["desiredMapping"].as_object().cloned().unwrap_or_default();
        let right = (0..NAMESPACES)
            .filter(|i| {
                let ns = format!("chaos-{i:04}");
                desired.get(&ns).and_then(Value::as_str) == Some(format!("{ns}-{CLUSTER_ID}").as_str())
            })
            .count();
        if right != NAMESPACES || desired.len() != NAMESPACES {
            return Some(format!("map {:?}: {right} right entries of {}", m.metadata.name, desired.len()));
        }
    }
    let offloadings: Api<DynamicObject> = Api::all_with(client.clone(), &offloading_resource());
    let objs = match offloadings.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => return Some(format!("NamespaceOffloadings not listed: {e}")),
    };
    let right = objs
        .iter()
        .filter(|o| {
            let s = &o.data["status"];
            let ns = o.metadata.namespace.clone().unwrap_or_default();
            s["offloadingPhase"] == "InProgress"
                && s["observedGeneration"].as_i64() == o.metadata.generation
                && s["remoteNamespaceName"] == format!("{ns}-{CLUSTER_ID}").as_str()
                && s["remoteNamespacesConditions"].as_object().is_some_and(|c| c.len() == CLUSTERS)
        })
        .count();
    (right != NAMESPACES || objs.len() != NAMESPACES)
        .then(|| format!("{right} of {} statuses right", objs.len()))
}

/// One round on a fresh control plane: the webhook as its own user, 10 virtual nodes, then 1 000
/// namespaces offloaded; with `restart`, kube-apiserver killed and started again once 30 % of the
/// desiredMapping entries are written. Counts the webhook's writes (Lease renewals apart) from
/// its start to 5 s after everything converged.
async fn converge_round(restart: bool) -> Round {
    let a = Audited::start(USER);
    install_crds(&a.cp);
    let kubeconfig = user_kubeconfig(&a.cp, USER, &format!("/O=system:masters/CN={USER}"));
    let certs = a.cp.dir.path().join("certs");
    certs_for_loopback(&certs);
    // A Lease long enough that the leader keeps leading through the restart (a renew deadline of
    // 40 s): the loop must ride it out with its watches relisting and its writes retried, not by
    // losing leadership and starting over from a fresh list.
    let args: Vec<String> = [
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--cluster-id",
        CLUSTER_ID,
        "--lease-namespace",
        "default",
        "--lease-seconds",
        "60",
    ]
    .map(String::from)
    .to_vec();
    let mut replica = Replica::spawn_args(&a.cp.dir.path().join("logs"), &certs, loopback(), &args);
    replica.ready(WAIT).await;

    let client = a.cp.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..CLUSTERS {
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": format!("liqo-c{i}"), "labels": {
            "liqo.io/type": "virtual-node", "liqo.io/remote-cluster-id": format!("c{i}")}}}))
            .unwrap();
        create_until_stored(&nodes, &node).await;
    }
    let maps: Api<DynamicObject> = Api::all_with(client.clone(), &map_resource());
    let deadline = Instant::now() + WAIT;
    while maps.list(&ListParams::default()).await.map_or(0, |l| l.items.len()) < CLUSTERS {
        assert!(Instant::now() < deadline, "the tenant loop made no NamespaceMap for every cluster");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let started = Instant::now();
    let creates = tokio::spawn({
        let client = client.clone();
        async move {
            futures::stream::iter(0..NAMESPACES)
                .map(|i| {
                    let client = client.clone();
                    async move {
                        let name = format!("chaos-{i:04}");
                        let ns: Namespace =
                            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
                        create_until_stored(&Api::<Namespace>::all(client.clone()), &ns).await;
                        let ar = offloading_resource();
                        let mut o: DynamicObject = serde_json::from_value(json!({
                            "metadata": {"name": "offloading", "namespace": name},
                            "spec": {"podOffloadingStrategy": "LocalAndRemote"}
                        }))
                        .unwrap();
                        o.types = Some(kube::core::TypeMeta {
                            api_version: ar.api_version.clone(),
                            kind: ar.kind.clone(),
                        });
                        create_until_stored(&Api::<DynamicObject>::namespaced_with(client, &name, &ar), &o)
                            .await;
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<()>>()
                .await;
        }
    });
    if restart {
        let total = NAMESPACES * CLUSTERS;
        let deadline = Instant::now() + Duration::from_secs(300);
        let at = loop {
            let n = entries(&maps).await;
            if n * 10 >= total * 3 {
                break n;
            }
            assert!(Instant::now() < deadline, "only {n} of {total} entries after 300 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let down = started.elapsed().as_secs_f64();
        RESTARTING.store(true, Ordering::Release);
        tokio::task::block_in_place(|| a.cp.restart_apiserver());
        RESTARTING.store(false, Ordering::Release);
        eprintln!(
            "kube-apiserver killed at {at} of {total} desiredMapping entries, {down:.1} s in, serving again {:.1} s in",
            started.elapsed().as_secs_f64()
        );
        assert!(at < total, "converged before the restart could happen");
    }
    creates.await.unwrap();
    eprintln!("the client's creates done {:.1} s in", started.elapsed().as_secs_f64());
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last;
    loop {
        last = not_converged(&client).await;
        if last.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "not converged after 300 s: {last:?}\n{}", replica.log_tail(20));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    // Writes just after converging count too: a storm would show there.
    tokio::time::sleep(Duration::from_secs(5)).await;
    replica.sigterm();
    replica.exited(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut by_resource: BTreeMap<String, usize> = BTreeMap::new();
    for w in a.requests_by(USER).iter().filter(|w| w.is_write() && w.resource != "leases") {
        *by_resource.entry(format!("{} {}", w.verb, w.resource)).or_default() += 1;
    }
    let warnings = replica.log_text().lines().filter(|l| l.contains("WARN")).count();
    let round = Round { writes: by_resource.values().sum(), by_resource, seconds };
    eprintln!(
        "{}: converged in {:.1} s, {} writes ({:.2} per namespace), {warnings} warnings: {:?}",
        if restart { "with a restart" } else { "undisturbed" },
        round.seconds,
        round.writes,
        round.per_namespace(),
        round.by_resource
    );
    round
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_restart_while_converging_1000_namespaces_on_10_clusters_brings_no_storm() {
    let undisturbed = converge_round(false).await;
    let restarted = converge_round(true).await;
    let ratio = restarted.per_namespace() / undisturbed.per_namespace();
    eprintln!(
        "writes per namespace: {:.2} undisturbed, {:.2} with a restart (x{ratio:.3})",
        undisturbed.per_namespace(),
        restarted.per_namespace()
    );
    assert!(
        ratio <= 1.10,
        "the restart cost {:.2} writes per namespace against {:.2} undisturbed (x{ratio:.3}): {:?} against {:?}",
        restarted.per_namespace(),
        undisturbed.per_namespace(),
        restarted.by_resource,
        undisturbed.by_resource
    );
}

// ---------------------------------------------------------------------------------------------
// 4. A remote cluster unreachable for a minute

/// A TCP forwarder to a remote API server that can be cut like a network partition: while cut,
/// nothing passes and nothing is closed (connections accepted are held, open ones go silent), so a
/// client sees what it would see of an unreachable cluster, timeouts. Healed, the held
/// connections are closed and new ones pass again. Runs on its own thread; loopback only.
struct Partition {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Partition {
    fn start(upstream: SocketAddr) -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (cut, rx) = tokio::sync::watch::channel(false);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let Ok((mut down, _)) = listener.accept().await else { continue };
                    let mut rx = rx.clone();
                    tokio::spawn(async move {
                        let open = !*rx.borrow();
                        if open && let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut down, &mut up) => return,
                                _ = rx.wait_for(|c| *c) => {}
                            }
                        }
                        // Cut: hold the connection, silent, until healed.
                        let _ = rx.wait_for(|c| !*c).await;
                    });
                }
            });
        });
        Self { addr, cut }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn heal(&self) {
        self.cut.send_replace(false);
    }
}

fn selector_for(ids: &[&str]) -> String {
    format!(
        "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: liqo.io/remote-cluster-id\n        operator: In\n        values: [{}]\n",
        ids.join(", ")
    )
}

/// currentMapping[ns].phase in cluster `id`'s NamespaceMap.
fn current(cp: &ControlPlane, id: &str, ns: &str) -> String {
    jsonpath(
        cp,
        &["get", "namespacemaps", "-n", &format!("liqo-tenant-{id}")],
        &format!("{{.items[0].status.currentMapping.{ns}.phase}}"),
    )
}

fn remote_namespace_owner(remote: &ControlPlane, ns: &str) -> String {
    jsonpath(
        remote,
        &["get", "namespace", &format!("{ns}-{CLUSTER_ID}")],
        "{.metadata.annotations.liqo\\.io/remote-namespace}",
    )
}

#[test]
fn a_remote_cluster_unreachable_for_a_minute_delays_no_other_and_catches_up() {
    let (local, far, near) = (ControlPlane::start(), ControlPlane::start(), ControlPlane::start());
    install_crds(&local);
    let certs = local.dir.path().join("certs");
    certs_for_loopback(&certs);
    // The far cluster is reached through a partition the test controls.
    let upstream: SocketAddr = far.server_url().trim_start_matches("https://").parse().unwrap();
    let partition = Partition::start(upstream);
    let far_kubeconfig = local.dir.path().join("far.kubeconfig");
    let text = std::fs::read_to_string(&far.kubeconfig).unwrap();
    std::fs::write(
        &far_kubeconfig,
        text.replace(&format!("https://{upstream}"), &format!("https://{}", partition.addr)),
    )
    .unwrap();
    let far_flag = format!("far={}", far_kubeconfig.display());
    let near_flag = format!("near={}", near.kubeconfig.display());
    let wh = Webhook::start(
        &local,
        &certs,
        &[
            "--cluster-id",
            CLUSTER_ID,
            "--lease-namespace",
            "default",
            "--remote-kubeconfig",
            &far_flag,
            "--remote-kubeconfig",
            &near_flag,
        ],
    );
    virtual_node(&local, "far", "eu-west");
    virtual_node(&local, "near", "eu-west");
    let both = selector_for(&["far", "near"]);
    local.kubectl_ok(&["create", "namespace", "first"]);
    assert!(apply(&local, &nsof("first", "offloading", &both), &[]).ok);
    wait_eq(WAIT, "phase Ready for first", "Ready", || phase(&local, "first"));

    partition.cut();
    let cut_at = Instant::now();
    for ns in ["during-1", "during-2"] {
        local.kubectl_ok(&["create", "namespace", ns]);
        assert!(apply(&local, &nsof(ns, "offloading", &both), &[]).ok);
    }
    // The near cluster goes on meanwhile; the far one is retried in CreationLoopBackOff.
    for ns in ["during-1", "during-2"] {
        wait_eq(WAIT, &format!("{ns} created in the near cluster"), CLUSTER_ID, || {
            remote_namespace_owner(&near, ns)
        });
        wait_eq(WAIT, &format!("{ns} Accepted by the near cluster"), "Accepted", || {
            current(&local, "near", ns)
        });
        wait_eq(
            WAIT,
            &format!("{ns} in CreationLoopBackOff for the far cluster"),
            "CreationLoopBackOff",
            || current(&local, "far", ns),
        );
        wait_eq(WAIT, &format!("phase SomeFailed for {ns}"), "SomeFailed", || phase(&local, ns));
    }
    let others_went_on = cut_at.elapsed();
    assert!(others_went_on < Duration::from_secs(60), "the near cluster waited {others_went_on:?}");
    eprintln!(
        "the near cluster had both namespaces {:.1} s into the partition",
        others_went_on.as_secs_f64()
    );
    // Unreachable for a minute.
    std::thread::sleep(Duration::from_secs(60).saturating_sub(cut_at.elapsed()));
    partition.heal();
    let healed_at = Instant::now();

    // It catches up: its namespaces created and Accepted, every phase Ready.
    for ns in ["first", "during-1", "during-2"] {
        wait_eq(WAIT, &format!("{ns} created in the far cluster"), CLUSTER_ID, || {
            remote_namespace_owner(&far, ns)
        });
        wait_eq(WAIT, &format!("{ns} Accepted by the far cluster"), "Accepted", || {
            current(&local, "far", ns)
        });
        wait_eq(WAIT, &format!("phase Ready for {ns}"), "Ready", || phase(&local, ns));
    }
    eprintln!("caught up {:.1} s after the partition healed", healed_at.elapsed().as_secs_f64());
    assert!(wh.terminate().success());
}

//! Installing the way the most trusted webhooks install, proven on the real control plane (the
//! chart's own Deployment arguments run by `serve` processes on loopback, behind the chart's
//! selectorless Service and an EndpointSlice the test publishes as the kubelet would):
//! - `helm template` renders the same bytes every time;
//! - an install whose pods never become ready blocks no write; a ready replica registers the
//!   webhooks (what it writes is manifests/webhooks.yaml); `helm uninstall` leaves nothing behind,
//!   and a replica still running does not bring a configuration back;
//! - a GitOps sync (`helm template | kubectl apply --server-side`, twice) changes nothing while
//!   reviews flow, and loses none;
//! - the managed certificate, serving pair and CA, rotates under load with no failed review;
//! - with cert-manager, the replicas publish the CA of the Secret they mount, a new CA beside the old;
//! - deleting the release namespace deletes the registrations (garbage collection);
//! - an IPv6 `[::1]` webhook URL is answered, and the dual-stack listeners take IPv4 too;
//! - matchConditions keep metadata-only updates (the reconcile loop's finalizer) away from the
//!   webhooks while CREATE, spec changes and server-side dry runs reach them (reviews counted).

mod support;
use support::chart;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use support::serving::Replica;
use support::{CLUSTER_ID, ControlPlane, apply, eventually, free_port, http_get, install_crds, nsof};

const NS: &str = chart::NAMESPACE;
const RELEASE: &str = chart::RELEASE;
const DENIED: &str = "admission webhook \"validate.offloading-webhook.io\" denied the request: ";
const BAD_OPERATOR: &str = "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: Equals\n        values: [eu]\n";
const BAD_OPERATOR_SAYS: &str =
    "spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Equals\"";
const KINDS: [&str; 2] = ["validatingwebhookconfiguration", "mutatingwebhookconfiguration"];

/// Values for the bare control plane: no kubelet, so the Service is selectorless and the test
/// publishes its endpoints; looks every second.
fn values_file(dir: &Path, name: &str, extra: &str) -> String {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, format!("service:\n  selector: false\ncertificate:\n  reloadSeconds: 1\n{extra}"))
        .unwrap();
    path.to_str().unwrap().to_owned()
}

fn render(values: &str) -> String {
    chart::template_ok(&["-f", values])
}

/// The chart's Deployment arguments (without `serve` and the listener addresses, which `spawn`
/// gives), with `overrides` replacing the arguments that start with the same `--flag=`, and what a
/// pod would have: the kubeconfig, its namespace.
fn chart_args(cp: &ControlPlane, rendered: &str, namespace: &str, overrides: &[&str]) -> Vec<String> {
    let mut args = chart::replica_args(rendered);
    let mut all: Vec<String> = vec![
        format!("--kubeconfig={}", cp.kubeconfig.display()),
        format!("--namespace={namespace}"),
        "--shutdown-delay-seconds=0".into(),
    ];
    let flag = |a: &str| a.split('=').next().unwrap_or_default().to_owned();
    all.retain(|a| !overrides.iter().any(|o| flag(o) == flag(a)));
    all.extend(overrides.iter().map(|s| (*s).to_owned()));
    for o in &all {
        let flag = o.split('=').next().unwrap();
        args.retain(|a| a.split('=').next() != Some(flag));
    }
    args.extend(all);
    args
}

fn spawn(cp: &ControlPlane, addr: SocketAddr, args: &[String]) -> Replica {
    // The pair given here is never read: the chart's arguments say --certificate-source=managed.
    Replica::spawn_args(&cp.dir.path().join("logs"), &cp.dir.path().join("no-certs"), addr, args)
}

/// A kubeconfig that authenticates as the chart's ServiceAccount (a TokenRequest token), so that a
/// replica has exactly the chart's RBAC.
fn service_account_kubeconfig(cp: &ControlPlane, namespace: &str, account: &str) -> std::path::PathBuf {
    let token = cp.kubectl_ok(&["-n", namespace, "create", "token", account, "--duration=2h"]);
    let mut kc: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(&cp.kubeconfig).unwrap()).unwrap();
    kc["users"][0]["user"] = serde_norway::to_value(serde_json::json!({"token": token.trim()})).unwrap();
    let path = cp.dir.path().join(format!("kubeconfig-{namespace}-{account}"));
    std::fs::write(&path, serde_norway::to_string(&kc).unwrap()).unwrap();
    path
}

/// Publishes the selectorless Service's endpoints: these loopback addresses on `port`.
fn endpoints(cp: &ControlPlane, namespace: &str, service: &str, ips: &[&str], port: u16, ready: bool) {
    let addresses: Vec<String> =
        ips.iter().map(|ip| format!("- addresses: [\"{ip}\"]\n  conditions: {{ready: {ready}}}\n")).collect();
    let yaml = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-loopback\n  namespace: {namespace}\n  labels:\n    kubernetes.io/service-name: {service}\n    endpointslice.kubernetes.io/managed-by: e2e-install.offloading-webhook\naddressType: FQDN\nendpoints:\n{}ports:\n- name: webhook\n  port: {port}\n  protocol: TCP\n",
        addresses.concat()
    );
    let p = apply(cp, &yaml, &[]);
    assert!(p.ok, "{}", p.stderr);
}

/// A configuration as JSON, or `None` when it does not exist.
fn configuration(cp: &ControlPlane, kind: &str, name: &str) -> Option<serde_json::Value> {
    let p = cp.kubectl(&["get", kind, name, "-o", "json", "--show-managed-fields"]);
    p.ok.then(|| serde_json::from_str(&p.stdout).unwrap())
}

fn entries(cp: &ControlPlane, kind: &str, name: &str) -> usize {
    configuration(cp, kind, name).map_or(0, |c| c["webhooks"].as_array().map_or(0, Vec::len))
}

/// The caBundle of both configurations' entries (decoded), as one string per entry.
fn ca_bundles(cp: &ControlPlane, name: &str) -> Vec<String> {
    use base64::Engine as _;
    KINDS
        .iter()
        .filter_map(|k| configuration(cp, k, name))
        .flat_map(|c| c["webhooks"].as_array().cloned().unwrap_or_default())
        .map(|w| {
            let b = w["clientConfig"]["caBundle"].as_str().unwrap_or_default();
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
        })
        .collect()
}

fn certificates_in(pem: &str) -> usize {
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

fn resource_version(cp: &ControlPlane, args: &[&str]) -> String {
    let mut a = args.to_vec();
    a.extend(["-o", "jsonpath={.metadata.resourceVersion}"]);
    cp.kubectl_ok(&a)
}

/// Applies a broken NamespaceOffloading until the registration refuses it; returns the refusal.
fn refused(cp: &ControlPlane, ns: &str) -> String {
    let bad = nsof(ns, "offloading", BAD_OPERATOR);
    eventually(Duration::from_secs(60), "the registration to refuse a broken object", || {
        let p = apply(cp, &bad, &["--dry-run=server"]);
        (!p.ok && p.stderr.contains(DENIED)).then_some(p.stderr)
    })
}

/// A broken object is stored: nothing intercepts it (and it is deleted again).
fn admitted_unchecked(cp: &ControlPlane, ns: &str) {
    let p = apply(cp, &nsof(ns, "offloading", BAD_OPERATOR), &[]);
    assert!(p.ok, "a write was refused while no webhook should intercept it: {}", p.stderr);
    cp.kubectl_ok(&["-n", ns, "delete", "namespaceoffloading", "offloading", "--wait=false"]);
}

fn offloadings(client: kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("offloading.liqo.io", "v1alpha1", "NamespaceOffloading");
    Api::namespaced_with(client, ns, &ApiResource::from_gvk_with_plural(&gvk, "namespaceoffloadings"))
}

fn offloading(spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "offloading.liqo.io/v1alpha1",
        "kind": "NamespaceOffloading",
        "metadata": {"name": "offloading"},
        "spec": spec,
    }))
    .unwrap()
}

/// What the writers saw: each broken object must get our refusal, each good one be stored.
#[derive(Default)]
struct Tally {
    refused_by_us: AtomicU64,
    stored: AtomicU64,
    /// Anything else: a failed call to the webhook, a broken object let in (not reviewed), ...
    lost: Mutex<Vec<(Duration, String)>>,
}

impl Tally {
    fn lose(&self, t0: Instant, what: String) {
        self.lost.lock().unwrap().push((t0.elapsed(), what));
    }
}

/// Writes back to back into its namespace: a broken object (refused), a good one (stored), its
/// deletion; until `stop`.
async fn writer(client: kube::Client, ns: String, stop: Arc<AtomicBool>, t0: Instant, tally: Arc<Tally>) {
    let api = offloadings(client, &ns);
    let bad = offloading(serde_json::json!({"clusterSelector": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "topology.liqo.io/region", "operator": "Equals", "values": ["eu"]}
    ]}]}}));
    let good = offloading(serde_json::json!({"clusterSelector": {"nodeSelectorTerms": []}}));
    let pp = PostParams::default();
    while !stop.load(Ordering::Relaxed) {
        match api.create(&pp, &bad).await {
            Err(kube::Error::Api(s)) if s.message.contains(DENIED) => {
                tally.refused_by_us.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                tally.lose(t0, format!("{ns}: a broken object was stored: the webhook was not called"));
                let _ = api.delete("offloading", &DeleteParams::default()).await;
            }
            Err(e) => tally.lose(t0, format!("{ns}: a broken object: {e}")),
        }
        match api.create(&pp, &good).await {
            Ok(_) => {
                tally.stored.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tally.lose(t0, format!("{ns}: a good object: {e}")),
        }
        let _ = api.delete("offloading", &DeleteParams::default()).await;
    }
}

struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    writers: Vec<tokio::task::JoinHandle<()>>,
    t0: Instant,
}

async fn start_load(cp: &ControlPlane, namespaces: &[String]) -> Load {
    let (stop, tally, t0) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()), Instant::now());
    let mut writers = Vec::new();
    for ns in namespaces {
        let client = cp.client().await;
        writers.push(tokio::spawn(writer(client, ns.clone(), stop.clone(), t0, tally.clone())));
    }
    Load { stop, tally, writers, t0 }
}

impl Load {
    /// Stops the writers; panics with what was lost, if anything.
    async fn finish(self, what: &str) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.writers {
            w.await.unwrap();
        }
        let (refused, stored) =
            (self.tally.refused_by_us.load(Ordering::Relaxed), self.tally.stored.load(Ordering::Relaxed));
        let lost = self.tally.lost.lock().unwrap();
        println!(
            "{what}: {refused} broken objects refused by our webhook, {stored} good ones stored, {} lost, in {:.1} s",
            lost.len(),
            self.t0.elapsed().as_secs_f64()
        );
        assert!(
            lost.is_empty(),
            "{what}: {} writes did not get our verdict: {:#?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
        assert!(refused > 0 && stored > 0, "{what}: no review flowed ({refused} refused, {stored} stored)");
        (refused, stored)
    }
}

#[test]
fn helm_template_renders_the_same_bytes_every_time() {
    let dir = tempfile::tempdir().unwrap();
    for (name, extra) in [
        ("defaults", ""),
        ("cert-manager", "certificate:\n  source: certManager\n"),
        ("managed short", "certificate:\n  managed: {caValidity: 45s, certValidity: 12s}\n"),
    ] {
        let values = dir.path().join(format!("{}.yaml", name.replace(' ', "-")));
        std::fs::write(&values, extra).unwrap();
        let values = values.to_str().unwrap();
        let (a, b) = (render(values), render(values));
        assert_eq!(a, b, "{name}: two renders of the same values differ");
        // Nothing secret is rendered: the managed Secret is an empty shell the replicas fill in.
        assert!(!a.contains("PRIVATE KEY") && !a.contains("tls.key:"), "{name}: a key is rendered");
        let docs = chart::documents(&a);
        for kind in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
            let c = chart::find(&docs, kind, RELEASE).unwrap();
            assert!(c.get("webhooks").is_none(), "{name}: {kind} is rendered with entries: {c:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_install_never_ready_blocks_nothing_and_uninstall_leaves_nothing() {
    let cp = ControlPlane::start_with(&[("UP_APISERVER_ARGS", "--enable-aggregator-routing=true")]);
    install_crds(&cp);
    for ns in ["liqo", "team-a", "team-b"] {
        cp.kubectl_ok(&["create", "namespace", ns]);
    }
    let values = values_file(cp.dir.path(), "install", &format!("clusterId: {CLUSTER_ID}\n"));
    let kubeconfig = cp.kubeconfig.to_str().unwrap();
    let chart_dir = chart::chart_dir();
    let out = chart::helm_ok(&[
        "install",
        RELEASE,
        chart_dir.to_str().unwrap(),
        "--namespace",
        NS,
        "--create-namespace",
        "--kubeconfig",
        kubeconfig,
        "-f",
        &values,
    ]);
    assert!(out.contains("STATUS: deployed"), "{out}");

    // Installed, no replica at all: the configurations exist, intercept nothing.
    for kind in KINDS {
        assert!(configuration(&cp, kind, RELEASE).is_some(), "no {kind}");
        assert_eq!(entries(&cp, kind, RELEASE), 0, "{kind} has entries before any replica is ready");
    }
    admitted_unchecked(&cp, "team-a");

    // A replica that never becomes ready (told Liqo v1.x runs, whose VirtualNodes this cluster does
    // not serve): it keeps its certificate, registers nothing.
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let rendered = render(&values);
    let broken = spawn(&cp, addr, &chart_args(&cp, &rendered, NS, &["--liqo-api=v1"]));
    endpoints(&cp, NS, RELEASE, &["127.0.0.2"], port, false);
    eventually(Duration::from_secs(60), "the replica to fill in the chart's Secret", || {
        let p = cp.kubectl(&[
            "-n",
            NS,
            "get",
            "secret",
            &format!("{RELEASE}-certificate"),
            "-o",
            "jsonpath={.data.tls\\.crt}",
        ]);
        (p.ok && !p.stdout.is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    let readyz = broken.readyz().unwrap_or_default();
    assert!(readyz.contains(" 503 ") && readyz.contains("virtualnodes"), "{readyz}");
    for kind in KINDS {
        assert_eq!(entries(&cp, kind, RELEASE), 0, "a replica that is not ready registered {kind}");
    }
    admitted_unchecked(&cp, "team-a");
    drop(broken);

    // A replica that works: ready, its endpoint too, the webhooks registered.
    let mut replica = spawn(&cp, addr, &chart_args(&cp, &rendered, NS, &[]));
    replica.ready(Duration::from_secs(60)).await;
    endpoints(&cp, NS, RELEASE, &["127.0.0.2"], port, true);
    let stderr = refused(&cp, "team-b");
    assert!(stderr.contains(&format!("{DENIED}{BAD_OPERATOR_SAYS}")), "{stderr}");

    // What the replica registered is manifests/webhooks.yaml (`webhook-config --service`), with
    // its CA, owned by the release namespace, written by its own field manager.
    let ns_uid = cp.kubectl_ok(&["get", "namespace", NS, "-o", "jsonpath={.metadata.uid}"]);
    let manifest = std::fs::read_to_string(format!("{}/manifests/webhooks.yaml", support::ROOT)).unwrap();
    let wanted = chart::documents(&manifest);
    for (kind, want) in KINDS.iter().zip(&wanted) {
        let got = configuration(&cp, kind, RELEASE).unwrap();
        let mut hooks = got["webhooks"].clone();
        for h in hooks.as_array_mut().unwrap() {
            h["clientConfig"].as_object_mut().unwrap().remove("caBundle");
        }
        let want: serde_json::Value = serde_json::to_value(&want["webhooks"]).unwrap();
        assert_eq!(hooks, want, "{kind}: what the replica registered differs from manifests/webhooks.yaml");
        let owners = &got["metadata"]["ownerReferences"];
        assert_eq!(owners[0]["kind"], "Namespace", "{kind}: {owners}");
        assert_eq!(owners[0]["uid"].as_str(), Some(ns_uid.as_str()), "{kind}: {owners}");
        let managers: Vec<&str> = got["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["manager"].as_str())
            .collect();
        assert!(
            managers.contains(&"offloading-webhook") && managers.contains(&"helm"),
            "{kind}: {managers:?}"
        );
    }

    // Uninstall with the replica still running: nothing is left, and nothing comes back.
    let out = chart::helm_ok(&["uninstall", RELEASE, "--namespace", NS, "--kubeconfig", kubeconfig]);
    assert!(out.contains("uninstalled"), "{out}");
    for _ in 0..2 {
        for kind in KINDS {
            assert!(configuration(&cp, kind, RELEASE).is_none(), "{kind} left behind after uninstall");
        }
        assert!(
            !cp.kubectl(&["-n", NS, "get", "secret", &format!("{RELEASE}-certificate")]).ok,
            "Secret left behind"
        );
        // Several looks of the running replica (every second).
        std::thread::sleep(Duration::from_secs(4));
    }
    admitted_unchecked(&cp, "team-b");
    let log = replica.log_text();
    assert!(log.contains("they are never created here"), "{}", replica.log_tail(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gitops_sync_changes_nothing_and_loses_no_review() {
    let cp = ControlPlane::start_with(&[("UP_APISERVER_ARGS", "--enable-aggregator-routing=true")]);
    install_crds(&cp);
    let namespaces: Vec<String> = (0..4).map(|i| format!("load-{i}")).collect();
    for ns in namespaces.iter().map(String::as_str).chain([NS, "liqo"]) {
        cp.kubectl_ok(&["create", "namespace", ns]);
    }
    let values =
        values_file(cp.dir.path(), "gitops", &format!("clusterId: {CLUSTER_ID}\nreconcile: false\n"));
    // What Argo CD and Flux do: render without a cluster, apply server-side.
    let sync = |cp: &ControlPlane| {
        let rendered = render(&values);
        let p = cp.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(&rendered));
        assert!(p.ok, "kubectl apply --server-side: {}", p.stderr);
        rendered
    };
    let rendered = sync(&cp);

    let port = free_port();
    // With the chart's RBAC, nothing more: the Secret filled in, the registration kept.
    let kubeconfig = service_account_kubeconfig(&cp, NS, RELEASE);
    let args = chart_args(&cp, &rendered, NS, &[&format!("--kubeconfig={}", kubeconfig.display())]);
    let mut replicas: Vec<Replica> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|ip| spawn(&cp, format!("{ip}:{port}").parse().unwrap(), &args))
        .collect();
    for r in &mut replicas {
        r.ready(Duration::from_secs(60)).await;
    }
    endpoints(&cp, NS, RELEASE, &["127.0.0.2", "127.0.0.3"], port, true);
    refused(&cp, &namespaces[0]);
    for r in &replicas {
        assert!(!r.log_text().contains("forbidden"), "the chart's RBAC is not enough:\n{}", r.log_tail(20));
    }
    // Both replicas have looked at a registration in place.
    std::thread::sleep(Duration::from_secs(3));

    let bundles = ca_bundles(&cp, RELEASE);
    assert_eq!(bundles.len(), 2);
    let versions = |cp: &ControlPlane| {
        let mut v: Vec<String> = KINDS.iter().map(|k| resource_version(cp, &["get", k, RELEASE])).collect();
        v.push(resource_version(cp, &["-n", NS, "get", "secret", &format!("{RELEASE}-certificate")]));
        v.push(resource_version(cp, &["-n", NS, "get", "deployment", RELEASE]));
        v
    };
    let before = versions(&cp);

    let load = start_load(&cp, &namespaces).await;
    for round in 1..=2 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let again = sync(&cp);
        assert_eq!(again, rendered, "round {round}: the render changed");
        println!("GitOps sync {round}: applied");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    load.finish("GitOps syncs under load").await;

    assert_eq!(ca_bundles(&cp, RELEASE), bundles, "a sync changed the caBundle");
    assert_eq!(versions(&cp), before, "a sync changed the configurations, the Secret or the Deployment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_managed_certificate_rotates_under_load_with_no_failed_review() {
    let cp = ControlPlane::start_with(&[("UP_APISERVER_ARGS", "--enable-aggregator-routing=true")]);
    install_crds(&cp);
    let namespaces: Vec<String> = (0..4).map(|i| format!("load-{i}")).collect();
    for ns in namespaces.iter().map(String::as_str).chain([NS, "liqo"]) {
        cp.kubectl_ok(&["create", "namespace", ns]);
    }
    // A CA of 45 s (staged at 30 s, promoted at 40 s once the registrations trust it, gone from
    // the bundle at 45 s) and serving certificates of 12 s (renewed every 8 s).
    let values = values_file(
        cp.dir.path(),
        "rotation",
        &format!(
            "clusterId: {CLUSTER_ID}\nreconcile: false\ncertificate:\n  reloadSeconds: 1\n  managed: {{caValidity: 45s, certValidity: 12s}}\n"
        ),
    );
    let rendered = render(&values);
    let p = cp.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(&rendered));
    assert!(p.ok, "{}", p.stderr);
    let t0 = Instant::now();
    let port = free_port();
    let args = chart_args(&cp, &rendered, NS, &[]);
    let mut replicas: Vec<Replica> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|ip| spawn(&cp, format!("{ip}:{port}").parse().unwrap(), &args))
        .collect();
    for r in &mut replicas {
        r.ready(Duration::from_secs(60)).await;
    }
    endpoints(&cp, NS, RELEASE, &["127.0.0.2", "127.0.0.3"], port, true);
    refused(&cp, &namespaces[0]);

    // Under load until the first CA has expired and left the bundle, watching the Secret.
    let load = start_load(&cp, &namespaces).await;
    let secrets: Api<Secret> = Api::namespaced(cp.client().await, NS);
    let (mut serving, mut cas, mut largest_bundle) = (Vec::<Vec<u8>>::new(), Vec::<Vec<u8>>::new(), 0);
    let mut registered_sizes = Vec::new();
    let deadline = t0 + Duration::from_secs(70);
    loop {
        let s = secrets.get(&format!("{RELEASE}-certificate")).await.unwrap();
        let data = s.data.unwrap_or_default();
        let key = |k: &str| data.get(k).map(|b| b.0.clone()).unwrap_or_default();
        if !serving.contains(&key("tls.crt")) {
            serving.push(key("tls.crt"));
        }
        if !cas.contains(&key("ca.crt")) {
            cas.push(key("ca.crt"));
        }
        let bundle = certificates_in(&String::from_utf8_lossy(&key("ca-bundle.crt")));
        largest_bundle = largest_bundle.max(bundle);
        let registered: Vec<usize> = ca_bundles(&cp, RELEASE).iter().map(|b| certificates_in(b)).collect();
        if registered_sizes.last() != Some(&registered) {
            println!(
                "[{:>5.1}s] CAs: {} seen; the registrations trust {registered:?} CAs",
                t0.elapsed().as_secs_f64(),
                cas.len()
            );
            registered_sizes.push(registered.clone());
        }
        // Done once the second CA signs and the first has left what the registrations trust.
        if cas.len() >= 2 && bundle == 1 && registered == [1, 1] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no full CA rotation within 70 s: {} CAs, bundle {bundle}, registered {registered:?}\n{}",
            cas.len(),
            replicas[0].log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (refused_n, stored_n) = load.finish("certificate rotations under load").await;
    println!(
        "in {:.0} s: {} serving certificates, {} CAs, at most {largest_bundle} CAs trusted at once; {refused_n} + {stored_n} reviews answered",
        t0.elapsed().as_secs_f64(),
        serving.len(),
        cas.len()
    );
    assert!(serving.len() >= 4, "{} serving certificates", serving.len());
    assert_eq!(largest_bundle, 2, "the new CA was trusted beside the old one");
    assert!(registered_sizes.iter().any(|r| r == &[2, 2]), "{registered_sizes:?}");
    assert!(replicas.iter().any(|r| r.log_text().contains("PromoteCa")), "no replica logged the promotion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_cert_manager_the_replicas_publish_the_ca_of_the_mounted_secret() {
    let cp = ControlPlane::start_with(&[("UP_APISERVER_ARGS", "--enable-aggregator-routing=true")]);
    install_crds(&cp);
    cp.kubectl_ok(&["apply", "-f", &format!("{}/tests/fixtures/chart-optional-crds.yaml", support::ROOT)]);
    cp.kubectl_ok(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
    for ns in [NS, "liqo", "team-a"] {
        cp.kubectl_ok(&["create", "namespace", ns]);
    }
    let values = values_file(
        cp.dir.path(),
        "cert-manager",
        &format!(
            "clusterId: {CLUSTER_ID}\nreconcile: false\ncertificate:\n  source: certManager\n  reloadSeconds: 1\n"
        ),
    );
    let rendered = render(&values);
    let p = cp.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(&rendered));
    assert!(p.ok, "{}", p.stderr);
    // What cert-manager's self-signed Issuer writes into the mounted Secret: tls.crt, tls.key and
    // ca.crt (for a self-signed certificate, itself), here as the files the pod would see.
    let mounted = cp.dir.path().join("mounted");
    let svc = format!("{RELEASE}.{NS}.svc");
    support::serving::issue_certs(&mounted, &[&svc]);
    let port = free_port();
    let ca_file = format!("--ca-bundle-file={}", mounted.join("ca.crt").display());
    let mut args = chart_args(&cp, &rendered, NS, &[&ca_file]);
    assert!(args.contains(&"--certificate-source=files".to_string()), "{args:?}");
    // The serving pair's files are given where they are here.
    args.retain(|a| !a.starts_with("--tls-cert-file=") && !a.starts_with("--tls-key-file="));
    let addr = format!("127.0.0.2:{port}").parse().unwrap();
    let mut replica = Replica::spawn_args(&cp.dir.path().join("logs"), &mounted, addr, &args);
    replica.ready(Duration::from_secs(60)).await;
    endpoints(&cp, NS, RELEASE, &["127.0.0.2"], port, true);
    refused(&cp, "team-a");
    assert_eq!(ca_bundles(&cp, RELEASE).iter().map(|b| certificates_in(b)).collect::<Vec<_>>(), [1, 1]);

    // A renewal with a new CA (what a self-signed Issuer does): the replica serves the new pair and
    // the registrations trust the new CA beside the old one, which expires in its own time.
    std::fs::remove_dir_all(&mounted).unwrap();
    support::serving::issue_certs(&mounted, &[&svc]);
    eventually(Duration::from_secs(30), "the registrations to trust the new CA too", || {
        (ca_bundles(&cp, RELEASE).iter().map(|b| certificates_in(b)).collect::<Vec<_>>() == [2, 2])
            .then_some(())
    });
    eventually(Duration::from_secs(30), "the replica to serve the new pair", || {
        replica.log_text().contains("serving a new certificate").then_some(())
    });
    let stderr = refused(&cp, "team-a");
    assert!(stderr.contains(&format!("{DENIED}{BAD_OPERATOR_SAYS}")), "{stderr}");
    let versions = KINDS.map(|k| resource_version(&cp, &["get", k, RELEASE]));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        KINDS.map(|k| resource_version(&cp, &["get", k, RELEASE])),
        versions,
        "the registration does not settle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_the_release_namespace_deletes_the_registration() {
    let cp = ControlPlane::start_with(&[("UP_APISERVER_ARGS", "--enable-aggregator-routing=true")]);
    install_crds(&cp);
    for ns in ["liqo", "team-a"] {
        cp.kubectl_ok(&["create", "namespace", ns]);
    }
    // Two releases: the first's replica is killed (no chance to withdraw anything) before its
    // namespace is deleted, the second's keeps running while its namespace goes.
    for (release, kill) in [("first", true), ("second", false)] {
        cp.kubectl_ok(&["create", "namespace", release]);
        let values =
            values_file(cp.dir.path(), release, &format!("clusterId: {CLUSTER_ID}\nreconcile: false\n"));
        let chart_dir = chart::chart_dir();
        let rendered = chart::helm_ok(&[
            "template",
            release,
            chart_dir.to_str().unwrap(),
            "--namespace",
            release,
            "-f",
            &values,
        ]);
        let p = cp.kubectl_stdin(&["apply", "--server-side", "-n", release, "-f", "-"], Some(&rendered));
        assert!(p.ok, "{}", p.stderr);
        let name = format!("{release}-offloading-webhook");
        let port = free_port();
        let mut replica = spawn(
            &cp,
            format!("127.0.0.2:{port}").parse().unwrap(),
            &chart_args(&cp, &rendered, release, &[]),
        );
        replica.ready(Duration::from_secs(60)).await;
        endpoints(&cp, release, &name, &["127.0.0.2"], port, true);
        refused(&cp, "team-a");
        if kill {
            let _ = replica.child.kill();
            let _ = replica.child.wait();
        }
        let deleted = Instant::now();
        cp.kubectl_ok(&["delete", "namespace", release, "--wait=false"]);
        eventually(Duration::from_secs(90), "the registration to go with its namespace", || {
            KINDS.iter().all(|k| entries(&cp, k, &name) == 0).then_some(())
        });
        let gone = deleted.elapsed();
        eventually(Duration::from_secs(90), "the configurations to be deleted", || {
            KINDS.iter().all(|k| configuration(&cp, k, &name).is_none()).then_some(())
        });
        println!(
            "release {release} (replica {}): entries gone {:.1} s after the namespace was deleted, configurations {:.1} s",
            if kill { "killed" } else { "running" },
            gone.as_secs_f64(),
            deleted.elapsed().as_secs_f64()
        );
        admitted_unchecked(&cp, "team-a");
        if !kill {
            std::thread::sleep(Duration::from_secs(3));
            assert!(
                KINDS.iter().all(|k| configuration(&cp, k, &name).is_none()),
                "a running replica brought one back"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ipv6_loopback_url_is_answered_and_the_listeners_take_ipv4_too() {
    let cp = ControlPlane::start();
    install_crds(&cp);
    cp.kubectl_ok(&["create", "namespace", "team-a"]);
    let shells = "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: ipv6\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata:\n  name: ipv6\n";
    assert!(apply(&cp, shells, &[]).ok);
    let (port, probe, metrics) = (free_port(), free_port(), free_port());
    let log = std::fs::File::create(cp.dir.path().join("webhook-ipv6.log")).unwrap();
    // The default addresses, [::], on chosen ports.
    let mut child = std::process::Command::new(support::webhook_bin())
        .args(["serve", "--kubeconfig", cp.kubeconfig.to_str().unwrap(), "--cluster-id", CLUSTER_ID])
        .args(["--namespace", "default", "--reconcile=false", "--shutdown-delay-seconds=0"])
        .args(["--webhook-addr", &format!("[::]:{port}")])
        .args(["--probe-addr", &format!("[::]:{probe}"), "--metrics-addr", &format!("[::]:{metrics}")])
        .args(["--certificate-source=managed", "--certificate-secret=ipv6", "--cert-reload-seconds=1"])
        .args(["--webhook-configuration=ipv6", &format!("--webhook-url=https://[::1]:{port}")])
        .stderr(log)
        .spawn()
        .unwrap();
    // IPv4 clients on the [::] probe port (mapped addresses).
    eventually(Duration::from_secs(60), "/readyz over IPv4 on [::]", || {
        (http_get(probe, "/readyz").as_deref() == Some("200")).then_some(())
    });
    let v6 = std::net::TcpStream::connect(("::1", probe));
    assert!(v6.is_ok(), "the probe port takes no IPv6 client: {v6:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the webhook port takes no IPv4 client"
    );
    let stderr = refused(&cp, "team-a");
    assert!(stderr.contains(&format!("{DENIED}{BAD_OPERATOR_SAYS}")), "{stderr}");
    let url = cp.kubectl_ok(&[
        "get",
        "validatingwebhookconfiguration",
        "ipv6",
        "-o",
        "jsonpath={.webhooks[0].clientConfig.url}",
    ]);
    assert_eq!(url, format!("https://[::1]:{port}/validate/namespace-offloading"));
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn during_a_rollout_the_newest_settings_win_without_a_tug_of_war() {
    let cp = ControlPlane::start();
    install_crds(&cp);
    cp.kubectl_ok(&["create", "namespace", "team-a"]);
    let shells = "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: rollout\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata:\n  name: rollout\n";
    assert!(apply(&cp, shells, &[]).ok);
    let replica = |timeout: &str| {
        let port = free_port();
        let args: Vec<String> = vec![
            format!("--kubeconfig={}", cp.kubeconfig.display()),
            format!("--cluster-id={CLUSTER_ID}"),
            "--namespace=default".into(),
            "--reconcile=false".into(),
            "--shutdown-delay-seconds=0".into(),
            "--cert-reload-seconds=1".into(),
            "--certificate-source=managed".into(),
            "--certificate-secret=rollout".into(),
            "--webhook-configuration=rollout".into(),
            format!("--webhook-url=https://127.0.0.1:{port}"),
            format!("--webhook-timeout-seconds={timeout}"),
        ];
        spawn(&cp, format!("127.0.0.1:{port}").parse().unwrap(), &args)
    };
    let timeouts = |cp: &ControlPlane| {
        cp.kubectl_ok(&[
            "get",
            "validatingwebhookconfiguration,mutatingwebhookconfiguration",
            "rollout",
            "-o",
            "jsonpath={.items[*].webhooks[0].timeoutSeconds}",
        ])
    };
    let mut old = replica("5");
    old.ready(Duration::from_secs(60)).await;
    support::wait_eq(Duration::from_secs(30), "the old replica's settings", "5 5", || timeouts(&cp));
    // The new version starts beside the old one: its settings are written once, and stay.
    let mut new = replica("10");
    new.ready(Duration::from_secs(60)).await;
    support::wait_eq(Duration::from_secs(30), "the new replica's settings", "10 10", || timeouts(&cp));
    let versions = KINDS.map(|k| resource_version(&cp, &["get", k, "rollout"]));
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(timeouts(&cp), "10 10", "the old replica wrote its settings back");
    assert_eq!(
        KINDS.map(|k| resource_version(&cp, &["get", k, "rollout"])),
        versions,
        "the replicas take turns"
    );
    refused(&cp, "team-a");
}

/// The total of `offloading_webhook_admission_reviews_total` a replica counted.
fn reviews(metrics_port: u16) -> u64 {
    let body = support::http_get_full(metrics_port, "/metrics").unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("offloading_webhook_admission_reviews_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn match_conditions_keep_metadata_only_updates_away_and_let_dry_runs_through() {
    const NAMESPACES: usize = 10;
    let cp = ControlPlane::start();
    install_crds(&cp);
    let shells = "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: counted\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata:\n  name: counted\n";
    assert!(apply(&cp, shells, &[]).ok);
    let good = "  clusterSelector:\n    nodeSelectorTerms: []\n";
    let mut per_namespace = Vec::new();
    for (round, match_conditions) in [(0, true), (1, false)] {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // The reconcile loop runs (Liqo v0.3 API): it adds its finalizer and writes the status.
        let args: Vec<String> = [
            format!("--kubeconfig={}", cp.kubeconfig.display()),
            format!("--cluster-id={CLUSTER_ID}"),
            "--namespace=default".into(),
            "--shutdown-delay-seconds=0".into(),
            "--cert-reload-seconds=1".into(),
            "--certificate-source=managed".into(),
            "--certificate-secret=counted".into(),
            "--webhook-configuration=counted".into(),
            format!("--webhook-url=https://127.0.0.1:{port}"),
            format!("--match-conditions={match_conditions}"),
        ]
        .into();
        let mut r = spawn(&cp, addr, &args);
        r.ready(Duration::from_secs(60)).await;
        let has_conditions = |cp: &ControlPlane| {
            let c = configuration(cp, "validatingwebhookconfiguration", "counted").unwrap_or_default();
            c["webhooks"][0]["clientConfig"]["url"].as_str()
                == Some(&format!("https://127.0.0.1:{port}/validate/namespace-offloading"))
                && c["webhooks"][0]["matchConditions"].is_array() == match_conditions
        };
        eventually(Duration::from_secs(30), "this replica's registration", || {
            has_conditions(&cp).then_some(())
        });
        let base = reviews(r.metrics_port);
        let names: Vec<String> = (0..NAMESPACES).map(|i| format!("r{round}-ns-{i}")).collect();
        for ns in &names {
            cp.kubectl_ok(&["create", "namespace", ns]);
            let p = apply(&cp, &nsof(ns, "offloading", good), &[]);
            assert!(p.ok, "{}", p.stderr);
        }
        // Converged: the finalizer added and the status written for every namespace.
        for ns in &names {
            eventually(Duration::from_secs(60), "the reconcile loop to converge", || {
                let p = cp.kubectl(&[
                    "-n",
                    ns,
                    "get",
                    "namespaceoffloading",
                    "offloading",
                    "-o",
                    "jsonpath={.metadata.finalizers} {.status.offloadingPhase}",
                ]);
                (p.ok
                    && p.stdout.contains("namespaceoffloading-controller.liqo.io/finalizer")
                    && p.stdout.ends_with("NoClusterSelected"))
                .then_some(())
            });
        }
        std::thread::sleep(Duration::from_secs(2));
        let counted = reviews(r.metrics_port) - base;
        let per = counted as f64 / NAMESPACES as f64;
        println!(
            "matchConditions {match_conditions}: {counted} reviews for {NAMESPACES} converged namespaces ({per:.1} per namespace)"
        );
        per_namespace.push(per);

        if match_conditions {
            assert_eq!(counted, 2 * NAMESPACES as u64, "only the CREATEs (validate + mutate) are reviewed");
            let ns = &names[0];
            let before = reviews(r.metrics_port);
            cp.kubectl_ok(&["-n", ns, "label", "namespaceoffloading", "offloading", "team=a"]);
            cp.kubectl_ok(&["-n", ns, "annotate", "namespaceoffloading", "offloading", "note=x"]);
            std::thread::sleep(Duration::from_millis(500));
            assert_eq!(reviews(r.metrics_port), before, "metadata-only updates reached the webhooks");
            // An unchanged object through a server-side dry run: the user asked for the verdict.
            let p = apply(&cp, &nsof(ns, "offloading", good), &["--server-side", "--dry-run=server"]);
            assert!(p.ok, "{}", p.stderr);
            eventually(Duration::from_secs(5), "the dry run's reviews", || {
                (reviews(r.metrics_port) == before + 2).then_some(())
            });
            // A spec change: both webhooks; a broken one is refused.
            let p = apply(
                &cp,
                &nsof(
                    ns,
                    "offloading",
                    "  podOffloadingStrategy: Remote\n  clusterSelector:\n    nodeSelectorTerms: []\n",
                ),
                &[],
            );
            assert!(p.ok, "{}", p.stderr);
            let p = apply(&cp, &nsof(ns, "offloading", BAD_OPERATOR), &[]);
            assert!(p.stderr.contains(DENIED), "{}", p.stderr);
        } else {
            assert!(
                counted > 2 * NAMESPACES as u64,
                "without matchConditions the loop's writes are reviewed too: {counted}"
            );
        }
        r.sigterm();
        let _ = r.exited(Duration::from_secs(30)).await;
    }
    println!(
        "reviews per converged namespace: {:.1} with matchConditions, {:.1} without",
        per_namespace[0], per_namespace[1]
    );
}

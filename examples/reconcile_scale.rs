//! Scale benchmark of the reconcile loop (run by `scripts/scale-bench.sh` against a real control
//! plane with `offloading-webhook serve` running): N namespaces offloaded to M virtual nodes.
//! Reports the time to converge, the writes the loop issued, and the writes it issued during a
//! quiet minute afterwards (target 0). The baseline, measured in the same run, is the rate at which
//! this client's own plain creates went through the same API server.
//! With MARKS_FILE, appends "WINDOW UNIX_SECONDS" lines (setup, converge, quiet, after) for
//! `scripts/audit_writes.py`, which counts the writes of each window from the API server's audit log.
//! With `liqo` last, the same workload the Liqo v1.x way, for Liqo v1.2's own controllers
//! (`tests/go/liqo`): VirtualNodes (with their Nodes) instead of Nodes alone, and v1beta1 objects with
//! `clusterSelector: {nodeSelectorTerms: []}`, which Liqo needs where we accept no selector.
//! Usage: reconcile_scale KUBECONFIG METRICS_PORT [NAMESPACES] [NODES] [MARKS_FILE] [ours|liqo]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};

/// Our own count of writes, by resource, from `offloading_webhook_reconcile_writes_total`.
async fn writes(port: u16) -> anyhow::Result<BTreeMap<String, f64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    let mut out = BTreeMap::new();
    for line in body.lines().filter(|l| l.starts_with("offloading_webhook_reconcile_writes_total")) {
        let resource = line.split('"').nth(1).unwrap_or("?").to_owned();
        out.insert(resource, line.rsplit(' ').next().unwrap_or("0").parse()?);
    }
    Ok(out)
}

fn total(w: &BTreeMap<String, f64>) -> f64 {
    w.iter().filter(|(r, _)| r.as_str() != "leases").map(|(_, v)| v).sum()
}

fn diff(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    a.iter()
        .map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

fn mark(file: Option<&String>, name: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let Some(file) = file else { return Ok(()) };
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(file)?;
    writeln!(f, "{name} {t:.3}")?;
    Ok(())
}

/// Whose controllers run: the API generation of the objects and how a remote cluster appears.
#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    Ours,
    Liqo,
}

impl Flavor {
    fn resource(self, kind: &str, plural: &str) -> ApiResource {
        let (group, version) = match (self, kind) {
            (Flavor::Ours, "NamespaceMap") => ("virtualkubelet.liqo.io", "v1alpha1"),
            (Flavor::Ours, _) => ("offloading.liqo.io", "v1alpha1"),
            (Flavor::Liqo, _) => ("offloading.liqo.io", "v1beta1"),
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }
}

fn dynamic(ar: &ApiResource, v: Value) -> anyhow::Result<DynamicObject> {
    let mut obj: DynamicObject = serde_json::from_value(v)?;
    obj.types = Some(kube::core::TypeMeta { api_version: ar.api_version.clone(), kind: ar.kind.clone() });
    Ok(obj)
}

/// A remote cluster `c{i}`: a virtual Node (ours), or Liqo v1.x's tenant namespace, VirtualNode and
/// Node (as tests/support/liqo.rs stands one up).
async fn remote_cluster(client: &Client, flavor: Flavor, i: usize) -> anyhow::Result<()> {
    let id = format!("c{i}");
    if flavor == Flavor::Liqo {
        let tenant = format!("liqo-tenant-{id}");
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": tenant, "labels": {
            "liqo.io/tenant-namespace": "true", "liqo.io/remote-cluster-id": id}}}))?;
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
        let ar = flavor.resource("VirtualNode", "virtualnodes");
        let vn = dynamic(
            &ar,
            json!({"metadata": {"name": id, "namespace": tenant, "labels": {"liqo.io/remote-cluster-id": id}},
            "spec": {"clusterID": id, "createNode": true, "labels": {}, "template": {
                "metadata": {"name": format!("vk-{id}"), "namespace": tenant},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app.kubernetes.io/name": format!("vk-{id}")}},
                    "template": {"metadata": {"labels": {"app.kubernetes.io/name": format!("vk-{id}")}},
                        "spec": {"containers": [{"name": "virtual-kubelet", "image": "ghcr.io/liqotech/virtual-kubelet:v1.2.0"}]}}}}}}),
        )?;
        Api::<DynamicObject>::namespaced_with(client.clone(), &tenant, &ar)
            .create(&PostParams::default(), &vn)
            .await?;
    }
    let name = if flavor == Flavor::Liqo { id.clone() } else { format!("liqo-{id}") };
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": {
        "liqo.io/type": "virtual-node", "liqo.io/remote-cluster-id": id}}}))?;
    Api::<Node>::all(client.clone()).create(&PostParams::default(), &node).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 3,
        "usage: reconcile_scale KUBECONFIG METRICS_PORT [NAMESPACES] [NODES] [MARKS_FILE] [ours|liqo]"
    );
    let port: u16 = args[2].parse()?;
    let n: usize = args.get(3).map_or(Ok(500), |s| s.parse())?;
    let m: usize = args.get(4).map_or(Ok(10), |s| s.parse())?;
    let marks = args.get(5).filter(|s| !s.is_empty());
    let flavor = if args.get(6).map(String::as_str) == Some("liqo") { Flavor::Liqo } else { Flavor::Ours };
    mark(marks, "setup")?;
    let kc = Kubeconfig::read_from(&args[1])?;
    let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    cfg.read_timeout = Some(Duration::from_secs(60));
    let client = Client::try_from(cfg)?;

    for i in 0..m {
        remote_cluster(&client, flavor, i).await?;
    }
    let map_ar = flavor.resource("NamespaceMap", "namespacemaps");
    let off_ar = flavor.resource("NamespaceOffloading", "namespaceoffloadings");
    let maps: Api<DynamicObject> = Api::all_with(client.clone(), &map_ar);
    while maps.list(&ListParams::default()).await?.items.len() < m {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let writes_before = writes(port).await.unwrap_or_default();

    // The baseline: this client's own creates (a namespace and its NamespaceOffloading each).
    mark(marks, "converge")?;
    let started = Instant::now();
    let spec = match flavor {
        Flavor::Ours => json!({"podOffloadingStrategy": "LocalAndRemote"}),
        Flavor::Liqo => {
            json!({"podOffloadingStrategy": "LocalAndRemote", "clusterSelector": {"nodeSelectorTerms": []}})
        }
    };
    let results: Vec<anyhow::Result<()>> = stream::iter(0..n)
        .map(|i| {
            let (client, off_ar, spec) = (client.clone(), off_ar.clone(), spec.clone());
            async move {
                let name = format!("scale-{i:04}");
                let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
                Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
                let o = dynamic(&off_ar, json!({"metadata": {"name": "offloading"}, "spec": spec}))?;
                Api::<DynamicObject>::namespaced_with(client, &name, &off_ar)
                    .create(&PostParams::default(), &o)
                    .await?;
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r?;
    }
    let create_secs = started.elapsed().as_secs_f64();

    let offloadings: Api<DynamicObject> = Api::all_with(client.clone(), &off_ar);
    let mut entries = 0;
    loop {
        let all_maps = maps.list(&ListParams::default()).await?.items;
        let was = entries;
        entries = all_maps
            .iter()
            .map(|m| m.data["spec"]["desiredMapping"].as_object().map_or(0, |d| d.len()))
            .sum::<usize>();
        drop(all_maps);
        if entries != was {
            println!(
                "  {:6.1} s: {entries} of {} desiredMapping entries",
                started.elapsed().as_secs_f64(),
                n * m
            );
        }
        // The NamespaceOffloadings are listed only once every entry is there (lists cost the API
        // server too); polled every half second.
        let mut phases: BTreeMap<String, usize> = BTreeMap::new();
        let mut done = false;
        if entries == n * m {
            let objs = offloadings.list(&ListParams::default()).await?.items;
            let mut observed = 0;
            for o in &objs {
                let status = &o.data["status"];
                let p = status["offloadingPhase"].as_str().unwrap_or("none");
                *phases.entry(p.to_owned()).or_default() += 1;
                if status["observedGeneration"].as_i64() == o.metadata.generation {
                    observed += 1;
                }
            }
            done = phases.get("InProgress") == Some(&n) && observed == n;
        }
        if done {
            break;
        }
        // SCALE_CAP_SECONDS bounds a round that would take too long (Liqo's at scale): what it
        // reached by then is printed, as a bound on the ratio.
        let cap = std::env::var("SCALE_CAP_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1200);
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(cap),
            "not converged after {cap} s: {entries} of {} entries, phases {phases:?}",
            n * m
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converge_secs = started.elapsed().as_secs_f64();
    mark(marks, "quiet")?;
    let writes_converged = writes(port).await.unwrap_or_default();
    let by_resource = diff(&writes_converged, &writes_before);
    let writes_converge = total(&by_resource);
    // SCALE_QUICK=1 (trying a change, not for figures) skips the quiet minute.
    if std::env::var("SCALE_QUICK").as_deref() != Ok("1") {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    mark(marks, "after")?;
    let quiet = diff(&writes(port).await.unwrap_or_default(), &writes_converged);
    let writes_quiet = total(&quiet);

    let client_writes = (2 * n) as f64;
    let baseline_rate = client_writes / create_secs;
    println!("namespaces x virtual nodes:        {n} x {m} ({} desiredMapping entries)", n * m);
    println!(
        "baseline: client creates:          {client_writes:.0} writes in {create_secs:.1} s = {baseline_rate:.0} writes/s"
    );
    println!("converged (from first create):     {converge_secs:.1} s");
    if flavor == Flavor::Ours {
        println!(
            "reconcile writes to converge:      {writes_converge:.0} ({:.2} per namespace) by our counter: {by_resource:?}",
            writes_converge / n as f64
        );
        println!(
            "reconcile writes in a quiet minute: {writes_quiet:.0} (target 0) by our counter: {quiet:?}"
        );
    }
    Ok(())
}

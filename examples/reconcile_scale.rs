//! Scale benchmark of the reconcile loop (run by `scripts/scale-bench.sh` against a real control
//! plane with `offloading-webhook serve` running): N namespaces offloaded to M virtual nodes.
//! Reports the time to converge, the writes the loop issued, and the writes it issued during a
//! quiet minute afterwards (target 0). The baseline, measured in the same run, is the rate at which
//! this client's own plain creates went through the same API server.
//! With MARKS_FILE, appends "WINDOW UNIX_SECONDS" lines (setup, converge, quiet, after) for
//! `scripts/audit_writes.py`, which counts the writes of each window from the API server's audit log.
//! Usage: reconcile_scale KUBECONFIG METRICS_PORT [NAMESPACES] [NODES] [MARKS_FILE]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use offloading_webhook::crd::{NamespaceMap, NamespaceOffloading, OffloadingPhase};
use serde_json::json;

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 3, "usage: reconcile_scale KUBECONFIG METRICS_PORT [NAMESPACES] [NODES]");
    let port: u16 = args[2].parse()?;
    let n: usize = args.get(3).map_or(Ok(500), |s| s.parse())?;
    let m: usize = args.get(4).map_or(Ok(10), |s| s.parse())?;
    let marks = args.get(5);
    mark(marks, "setup")?;
    let kc = Kubeconfig::read_from(&args[1])?;
    let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    cfg.read_timeout = Some(Duration::from_secs(60));
    let client = Client::try_from(cfg)?;

    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..m {
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": format!("liqo-c{i}"), "labels": {
            "liqo.io/type": "virtual-node", "liqo.io/remote-cluster-id": format!("c{i}")}}}))?;
        nodes.create(&PostParams::default(), &node).await?;
    }
    let maps: Api<NamespaceMap> = Api::all(client.clone());
    while maps.list(&ListParams::default()).await?.items.len() < m {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let writes_before = writes(port).await?;

    // The baseline: this client's own creates (a namespace and its NamespaceOffloading each).
    mark(marks, "converge")?;
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let name = format!("scale-{i:04}");
                let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
                Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
                let o: NamespaceOffloading = serde_json::from_value(json!({
                    "apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
                    "metadata": {"name": "offloading"}, "spec": {"podOffloadingStrategy": "LocalAndRemote"}}))?;
                Api::<NamespaceOffloading>::namespaced(client, &name).create(&PostParams::default(), &o).await?;
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

    let offloadings: Api<NamespaceOffloading> = Api::all(client.clone());
    loop {
        let all_maps = maps.list(&ListParams::default()).await?.items;
        let entries: usize = all_maps.iter().map(|m| m.spec.desired_mapping.len()).sum();
        // The NamespaceOffloadings are listed only once every entry is there (lists cost the API
        // server too); polled every half second.
        let mut phases: BTreeMap<String, usize> = BTreeMap::new();
        let mut done = false;
        if entries == n * m {
            let objs = offloadings.list(&ListParams::default()).await?.items;
            for o in &objs {
                let p = o
                    .status
                    .as_ref()
                    .and_then(|s| s.offloading_phase.as_ref())
                    .map_or("none", OffloadingPhase::as_str);
                *phases.entry(p.to_owned()).or_default() += 1;
            }
            done = phases.get("InProgress") == Some(&n)
                && objs
                    .iter()
                    .all(|o| o.status.as_ref().and_then(|s| s.observed_generation) == o.metadata.generation);
        }
        if done {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "not converged after 900 s: {entries} entries, {phases:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converge_secs = started.elapsed().as_secs_f64();
    mark(marks, "quiet")?;
    let writes_converged = writes(port).await?;
    let by_resource = diff(&writes_converged, &writes_before);
    let writes_converge = total(&by_resource);
    tokio::time::sleep(Duration::from_secs(60)).await;
    mark(marks, "after")?;
    let quiet = diff(&writes(port).await?, &writes_converged);
    let writes_quiet = total(&quiet);

    let client_writes = (2 * n) as f64;
    let baseline_rate = client_writes / create_secs;
    let loop_rate = writes_converge / converge_secs;
    println!("namespaces x virtual nodes:        {n} x {m} ({} desiredMapping entries)", n * m);
    println!(
        "baseline: client creates:          {client_writes:.0} writes in {create_secs:.1} s = {baseline_rate:.0} writes/s"
    );
    println!("converged (from first create):     {converge_secs:.1} s");
    println!(
        "reconcile writes to converge:      {writes_converge:.0} ({:.2} per namespace) by our counter: {by_resource:?}",
        writes_converge / n as f64
    );
    println!(
        "reconcile write rate:              {loop_rate:.0} writes/s = {:.2} x the baseline rate",
        loop_rate / baseline_rate
    );
    println!("reconcile writes in a quiet minute: {writes_quiet:.0} (target 0) by our counter: {quiet:?}");
    Ok(())
}

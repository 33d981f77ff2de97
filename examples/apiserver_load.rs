//! The webhook under the API server's load, beside Liqo v1.2's own NamespaceOffloading webhook
//! (run by `scripts/apiserver-bench.sh`, which starts the control plane and both webhooks and
//! registers them). Drives NamespaceOffloading writes through the API server from CONCURRENCY
//! workers, one namespace each, every cycle: a create, a label patch, a valid spec patch, a patch
//! to a malformed selector (which ours denies and Liqo's lets through), and a delete (which no
//! webhook sees). Every create and update is reviewed by our mutating and validating webhooks
//! and by Liqo's validating webhook.
//!
//! Per round it reads, before and after: each process's CPU time (/proc/PID/stat utime + stime),
//! our review counter (`offloading_webhook_admission_reviews_total`), and the API server's own
//! `apiserver_admission_webhook_admission_duration_seconds` by webhook name (Liqo's webhook serves
//! no metrics, so its reviews are counted there; ours are counted both ways and must agree).
//! Prints per round and the medians: reviews, CPU µs per review, the API server's admission
//! latency per webhook (mean from the histogram's sum, p50/p99 as the bucket that holds them: the
//! buckets are 5, 25, 100 ms ...), then peak RSS (VmHWM).
//!
//! OURS_METRICS_PORT 0: in our place runs the bare TLS baseline of `scripts/bench.sh`, which has no
//! metrics and denies nothing (its reviews are counted by the API server alone).
//!
//! Usage: apiserver_load KUBECONFIG OURS_PID OURS_METRICS_PORT LIQO_PID APISERVER_PID
//!        [ROUNDS] [CYCLES] [CONCURRENCY]   (default 3 rounds of 1000 cycles, 16 workers)
//! Env: BENCH_OURS_VALIDATE, BENCH_OURS_MUTATE, BENCH_LIQO (the webhook names as registered).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};

const HIST: &str = "apiserver_admission_webhook_admission_duration_seconds";

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    anyhow::ensure!(f.len() > 13, "unexpected /proc/{pid}/stat: {stat}");
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    // SAFETY: sysconf only reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// Peak RSS (VmHWM) of a process, in MiB.
fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM for {pid}"))?;
    Ok(kb.parse::<f64>()? / 1024.0)
}

/// One label's value in a Prometheus text-format label set.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}

/// A histogram summed over all label sets but the webhook name.
#[derive(Default, Clone, Debug)]
struct Hist {
    count: f64,
    sum: f64,
    /// (upper bound, cumulative count)
    buckets: BTreeMap<u64, f64>,
}

impl Hist {
    fn minus(&self, before: &Hist) -> Hist {
        Hist {
            count: self.count - before.count,
            sum: self.sum - before.sum,
            buckets: self
                .buckets
                .iter()
                .map(|(le, c)| (*le, c - before.buckets.get(le).copied().unwrap_or(0.0)))
                .collect(),
        }
    }

    /// The upper bound of the bucket that holds quantile `q`, in ms (None: past the last bound).
    fn quantile_bound_ms(&self, q: f64) -> Option<f64> {
        let want = q * self.count;
        self.buckets
            .iter()
            .find(|(_, c)| **c >= want)
            .filter(|(le, _)| **le != u64::MAX)
            .map(|(le, _)| *le as f64 / 1000.0)
    }

    /// The share of calls that took at most `ms` (a bucket bound).
    fn share_within_ms(&self, ms: f64) -> f64 {
        let le = (ms * 1000.0).round() as u64;
        if self.count > 0.0 {
            self.buckets.get(&le).copied().unwrap_or(f64::NAN) / self.count
        } else {
            f64::NAN
        }
    }

    fn mean_ms(&self) -> f64 {
        if self.count > 0.0 { self.sum / self.count * 1000.0 } else { f64::NAN }
    }
}

/// The API server's webhook admission histograms, by webhook name. Bounds are kept in µs.
fn apiserver_hists(text: &str) -> BTreeMap<String, Hist> {
    let mut out: BTreeMap<String, Hist> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(HIST)) {
        let (Some(open), Some(close)) = (line.find('{'), line.rfind('}')) else { continue };
        let (series, labels) = (&line[..open], &line[open + 1..close]);
        let Some(value) = line[close + 1..].split_whitespace().next().and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        let Some(name) = label(labels, "name") else { continue };
        let h = out.entry(name.to_owned()).or_default();
        match &series[HIST.len()..] {
            "_count" => h.count += value,
            "_sum" => h.sum += value,
            "_bucket" => {
                let le = match label(labels, "le") {
                    Some("+Inf") | None => u64::MAX,
                    Some(le) => (le.parse::<f64>().unwrap_or(f64::INFINITY) * 1e6).round() as u64,
                };
                *h.buckets.entry(le).or_default() += value;
            }
            _ => {}
        }
    }
    out
}

/// Our own count of reviews answered, by endpoint.
async fn our_reviews(port: u16) -> anyhow::Result<BTreeMap<String, f64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    let mut out = BTreeMap::new();
    for line in body.lines().filter(|l| l.starts_with("offloading_webhook_admission_reviews_total{")) {
        let endpoint = label(line, "endpoint").unwrap_or("?").to_owned();
        let v: f64 = line.rsplit(' ').next().unwrap_or("0").parse()?;
        *out.entry(endpoint).or_default() += v;
    }
    Ok(out)
}

struct Pids {
    ours: u32,
    liqo: u32,
    apiserver: u32,
}

/// Everything read before and after a round.
struct Snapshot {
    cpu: [f64; 3],
    ours: BTreeMap<String, f64>,
    api: BTreeMap<String, Hist>,
}

async fn snapshot(client: &Client, pids: &Pids, metrics_port: u16) -> anyhow::Result<Snapshot> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    Ok(Snapshot {
        cpu: [cpu_seconds(pids.ours)?, cpu_seconds(pids.liqo)?, cpu_seconds(pids.apiserver)?],
        ours: if metrics_port == 0 { BTreeMap::new() } else { our_reviews(metrics_port).await? },
        api: apiserver_hists(&text),
    })
}

/// What the workers did.
#[derive(Default)]
struct Load {
    writes: usize,
    denied: usize,
    failed: Vec<String>,
    latencies_us: Vec<u64>,
}

fn region_term(op: &str, values: &[&str]) -> Value {
    json!({"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "topology.liqo.io/region", "operator": op, "values": values}]}]})
}

/// One worker's cycles in its own namespace.
async fn worker(client: Client, ar: ApiResource, ns: String, cycles: usize, denies: bool) -> Load {
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ar);
    let mut load = Load::default();
    let merge = PatchParams::default();
    for i in 0..cycles {
        let mut obj: DynamicObject = match serde_json::from_value(json!({
            "metadata": {"name": "offloading", "labels": {"bench.example.com/cycle": i.to_string()}},
            "spec": {"namespaceMappingStrategy": "DefaultName", "podOffloadingStrategy": "LocalAndRemote",
                "clusterSelector": region_term("In", &["eu-west"])}
        })) {
            Ok(o) => o,
            Err(e) => {
                load.failed.push(e.to_string());
                return load;
            }
        };
        obj.types = Some(kube::core::TypeMeta { api_version: ar.api_version.clone(), kind: ar.kind.clone() });
        // (what, expected to be denied by our webhook, the write)
        let steps: [(&str, bool); 4] =
            [("create", false), ("label", false), ("spec", false), ("bad spec", true)];
        for (what, deny) in steps {
            let t = Instant::now();
            let r = match what {
                "create" => api.create(&PostParams::default(), &obj).await.map(drop),
                "label" => api
                    .patch(
                        "offloading",
                        &merge,
                        &Patch::Merge(json!({"metadata": {"labels": {"bench.example.com/step": "label"}}})),
                    )
                    .await
                    .map(drop),
                "spec" => api
                    .patch(
                        "offloading",
                        &merge,
                        &Patch::Merge(
                            json!({"spec": {"clusterSelector": region_term("In", &["eu-west", "us-east"])}}),
                        ),
                    )
                    .await
                    .map(drop),
                _ => api
                    .patch(
                        "offloading",
                        &merge,
                        &Patch::Merge(
                            json!({"spec": {"clusterSelector": region_term("Equals", &["eu-west"])}}),
                        ),
                    )
                    .await
                    .map(drop),
            };
            load.latencies_us.push(t.elapsed().as_micros() as u64);
            load.writes += 1;
            match (r, deny && denies) {
                (Ok(()), false) => {}
                (Err(kube::Error::Api(s)), true) if s.message.contains("denied the request") => {
                    load.denied += 1
                }
                (Ok(()), true) => load.failed.push(format!("{ns}: the {what} was not denied")),
                (Err(e), _) => load.failed.push(format!("{ns}: {what}: {}", truncate(&e.to_string()))),
            }
        }
        if let Err(e) = api.delete("offloading", &DeleteParams::default()).await {
            load.failed.push(format!("{ns}: delete: {e}"));
        }
        // A failure usually repeats every cycle: stop this worker early.
        if load.failed.len() > 3 {
            break;
        }
    }
    load
}

/// `denies`: whether the webhook in our place denies the malformed selector (not the baseline).
async fn run_load(
    client: &Client,
    ar: &ApiResource,
    workers: usize,
    cycles: usize,
    denies: bool,
) -> (Load, f64) {
    let started = Instant::now();
    let loads: Vec<Load> = stream::iter(0..workers)
        .map(|w| {
            let per = cycles / workers + usize::from(w < cycles % workers);
            worker(client.clone(), ar.clone(), format!("bench-{w:02}"), per, denies)
        })
        .buffer_unordered(workers)
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let mut all = Load::default();
    for l in loads {
        all.writes += l.writes;
        all.denied += l.denied;
        all.failed.extend(l.failed);
        all.latencies_us.extend(l.latencies_us);
    }
    all.latencies_us.sort_unstable();
    (all, secs)
}

fn pct(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)] as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[(v.len() - 1) / 2] }
}

/// A latency quantile as the bucket bound that holds it.
fn bound(ms: Option<f64>) -> String {
    match ms {
        Some(ms) if ms.is_finite() => format!("<= {ms} ms"),
        _ => "> 25 s".to_owned(),
    }
}

/// One webhook's figures for one round.
struct Row {
    reviews: f64,
    cpu_s: f64,
    hist: Hist,
}

impl Row {
    fn cpu_us_per_review(&self) -> f64 {
        self.cpu_s * 1e6 / self.reviews
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 6,
        "usage: apiserver_load KUBECONFIG OURS_PID OURS_METRICS_PORT LIQO_PID APISERVER_PID [ROUNDS] [CYCLES] [CONCURRENCY]"
    );
    let pids = Pids { ours: args[2].parse()?, liqo: args[4].parse()?, apiserver: args[5].parse()? };
    let metrics_port: u16 = args[3].parse()?;
    let rounds: usize = args.get(6).map_or(Ok(3), |s| s.parse())?;
    let cycles: usize = args.get(7).map_or(Ok(1000), |s| s.parse())?;
    let workers: usize = args.get(8).map_or(Ok(16), |s| s.parse())?;
    let names = [
        env_or("BENCH_OURS_VALIDATE", "validate.offloading-webhook.io"),
        env_or("BENCH_OURS_MUTATE", "mutate.offloading-webhook.io"),
        env_or("BENCH_LIQO", "liqo.nsoff.validate.liqo.io"),
    ];

    let kc = Kubeconfig::read_from(&args[1])?;
    let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    cfg.read_timeout = Some(Duration::from_secs(60));
    let client = Client::try_from(cfg)?;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("offloading.liqo.io", "v1beta1", "NamespaceOffloading"),
        "namespaceoffloadings",
    );
    for w in 0..workers {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": format!("bench-{w:02}")}}))?;
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
    }

    // Warm-up, until the API server calls all three webhooks (it picks up registrations a moment
    // after they are written).
    let warm_started = Instant::now();
    loop {
        let before = snapshot(&client, &pids, metrics_port).await?;
        let (load, _) = run_load(&client, &ar, workers, workers * 2, metrics_port != 0).await;
        let after = snapshot(&client, &pids, metrics_port).await?;
        let seen = |n: &String| {
            after.api.get(n).map_or(0.0, |h| h.count) - before.api.get(n).map_or(0.0, |h| h.count)
                >= load.writes as f64
        };
        if load.failed.is_empty() && names.iter().all(seen) {
            break;
        }
        anyhow::ensure!(
            warm_started.elapsed() < Duration::from_secs(60),
            "after 60 s of warm-up the API server does not call all of {names:?} (it calls {:?}), or writes fail: {:?}",
            after.api.keys().collect::<Vec<_>>(),
            &load.failed[..load.failed.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Idle CPU of each webhook (informers, certificate polling) over 5 s.
    let idle0 = [cpu_seconds(pids.ours)?, cpu_seconds(pids.liqo)?];
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = [
        (cpu_seconds(pids.ours)? - idle0[0]) / 5.0 * 1000.0,
        (cpu_seconds(pids.liqo)? - idle0[1]) / 5.0 * 1000.0,
    ];
    println!("idle CPU over 5 s: ours {:.1} ms/s, Liqo's {:.1} ms/s", idle[0], idle[1]);

    println!(
        "{rounds} rounds of {cycles} cycles (create, label patch, spec patch, denied spec patch, delete), {workers} workers"
    );
    let mut per_round: Vec<[Row; 3]> = Vec::new();
    let mut failed = 0;
    for round in 1..=rounds {
        let before = snapshot(&client, &pids, metrics_port).await?;
        let (load, secs) = run_load(&client, &ar, workers, cycles, metrics_port != 0).await;
        let after = snapshot(&client, &pids, metrics_port).await?;
        let hist = |n: &String| {
            after
                .api
                .get(n)
                .cloned()
                .unwrap_or_default()
                .minus(&before.api.get(n).cloned().unwrap_or_default())
        };
        let (hv, hm, hl) = (hist(&names[0]), hist(&names[1]), hist(&names[2]));
        let ours_counted: f64 = if metrics_port == 0 {
            hv.count + hm.count
        } else {
            after.ours.values().sum::<f64>() - before.ours.values().sum::<f64>()
        };
        let mut ours_hist = hv.clone();
        ours_hist.count += hm.count;
        ours_hist.sum += hm.sum;
        for (le, c) in &hm.buckets {
            *ours_hist.buckets.entry(*le).or_default() += c;
        }
        let cpu = |i: usize| after.cpu[i] - before.cpu[i];
        println!(
            "round {round}: {} writes ({} denied by ours as expected) in {secs:.1} s = {:.0} writes/s, write latency p50 {:.1} ms p99 {:.1} ms, {} failed",
            load.writes,
            load.denied,
            load.writes as f64 / secs,
            pct(&load.latencies_us, 0.5),
            pct(&load.latencies_us, 0.99),
            load.failed.len()
        );
        for f in load.failed.iter().take(5) {
            println!("  failed: {f}");
        }
        failed += load.failed.len();
        println!(
            "  reviews: ours {ours_counted:.0} by its counter, {:.0} validate + {:.0} mutate by the API server; Liqo's {:.0} by the API server",
            hv.count, hm.count, hl.count
        );
        if (ours_counted - hv.count - hm.count).abs() > 0.5 {
            println!("  WARNING: our counter and the API server's disagree");
        }
        println!(
            "  kube-apiserver CPU: {:.1} s ({:.0} µs per write)",
            cpu(2),
            cpu(2) * 1e6 / load.writes as f64
        );
        let rows = [
            Row { reviews: ours_counted, cpu_s: cpu(0), hist: ours_hist },
            Row { reviews: hl.count, cpu_s: cpu(1), hist: hl },
        ];
        for (who, r) in ["ours", "Liqo's"].iter().zip(&rows) {
            println!(
                "  {who:6}: {:.0} reviews, CPU {:.2} s = {:.1} µs per review; admission latency (API server) mean {:.2} ms, {:.0} % within 5 ms, p50 {}, p99 {}",
                r.reviews,
                r.cpu_s,
                r.cpu_us_per_review(),
                r.hist.mean_ms(),
                r.hist.share_within_ms(5.0) * 100.0,
                bound(r.hist.quantile_bound_ms(0.5)),
                bound(r.hist.quantile_bound_ms(0.99))
            );
        }
        println!(
            "  per admitted-or-denied write: ours {:.1} µs (2 reviews), Liqo's {:.1} µs (1 review)",
            rows[0].cpu_s * 1e6 / load.writes as f64,
            rows[1].cpu_s * 1e6 / load.writes as f64
        );
        println!(
            "  ratio ours/Liqo CPU per review: {:.2} (target <= 0.33); per write: {:.2}",
            rows[0].cpu_us_per_review() / rows[1].cpu_us_per_review(),
            rows[0].cpu_s / rows[1].cpu_s
        );
        let [a, b] = rows;
        // The third row holds the round's writes and kube-apiserver's CPU.
        per_round.push([a, b, Row { reviews: load.writes as f64, cpu_s: cpu(2), hist: Hist::default() }]);
    }

    let med = |i: usize, f: &dyn Fn(&Row) -> f64| median(per_round.iter().map(|r| f(&r[i])).collect());
    println!();
    println!("medians of {rounds} rounds:");
    println!(
        "{:8} {:>9} {:>14} {:>13} {:>18} {:>9} {:>10} {:>10} {:>10}",
        "webhook",
        "reviews",
        "CPU µs/review",
        "CPU µs/write",
        "API server: mean",
        "<= 5 ms",
        "p50",
        "p99",
        "peak RSS"
    );
    let writes = med(2, &|r| r.reviews);
    for (i, (who, pid)) in [("ours", pids.ours), ("Liqo's", pids.liqo)].into_iter().enumerate() {
        println!(
            "{who:8} {:>9.0} {:>14.1} {:>13.1} {:>15.2} ms {:>7.0} % {:>10} {:>10} {:>6.1} MiB",
            med(i, &|r| r.reviews),
            med(i, &|r| r.cpu_us_per_review()),
            med(i, &|r| r.cpu_s * 1e6 / writes),
            med(i, &|r| r.hist.mean_ms()),
            med(i, &|r| r.hist.share_within_ms(5.0) * 100.0),
            bound(Some(med(i, &|r| r.hist.quantile_bound_ms(0.5).unwrap_or(f64::INFINITY)))),
            bound(Some(med(i, &|r| r.hist.quantile_bound_ms(0.99).unwrap_or(f64::INFINITY)))),
            peak_rss_mib(pid)?
        );
    }
    let ratios: Vec<f64> =
        per_round.iter().map(|r| r[0].cpu_us_per_review() / r[1].cpu_us_per_review()).collect();
    println!(
        "ratio ours/Liqo CPU per review: median {:.2}, rounds {:?} (target <= 0.33)",
        median(ratios.clone()),
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>()
    );
    println!(
        "ratio ours/Liqo CPU per write (ours answers two reviews per write): median {:.2}",
        median(per_round.iter().map(|r| r[0].cpu_s / r[1].cpu_s).collect())
    );
    println!("kube-apiserver peak RSS: {:.0} MiB", peak_rss_mib(pids.apiserver)?);
    anyhow::ensure!(failed == 0, "{failed} writes failed");
    Ok(())
}

/// An error, short enough to print a few of.
fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

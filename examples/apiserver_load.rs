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
//!
//! BENCH_MODES (some of none, policy, webhook, both; LIQO_PID unused): instead, our ways to admit a
//! NamespaceOffloading against none at all, each round every mode in turn on the same cycles, the
//! registrations applied and deleted from BENCH_WEBHOOKS_YAML (`webhook-config`) and
//! BENCH_POLICY_YAML (`policy`). Per write: kube-apiserver's CPU and ours, the client's latency
//! (creates, all writes), the API server's mean webhook call
//! (`apiserver_admission_webhook_admission_duration_seconds`), policy check
//! (`apiserver_validating_admission_policy_check_duration_seconds`) and admission steps
//! (`apiserver_admission_step_admission_duration_seconds`); ratios to none in the same round.

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
    fn plus(mut self, other: &Hist) -> Hist {
        self.count += other.count;
        self.sum += other.sum;
        for (le, c) in &other.buckets {
            *self.buckets.entry(*le).or_default() += c;
        }
        self
    }

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

/// The API server's webhook admission histograms, by webhook name.
fn apiserver_hists(text: &str) -> BTreeMap<String, Hist> {
    histograms(text, HIST, "name", |_| true)
}

/// One of the API server's histograms by the value of the label `by` (summed over the other
/// labels), of the series `keep` accepts (given their label sets). Bounds are kept in µs.
fn histograms(text: &str, metric: &str, by: &str, keep: impl Fn(&str) -> bool) -> BTreeMap<String, Hist> {
    let mut out: BTreeMap<String, Hist> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(metric)) {
        let (Some(open), Some(close)) = (line.find('{'), line.rfind('}')) else { continue };
        let (series, labels) = (&line[..open], &line[open + 1..close]);
        let Some(value) = line[close + 1..].split_whitespace().next().and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        // `by` empty: every series in one.
        let Some(name) = (if by.is_empty() { Some("") } else { label(labels, by) }) else { continue };
        if !keep(labels) {
            continue;
        }
        let h = out.entry(name.to_owned()).or_default();
        match &series[metric.len()..] {
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
    /// The creates' alone (each cycle's first write).
    create_latencies_us: Vec<u64>,
}

fn region_term(op: &str, values: &[&str]) -> Value {
    json!({"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "topology.liqo.io/region", "operator": op, "values": values}]}]})
}

/// BENCH_VALID_ONLY=1: each cycle's last patch is a valid one, so that nothing is denied.
fn valid_only() -> bool {
    std::env::var("BENCH_VALID_ONLY").is_ok_and(|v| v == "1")
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
        let last = if valid_only() { ("spec back", false) } else { ("bad spec", true) };
        let steps: [(&str, bool); 4] = [("create", false), ("label", false), ("spec", false), last];
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
                "spec back" => api
                    .patch(
                        "offloading",
                        &merge,
                        &Patch::Merge(json!({"spec": {"clusterSelector": region_term("In", &["eu-west"])}})),
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
            let took = t.elapsed().as_micros() as u64;
            load.latencies_us.push(took);
            if what == "create" {
                load.create_latencies_us.push(took);
            }
            load.writes += 1;
            match (r, deny && denies) {
                (Ok(()), false) => {}
                // A webhook "denied the request", a ValidatingAdmissionPolicy's binding "denied request".
                (Err(kube::Error::Api(s)), true)
                    if s.message.contains("denied the request") || s.message.contains("denied request") =>
                {
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

/// `denies`: whether what is registered denies the malformed selector (not the baseline, nor
/// nothing at all).
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
        all.create_latencies_us.extend(l.create_latencies_us);
    }
    all.latencies_us.sort_unstable();
    all.create_latencies_us.sort_unstable();
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
    if let Some(modes) = std::env::var("BENCH_MODES").ok().filter(|m| !m.trim().is_empty()) {
        let modes = modes
            .split([',', ' '])
            .filter(|m| !m.is_empty())
            .map(Mode::parse)
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!modes.is_empty(), "BENCH_MODES names no mode");
        return compare_modes(&client, &ar, &pids, &modes, rounds, cycles, workers).await;
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
        let ours_hist = hv.clone().plus(&hm);
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

// BENCH_MODES: the cost of each way to admit a NamespaceOffloading, against no admission at all, in
// one run. Per round every mode in turn (the order rotated each round), each switched to by
// applying or deleting the registrations, then measured on the same cycles as above.

const POLICY_HIST: &str = "apiserver_validating_admission_policy_check_duration_seconds";
const STEP_HIST: &str = "apiserver_admission_step_admission_duration_seconds";
const PLUGIN_HIST: &str = "apiserver_admission_controller_admission_duration_seconds";

/// What a NamespaceOffloading write goes through.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Nothing of ours registered: the floor.
    None,
    /// The ValidatingAdmissionPolicy and its bindings alone (`offloading-webhook policy`).
    Policy,
    /// The validating and mutating webhooks, as deployed (`webhook-config`).
    Webhook,
    /// The policy and the webhooks.
    Both,
}

impl Mode {
    fn parse(s: &str) -> anyhow::Result<Mode> {
        Ok(match s {
            "none" => Mode::None,
            "policy" => Mode::Policy,
            "webhook" => Mode::Webhook,
            "both" => Mode::Both,
            _ => anyhow::bail!("BENCH_MODES: no mode {s:?} (none, policy, webhook, both)"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Policy => "policy",
            Mode::Webhook => "webhook",
            Mode::Both => "both",
        }
    }

    fn webhooks(self) -> bool {
        matches!(self, Mode::Webhook | Mode::Both)
    }

    fn policy(self) -> bool {
        matches!(self, Mode::Policy | Mode::Both)
    }
}

/// Registrations, as (resource, object), in the order they are applied.
type Objects = Vec<(ApiResource, DynamicObject)>;

/// The objects of a multi-document YAML file, their resources found by discovery.
async fn objects(client: &Client, path: &str) -> anyhow::Result<Objects> {
    use serde::Deserialize;
    let yaml = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&yaml) {
        let v = Value::deserialize(doc)?;
        if v.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(v)?;
        let types = obj.types.clone().ok_or_else(|| anyhow::anyhow!("{path}: an object without kind"))?;
        let (ar, _) = kube::discovery::pinned_kind(client, &GroupVersionKind::try_from(&types)?).await?;
        out.push((ar, obj));
    }
    Ok(out)
}

/// Applies (server-side) or deletes the objects.
async fn set(client: &Client, objects: &Objects, present: bool) -> anyhow::Result<()> {
    let apply = PatchParams::apply("apiserver-bench").force();
    // Deleted in reverse: the bindings before their policy.
    let ordered: Vec<_> = if present { objects.iter().collect() } else { objects.iter().rev().collect() };
    for (ar, obj) in ordered {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
        let name = obj.metadata.name.as_deref().unwrap_or_default();
        if present {
            api.patch(name, &apply, &Patch::Apply(obj)).await?;
        } else {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// The API server's admission histograms.
struct Admission {
    webhooks: BTreeMap<String, Hist>,
    /// Policy checks, all policies. The API server times a binding's check when it denies (or
    /// fails to evaluate), not when it admits.
    policy: Hist,
    /// The ValidatingAdmissionPolicy plugin, every create and update (whether a policy matches).
    policy_plugin: Hist,
    /// The admission steps (mutating and validating, every plugin) of creates and updates.
    steps: Hist,
}

async fn admission(client: &Client) -> anyhow::Result<Admission> {
    let text = client.request_text(http::Request::get("/metrics").body(Vec::new())?).await?;
    let write = |labels: &str| matches!(label(labels, "operation"), Some("CREATE" | "UPDATE"));
    let sum = |m: BTreeMap<String, Hist>| m.values().fold(Hist::default(), |a, h| a.plus(h));
    Ok(Admission {
        webhooks: apiserver_hists(&text),
        policy: sum(histograms(&text, POLICY_HIST, "", |_| true)),
        steps: sum(histograms(&text, STEP_HIST, "", write)),
        policy_plugin: sum(histograms(&text, PLUGIN_HIST, "", |l| {
            write(l) && label(l, "name") == Some("ValidatingAdmissionPolicy")
        })),
    })
}

/// The calls the API server made between two readings: (validating webhook, mutating webhook,
/// policy checks), each as a histogram.
fn calls(before: &Admission, after: &Admission, names: &[String; 2]) -> [Hist; 3] {
    let webhook = |n: &String| {
        after
            .webhooks
            .get(n)
            .cloned()
            .unwrap_or_default()
            .minus(&before.webhooks.get(n).cloned().unwrap_or_default())
    };
    [webhook(&names[0]), webhook(&names[1]), after.policy.minus(&before.policy)]
}

/// Writes until what the API server calls is what `mode` registers: it picks up a registration,
/// or its removal, a moment after it is written.
async fn settle(
    client: &Client,
    ar: &ApiResource,
    mode: Mode,
    names: &[String; 2],
    workers: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let before = admission(client).await?;
        let (load, _) = run_load(client, ar, workers, workers * 2, mode != Mode::None && !valid_only()).await;
        let after = admission(client).await?;
        // Every create reaches both webhooks when they are registered (the updates that change no
        // spec skip them by their matchConditions); the policy, which runs before the validating
        // webhook, denies every malformed selector when it is (and only its denials are timed).
        // Without denials (BENCH_VALID_ONLY) nothing of the policy is timed: a dry run it would deny
        // tells instead.
        let creates = load.create_latencies_us.len() as f64;
        let counts = calls(&before, &after, names).map(|h| h.count);
        let least = [creates, creates, load.denied as f64];
        let want = [mode.webhooks(), mode.webhooks(), mode.policy()];
        let matches = (0..3).all(|i| if want[i] { counts[i] >= least[i] } else { counts[i] == 0.0 })
            && policy_denies(client, ar).await? == mode.policy();
        if load.failed.is_empty() && matches {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(90),
            "after 90 s the API server's calls do not match mode {}: (validating webhook, mutating webhook, policy checks) {counts:?} for {creates} creates; failed: {:?}",
            mode.name(),
            &load.failed[..load.failed.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether a ValidatingAdmissionPolicy denies a malformed selector (a server-side dry run).
async fn policy_denies(client: &Client, ar: &ApiResource) -> anyhow::Result<bool> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "bench-00", ar);
    let mut obj: DynamicObject = serde_json::from_value(json!({
        "metadata": {"name": "probe"},
        "spec": {"clusterSelector": region_term("Equals", &["eu-west"])}
    }))?;
    obj.types = Some(kube::core::TypeMeta { api_version: ar.api_version.clone(), kind: ar.kind.clone() });
    Ok(match api.create(&PostParams { dry_run: true, ..Default::default() }, &obj).await {
        Err(kube::Error::Api(s)) => s.message.contains("ValidatingAdmissionPolicy"),
        _ => false,
    })
}

/// One mode's figures in one round.
struct ModeRound {
    writes: f64,
    denied: usize,
    secs: f64,
    apiserver_cpu_s: f64,
    ours_cpu_s: f64,
    create_latencies_us: Vec<u64>,
    latencies_us: Vec<u64>,
    /// Validating webhook, mutating webhook, policy checks.
    calls: [Hist; 3],
    /// The admission steps' time, summed, and the creates and updates that took them.
    steps: Hist,
    /// The ValidatingAdmissionPolicy plugin's time, per create and update.
    policy_plugin: Hist,
}

impl ModeRound {
    fn apiserver_us(&self) -> f64 {
        self.apiserver_cpu_s * 1e6 / self.writes
    }

    fn ours_us(&self) -> f64 {
        self.ours_cpu_s * 1e6 / self.writes
    }

    /// Admission per write (all steps), in ms. Each write takes one mutating and one validating
    /// step.
    fn admission_ms(&self) -> f64 {
        if self.steps.count > 0.0 { self.steps.sum / (self.steps.count / 2.0) * 1000.0 } else { f64::NAN }
    }
}

/// A mean in ms with its call count, or "-" when nothing was called.
fn mean_of(h: &Hist) -> String {
    if h.count > 0.0 { format!("{:.2} ms x {:.0}", h.mean_ms(), h.count) } else { "-".to_owned() }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn compare_modes(
    client: &Client,
    ar: &ApiResource,
    pids: &Pids,
    modes: &[Mode],
    rounds: usize,
    cycles: usize,
    workers: usize,
) -> anyhow::Result<()> {
    let webhooks = objects(client, &env_or("BENCH_WEBHOOKS_YAML", "")).await?;
    let policy = objects(client, &env_or("BENCH_POLICY_YAML", "")).await?;
    let names = [
        env_or("BENCH_OURS_VALIDATE", "validate.offloading-webhook.io"),
        env_or("BENCH_OURS_MUTATE", "mutate.offloading-webhook.io"),
    ];
    // The floor every ratio is taken against: no admission, else the first mode named.
    let base = modes.iter().position(|m| *m == Mode::None).unwrap_or(0);
    println!(
        "modes {:?}, {rounds} rounds of {cycles} cycles (create, label patch, spec patch, denied spec patch, delete), {workers} workers; ratios against {} in the same round",
        modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
        modes[base].name()
    );
    let mut results: Vec<Vec<ModeRound>> = modes.iter().map(|_| Vec::new()).collect();
    let mut failed = 0;
    for round in 0..rounds {
        // Each round starts one mode later, so that no mode always follows the same one.
        for i in (0..modes.len()).map(|i| (i + round) % modes.len()) {
            let mode = modes[i];
            set(client, &webhooks, mode.webhooks()).await?;
            set(client, &policy, mode.policy()).await?;
            settle(client, ar, mode, &names, workers).await?;
            let (a0, cpu0) =
                (admission(client).await?, [cpu_seconds(pids.apiserver)?, cpu_seconds(pids.ours)?]);
            let (load, secs) =
                run_load(client, ar, workers, cycles, mode != Mode::None && !valid_only()).await;
            let (a1, cpu1) =
                (admission(client).await?, [cpu_seconds(pids.apiserver)?, cpu_seconds(pids.ours)?]);
            let r = ModeRound {
                writes: load.writes as f64,
                denied: load.denied,
                secs,
                apiserver_cpu_s: cpu1[0] - cpu0[0],
                ours_cpu_s: cpu1[1] - cpu0[1],
                calls: calls(&a0, &a1, &names),
                steps: a1.steps.minus(&a0.steps),
                policy_plugin: a1.policy_plugin.minus(&a0.policy_plugin),
                create_latencies_us: load.create_latencies_us,
                latencies_us: load.latencies_us,
            };
            println!(
                "round {}, {:7}: {} writes ({} denied) in {:.1} s = {:.0}/s, {} failed; kube-apiserver CPU {:.0} µs/write, serve {:.0} µs/write; latency create p50 {:.1} p99 {:.1} ms, all writes p50 {:.1} p99 {:.1} ms; API server: validating webhook {}, mutating {}, policy denials {}, policy plugin {:.2} ms/write, admission {:.2} ms/write; load average {}",
                round + 1,
                mode.name(),
                r.writes,
                r.denied,
                r.secs,
                r.writes / r.secs,
                load.failed.len(),
                r.apiserver_us(),
                r.ours_us(),
                pct(&r.create_latencies_us, 0.5),
                pct(&r.create_latencies_us, 0.99),
                pct(&r.latencies_us, 0.5),
                pct(&r.latencies_us, 0.99),
                mean_of(&r.calls[0]),
                mean_of(&r.calls[1]),
                mean_of(&r.calls[2]),
                r.policy_plugin.mean_ms(),
                r.admission_ms(),
                loadavg()
            );
            for f in load.failed.iter().take(5) {
                println!("  failed: {f}");
            }
            failed += load.failed.len();
            results[i].push(r);
        }
    }
    // Leave what the script registered before: the webhooks alone.
    set(client, &policy, false).await?;
    set(client, &webhooks, true).await?;

    let med = |i: usize, f: &dyn Fn(&ModeRound) -> f64| median(results[i].iter().map(f).collect());
    // The median of the per-round ratios to the floor of the same round.
    let ratio = |i: usize, f: &dyn Fn(&ModeRound) -> f64| {
        median(results[i].iter().zip(&results[base]).map(|(r, b)| f(r) / f(b)).collect())
    };
    let both = |r: &ModeRound| r.apiserver_us() + r.ours_us();
    let p = |q: f64, creates: bool| {
        move |r: &ModeRound| pct(if creates { &r.create_latencies_us } else { &r.latencies_us }, q)
    };
    println!();
    println!(
        "medians of {rounds} rounds; ratios: the median of the same-round ratios to {}",
        modes[base].name()
    );
    println!(
        "{:8} {:>8} {:>20} {:>14} {:>22} {:>22} {:>22}",
        "mode",
        "writes/s",
        "apiserver CPU/write",
        "serve CPU/wr",
        "apiserver+serve/write",
        "create p50 / p99",
        "all writes p50 / p99"
    );
    for (i, mode) in modes.iter().enumerate() {
        println!(
            "{:8} {:>8.0} {:>10.0} µs x{:<5.2} {:>11.0} µs {:>12.0} µs x{:<5.2} {:>22} {:>14} x{:<5.2}",
            mode.name(),
            med(i, &|r| r.writes / r.secs),
            med(i, &ModeRound::apiserver_us),
            ratio(i, &ModeRound::apiserver_us),
            med(i, &ModeRound::ours_us),
            med(i, &both),
            ratio(i, &both),
            format!("{:.1} / {:.1} ms", med(i, &p(0.5, true)), med(i, &p(0.99, true))),
            format!("{:.1} / {:.1} ms", med(i, &p(0.5, false)), med(i, &p(0.99, false))),
            ratio(i, &p(0.5, false))
        );
    }
    println!();
    println!("the API server's admission metrics, means (medians of {rounds} rounds):");
    println!(
        "{:8} {:>18} {:>18} {:>18} {:>22} {:>22}",
        "mode",
        "validating webhook",
        "mutating webhook",
        "policy denial",
        "policy plugin/write",
        "all admission/write"
    );
    for (i, mode) in modes.iter().enumerate() {
        let call = |k: usize| {
            let m = med(i, &|r| if r.calls[k].count > 0.0 { r.calls[k].mean_ms() } else { f64::NAN });
            if m.is_nan() { "-".to_owned() } else { format!("{m:.2} ms") }
        };
        println!(
            "{:8} {:>18} {:>18} {:>18} {:>19.2} ms {:>19.2} ms",
            mode.name(),
            call(0),
            call(1),
            call(2),
            med(i, &|r| r.policy_plugin.mean_ms()),
            med(i, &ModeRound::admission_ms)
        );
    }
    // What the policy's checks ended in (an evaluation error would show here, in error_type).
    let text = client.request_text(http::Request::get("/metrics").body(Vec::new())?).await?;
    for l in text.lines().filter(|l| l.starts_with("apiserver_validating_admission_policy_check_total")) {
        println!("{l}");
    }
    println!(
        "kube-apiserver peak RSS: {:.0} MiB, serve {:.1} MiB",
        peak_rss_mib(pids.apiserver)?,
        peak_rss_mib(pids.ours)?
    );
    anyhow::ensure!(failed == 0, "{failed} writes failed");
    Ok(())
}

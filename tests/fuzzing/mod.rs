//! Fuzzing on stable Rust: two targets that take bytes, and a driver that feeds them from a fixed
//! seed, in process.
//!
//! - [`ReviewTarget`]: the whole review path. The bytes choose a review (generated from a model of
//!   the AdmissionReview, or a fixture of tests/fixtures mutated as JSON or as bytes, or raw bytes),
//!   an endpoint, and a way in: the axum `router()` (through `tower::ServiceExt::oneshot`) or
//!   `review::answer` with a generated cluster context (virtual nodes included). Every answer is
//!   checked by [`check::answer`].
//! - [`selector_and_names`]: the name rules against Kubernetes' own regular expressions, the remote
//!   name each strategy derives, and the selector's validation and matching.
//!
//! Input `i` of a run is made from `(seed, i)` alone, so any failure is replayed by its index or
//! from the file the driver saves. Shared by tests/fuzz.rs (the brief run of the test suite) and
//! examples/fuzz.rs (the long run of scripts/fuzz.sh).
#![allow(dead_code)]

pub mod check;
pub mod make;
pub mod reference;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use offloading_webhook::admission::review::{self, Endpoint, Enforcement};
use offloading_webhook::admission::{AdmissionState, router};
use offloading_webhook::cluster::ClusterView;
use offloading_webhook::metrics::Metrics;
use offloading_webhook::offloading::rules::Generation;
use offloading_webhook::offloading::{Context, VirtualNode, VirtualNodes};
use serde_json::{Value, json};
use tower::ServiceExt;

use check::{Failure, Verdict};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Which target a run feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Review,
    SelectorAndNames,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Self::Review => "review",
            Self::SelectorAndNames => "selector",
        }
    }
}

/// One review input: what the bytes chose.
#[derive(Debug, Clone)]
pub struct ReviewInput {
    pub body: Vec<u8>,
    pub endpoint: Endpoint,
    pub via: Via,
}

#[derive(Debug, Clone)]
pub enum Via {
    /// The axum router of one of [`ReviewTarget`]'s states.
    Router(usize),
    /// `review::answer` with this context.
    Direct { cluster_id: Option<String>, nodes: Option<VirtualNodes>, enforcement: Enforcement },
}

/// What one input gave.
#[derive(Debug, Default)]
pub struct Outcome {
    pub verdict: Option<Verdict>,
    pub input_len: usize,
    pub answer_len: usize,
    /// The answer's first KiB, for a replay.
    pub answer_head: String,
    pub failures: Vec<Failure>,
}

/// The review path, with what each input reuses: a runtime, the routers, the fixtures.
pub struct ReviewTarget {
    rt: tokio::runtime::Runtime,
    routers: Vec<Router>,
    seeds: Vec<Vec<u8>>,
}

impl ReviewTarget {
    pub fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread tokio runtime");
        let state = |enforcement, id: Option<&str>| AdmissionState {
            enforcement,
            cluster: ClusterView::fixed(id.map(str::to_owned)),
            metrics: Metrics::new(),
        };
        let routers = [
            state(Enforcement::Deny, Some(make::CLUSTER_IDS[0])),
            state(Enforcement::Warn, Some(make::CLUSTER_IDS[0])),
            state(Enforcement::Deny, None),
            state(Enforcement::Deny, Some("c1")),
        ]
        .into_iter()
        .map(router)
        .collect();
        let mut seeds: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(FIXTURES)
            .expect("tests/fixtures")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| {
                let bytes = std::fs::read(&p).expect("a fixture");
                (p, bytes)
            })
            .collect();
        // Directory order differs between machines; the inputs must not.
        seeds.sort();
        Self { rt, routers, seeds: seeds.into_iter().map(|(_, b)| b).collect() }
    }

    /// The input the bytes make.
    pub fn input(&self, data: &[u8]) -> arbitrary::Result<ReviewInput> {
        let mut u = Unstructured::new(data);
        let endpoint = if u.arbitrary::<bool>()? { Endpoint::Validate } else { Endpoint::Mutate };
        let via = if u.ratio(1u8, 2)? {
            Via::Router(u.choose_index(self.routers.len())?)
        } else {
            let cluster_id = match u.int_in_range(0u8..=3)? {
                0 => None,
                _ => Some(make::string(&mut u, make::CLUSTER_IDS)?),
            };
            let nodes = match u.int_in_range(0u8..=3)? {
                0 => None,
                _ => Some(virtual_nodes(&mut u)?.into()),
            };
            let enforcement = if u.ratio(1u8, 4)? { Enforcement::Warn } else { Enforcement::Deny };
            Via::Direct { cluster_id, nodes, enforcement }
        };
        let to_vec = |v: &Value| serde_json::to_vec(v).unwrap_or_default();
        let body = match u.int_in_range(0u8..=99)? {
            0..=49 => {
                let mut v = make::review(&mut u)?;
                if u.ratio(1u8, 3)? {
                    make::mutate_json(&mut u, &mut v)?;
                }
                to_vec(&v)
            }
            50..=79 => {
                let mut v = serde_json::from_slice(u.choose(&self.seeds)?).unwrap_or_default();
                make::mutate_json(&mut u, &mut v)?;
                to_vec(&v)
            }
            80..=94 => {
                let mut b = if u.ratio(1u8, 2)? {
                    u.choose(&self.seeds)?.clone()
                } else {
                    to_vec(&make::review(&mut u)?)
                };
                make::mutate_bytes(&mut u, &mut b)?;
                b
            }
            _ => u.bytes(u.len())?.to_vec(),
        };
        Ok(ReviewInput { body, endpoint, via })
    }

    /// Answers one input and checks the answer.
    pub fn run(&self, input: &ReviewInput) -> Outcome {
        let (status, content_type, answer) = match &input.via {
            Via::Router(i) => self.through_router(*i, input),
            Via::Direct { cluster_id, nodes, enforcement } => {
                // Both Liqo generations' rules, chosen by the input (an odd number of nodes: v1.x).
                let generation = match nodes.as_ref().map(|n| n.len()) {
                    Some(n) if n % 2 == 1 => Generation::V1,
                    _ => Generation::V0_3,
                };
                let ctx =
                    Context { cluster_id: cluster_id.as_deref(), virtual_nodes: nodes.as_ref(), generation };
                match review::answer(&input.body, input.endpoint, &ctx, *enforcement) {
                    Ok(a) => (
                        200,
                        Some("application/json".to_owned()),
                        serde_json::to_vec(&a.review).unwrap_or_default(),
                    ),
                    // What the router makes of it (admission/http.rs `bad_body`).
                    Err(e) => (
                        400,
                        Some("application/json".to_owned()),
                        json!({ "error": e.to_string(), "code": 400 }).to_string().into_bytes(),
                    ),
                }
            }
        };
        let (verdict, failures) = check::answer(&input.body, status, content_type.as_deref(), &answer);
        let head = String::from_utf8_lossy(&answer[..answer.len().min(1024)]).into_owned();
        Outcome {
            verdict,
            input_len: input.body.len(),
            answer_len: answer.len(),
            answer_head: head,
            failures,
        }
    }

    fn through_router(&self, i: usize, input: &ReviewInput) -> (u16, Option<String>, Vec<u8>) {
        let path = match input.endpoint {
            Endpoint::Validate => "/validate/namespace-offloading",
            Endpoint::Mutate => "/mutate/namespace-offloading",
        };
        let req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(input.body.clone()))
            .expect("a request with a fixed path and header");
        let router = self.routers[i].clone();
        self.rt.block_on(async move {
            let Ok(resp) = router.oneshot(req).await;
            let status = resp.status().as_u16();
            let content_type =
                resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = match resp.into_body().collect().await {
                Ok(c) => c.to_bytes().to_vec(),
                Err(e) => format!("the answer's body failed: {e}").into_bytes(),
            };
            (status, content_type, body)
        })
    }
}

impl Default for ReviewTarget {
    fn default() -> Self {
        Self::new()
    }
}

fn virtual_nodes(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<VirtualNode>> {
    let mut nodes = Vec::new();
    for _ in 0..u.int_in_range(0u8..=3)? {
        let mut labels = BTreeMap::new();
        for _ in 0..u.int_in_range(0u8..=3)? {
            labels.insert(make::string(u, make::KEYS)?, make::string(u, make::VALUES)?);
        }
        nodes.push(VirtualNode {
            name: make::string(u, make::NAMES)?,
            cluster_id: make::string(u, make::CLUSTER_IDS)?,
            labels,
        });
    }
    Ok(nodes)
}

/// The selector and name rules: see [`reference`].
pub fn selector_and_names(data: &[u8]) -> arbitrary::Result<Outcome> {
    let mut u = Unstructured::new(data);
    let failures = reference::check(&mut u)?;
    Ok(Outcome { input_len: data.len(), failures, ..Outcome::default() })
}

/// A run's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    pub inputs: u64,
    pub seed: u64,
    pub threads: usize,
    /// Where the first inputs of each failure kind are saved (raw bytes, and the review as JSON).
    pub save_dir: Option<PathBuf>,
    /// Print progress to stderr this often.
    pub progress: Option<Duration>,
    /// Stop after this long even if fewer inputs ran (the summary says how many did).
    pub time_limit: Option<Duration>,
}

/// How a failure kind was first met.
#[derive(Debug, Clone)]
pub struct Example {
    pub count: u64,
    pub index: u64,
    pub detail: String,
    pub saved: Option<PathBuf>,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Summary {
    pub target: &'static str,
    pub seed: u64,
    pub inputs: u64,
    /// Inputs the generator could not use (too few bytes for a choice): none so far.
    pub skipped: u64,
    pub panics: u64,
    pub failures: BTreeMap<&'static str, Example>,
    pub verdicts: BTreeMap<String, u64>,
    pub max_input: usize,
    pub max_answer: usize,
    pub elapsed: Duration,
    /// The time limit ended the run before every input ran.
    pub stopped_early: bool,
}

impl Summary {
    pub fn clean(&self) -> bool {
        self.panics == 0 && self.failures.is_empty()
    }

    pub fn per_second(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, other: Summary) {
        self.inputs += other.inputs;
        self.skipped += other.skipped;
        self.panics += other.panics;
        for (kind, ex) in other.failures {
            match self.failures.get_mut(kind) {
                Some(mine) => {
                    mine.count += ex.count;
                    if ex.index < mine.index {
                        (mine.index, mine.detail, mine.saved) = (ex.index, ex.detail, ex.saved);
                    }
                }
                None => {
                    self.failures.insert(kind, ex);
                }
            }
        }
        for (v, n) in other.verdicts {
            *self.verdicts.entry(v).or_default() += n;
        }
        self.max_input = self.max_input.max(other.max_input);
        self.max_answer = self.max_answer.max(other.max_answer);
        self.stopped_early |= other.stopped_early;
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "fuzz {}: {} inputs in {:.1} s ({:.0} inputs/s), seed {}, {} panics, {} failing inputs",
            self.target,
            self.inputs,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            self.seed,
            self.panics,
            self.failures.values().map(|e| e.count).sum::<u64>(),
        )?;
        if self.target == Target::Review.name() {
            writeln!(
                f,
                "  largest input {} bytes, largest answer {} bytes",
                self.max_input, self.max_answer
            )?;
            let verdicts: Vec<String> = self.verdicts.iter().map(|(v, n)| format!("{v} {n}")).collect();
            writeln!(f, "  answers: {}", verdicts.join(", "))?;
        }
        if self.stopped_early {
            writeln!(f, "  stopped by the time limit before every input ran")?;
        }
        if self.skipped > 0 {
            writeln!(f, "  {} inputs skipped (the generator ran out of bytes)", self.skipped)?;
        }
        for (kind, ex) in &self.failures {
            writeln!(f, "  {kind}: {} inputs, first #{}: {}", ex.count, ex.index, ex.detail)?;
            if let Some(p) = &ex.saved {
                writeln!(f, "    saved as {}", p.display())?;
            }
        }
        Ok(())
    }
}

/// The bytes of input `index`: a length (mostly 1 to 4 KiB: a whole generated review reads about
/// that much before the bytes run out and every choice falls to its first option) and that many
/// bytes, from `(seed, index)` alone.
pub fn input_bytes(seed: u64, index: u64) -> Vec<u8> {
    let mut rng = SplitMix64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let r = rng.next();
    let len = match r % 100 {
        0..=9 => 16 + (r >> 8) % 1008,
        10..=79 => 1024 + (r >> 8) % 3072,
        _ => 4096 + (r >> 8) % 28_672,
    } as usize;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Sebastiano Vigna's splitmix64: fast, and enough to drive a generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

thread_local! {
    /// Set while a fuzz input runs on this thread: its panic message goes here instead of stderr.
    static PANIC: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// Routes the panics of fuzz inputs to [`PANIC`], and every other panic to the hook in place.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let caught = PANIC.with(|p| {
                let mut p = p.borrow_mut();
                match p.as_mut() {
                    Some(slot) => {
                        *slot = Some(info.to_string());
                        true
                    }
                    None => false,
                }
            });
            if !caught {
                previous(info);
            }
        }));
    });
}

/// Runs one input of `target` on this thread; a panic becomes a `panic` failure.
pub fn one(target: Target, review: &mut Option<ReviewTarget>, data: &[u8]) -> (Option<ReviewInput>, Outcome) {
    install_panic_hook();
    PANIC.with(|p| *p.borrow_mut() = Some(None));
    let mut generated = None;
    let result = panic::catch_unwind(AssertUnwindSafe(|| match target {
        Target::Review => {
            let t = review.get_or_insert_with(ReviewTarget::new);
            let input = t.input(data).ok()?;
            let outcome = t.run(&input);
            generated = Some(input);
            Some(outcome)
        }
        Target::SelectorAndNames => selector_and_names(data).ok(),
    }));
    let message = PANIC.with(|p| p.borrow_mut().take().flatten());
    match result {
        Ok(Some(outcome)) => (generated, outcome),
        Ok(None) => (None, Outcome { input_len: data.len(), ..Outcome::default() }),
        Err(_) => {
            // The runtime a panic unwound through is not trusted again.
            *review = None;
            // Regenerate the input (generation itself does not panic) so that it can be saved.
            let input = match target {
                Target::Review => ReviewTarget::new().input(data).ok(),
                Target::SelectorAndNames => None,
            };
            let failure =
                Failure::new("panic", message.unwrap_or_else(|| "a panic without a message".into()));
            (input, Outcome { input_len: data.len(), failures: vec![failure], ..Outcome::default() })
        }
    }
}

/// Feeds `cfg.inputs` inputs to the target, spread over `cfg.threads` threads.
pub fn run(cfg: &Config) -> Summary {
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let threads = cfg.threads.max(1) as u64;
    let mut summary = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let done = done.clone();
                s.spawn(move || worker(cfg, t, threads, started, &done))
            })
            .collect();
        if let Some(every) = cfg.progress {
            let (done, finished) = (done.clone(), finished.clone());
            s.spawn(move || progress(cfg, every, started, &done, &finished));
        }
        let mut total = Summary::default();
        for w in workers {
            match w.join() {
                Ok(part) => total.merge(part),
                Err(_) => total.panics += 1,
            }
        }
        finished.store(true, Ordering::Release);
        total
    });
    summary.target = cfg.target.name();
    summary.seed = cfg.seed;
    summary.elapsed = started.elapsed();
    summary
}

fn progress(cfg: &Config, every: Duration, started: Instant, done: &AtomicU64, finished: &AtomicBool) {
    let mut last = Instant::now();
    while !finished.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(200));
        if last.elapsed() >= every {
            last = Instant::now();
            let n = done.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "fuzz {}: {n}/{} inputs, {:.0} s, {:.0} inputs/s",
                cfg.target.name(),
                cfg.inputs,
                secs,
                n as f64 / secs
            );
        }
    }
}

fn worker(cfg: &Config, first: u64, step: u64, started: Instant, done: &AtomicU64) -> Summary {
    let mut summary = Summary::default();
    let mut review = None;
    let mut index = first;
    while index < cfg.inputs {
        if summary.inputs % 256 == 0 && cfg.time_limit.is_some_and(|limit| started.elapsed() >= limit) {
            summary.stopped_early = true;
            break;
        }
        let data = input_bytes(cfg.seed, index);
        let (input, outcome) = one(cfg.target, &mut review, &data);
        summary.inputs += 1;
        if input.is_none() && cfg.target == Target::Review && outcome.failures.is_empty() {
            summary.skipped += 1;
        }
        summary.max_input = summary.max_input.max(input.as_ref().map_or(outcome.input_len, |i| i.body.len()));
        summary.max_answer = summary.max_answer.max(outcome.answer_len);
        if let Some(v) = outcome.verdict {
            *summary.verdicts.entry(verdict_name(v)).or_default() += 1;
        }
        for failure in outcome.failures {
            if failure.kind == "panic" {
                summary.panics += 1;
            }
            let ex = summary.failures.entry(failure.kind).or_insert_with(|| Example {
                count: 0,
                index,
                detail: failure.detail.clone(),
                saved: None,
            });
            ex.count += 1;
            if ex.count == 1 {
                ex.saved = save(cfg, failure.kind, index, &data, input.as_ref());
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
        index += step;
    }
    summary
}

fn verdict_name(v: Verdict) -> String {
    match v {
        Verdict::Allowed => "allowed".into(),
        Verdict::Patched => "patched".into(),
        Verdict::Denied => "denied".into(),
        Verdict::Refused(code) => format!("HTTP {code}"),
    }
}

/// Saves the bytes of a failing input (for `--replay`) and, for a review, its body as sent.
fn save(cfg: &Config, kind: &str, index: u64, data: &[u8], input: Option<&ReviewInput>) -> Option<PathBuf> {
    let dir = cfg.save_dir.as_ref()?;
    std::fs::create_dir_all(dir).ok()?;
    let stem = format!("{}-{kind}-seed{}-{index}", cfg.target.name(), cfg.seed);
    let path = dir.join(format!("{stem}.bin"));
    std::fs::write(&path, data).ok()?;
    if let Some(input) = input {
        let _ = std::fs::write(dir.join(format!("{stem}.json")), &input.body);
    }
    Some(path)
}

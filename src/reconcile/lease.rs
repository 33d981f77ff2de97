//! One active reconciler among replicas, through a coordination.k8s.io Lease, as client-go's
//! leader election does it:
//! - the holder renews every retry period (jittered); when no renew has succeeded within the renew
//!   deadline, measured from the instant before the last successful renew was sent, it stops its
//!   work (cancels it, gives it a short grace, then aborts it). The deadline is a timer of its own:
//!   a hanging API call cannot hold it up, and every Lease request has a timeout besides;
//! - a standby judges expiry by its own clock: it takes the Lease only once the record it reads
//!   (holder, times, resourceVersion) has stayed unchanged for the Lease's duration since this
//!   process first read it. Another node's `renewTime` is never compared with our clock;
//! - every write carries the resourceVersion last read: of two writers of one version, the API
//!   server lets one win (a conflict is the arbitration);
//! - on shutdown the holder stops its work, then releases the Lease, so a standby takes over at once.
//!
//! Why no standby can write while the holder still does: the holder's last successful renew was
//! sent at T, so the record a standby reads was written after T, and the standby waits the
//! duration D after it first read it: it writes at T + D at the earliest. The holder stops at
//! T + renew deadline + grace at the latest (2/3 D + at most D/12), and then writes nothing.
//!
//! Beside the Lease, the holder looks for other installs' Leases: [`super::installs`].

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Error};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::installs::{self, InstallLease, Installs, Seniority, Verdict};
use crate::failure_policy::{self, Kind, Repeat, Said, Say};
use crate::health::{Access, CLUSTER_ROLE, Faults, LEASE_ROLE, explain};
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease not renewed stays held (written into the Lease).
    pub duration: Duration,
    /// How long the holder keeps working without a successful renew.
    pub renew_deadline: Duration,
    /// How often the holder renews and a standby reads (each jittered by up to a fifth).
    pub retry: Duration,
}

impl LeaseConfig {
    /// client-go's proportions: with a duration of 15 s, a renew deadline of 10 s and a retry
    /// period of 2 s.
    pub fn new(name: String, namespace: String, identity: String, duration: Duration) -> Self {
        Self {
            name,
            namespace,
            identity,
            duration,
            renew_deadline: duration * 2 / 3,
            retry: duration * 2 / 15,
        }
    }

    /// How long work that was told to stop may take before it is aborted: short enough that
    /// renew deadline + grace stays well below the duration.
    pub fn grace(&self) -> Duration {
        (self.duration.saturating_sub(self.renew_deadline) / 4).min(Duration::from_secs(1))
    }

    /// How long one Lease request may take.
    pub fn request_timeout(&self) -> Duration {
        self.renew_deadline / 2
    }
}

// ---------------------------------------------------------------------------------------------
// The decisions, pure: what was read and local instants in, what to do out.

/// What a Lease's holder writes, compared to tell whether it changed. The resourceVersion is part
/// of it: any write, even one that sets the same values, is a sign of life.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub holder: Option<String>,
    pub renew_time: Option<Timestamp>,
    pub acquire_time: Option<Timestamp>,
    pub duration_seconds: Option<i32>,
    pub transitions: Option<i32>,
    pub resource_version: Option<String>,
}

impl Record {
    pub fn of(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        Self {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.map(|t| t.0),
            acquire_time: spec.acquire_time.map(|t| t.0),
            duration_seconds: spec.lease_duration_seconds,
            transitions: spec.lease_transitions,
            resource_version: lease.metadata.resource_version.clone(),
        }
    }

    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }

    /// How long the record says it stays held; `fallback` when it does not say.
    pub fn duration(&self, fallback: Duration) -> Duration {
        match self.duration_seconds {
            Some(s) if s > 0 => Duration::from_secs(s.unsigned_abs().into()),
            _ => fallback,
        }
    }
}

/// A record, and the local instant this process first read it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub record: Record,
    pub since: Instant,
}

impl Observed {
    /// `prev` after a new read at `now`: the instant stays while the record is unchanged.
    pub fn fold(prev: Option<Observed>, record: Record, now: Instant) -> Observed {
        match prev {
            Some(p) if p.record == record => p,
            _ => Observed { record, since: now },
        }
    }

    /// Whether the record stayed unchanged for its own duration, by this process's clock.
    pub fn expired(&self, now: Instant, fallback: Duration) -> bool {
        now.saturating_duration_since(self.since) >= self.record.duration(fallback)
    }
}

/// What to do after reading the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is none: create it, held by us.
    Create,
    /// Write ourselves in as holder: a new holder when `transition` (it was released, expired by
    /// our observation), else ours already.
    Take { transition: bool },
    /// Another replica holds it, as far as we can tell.
    Wait { holder: String },
}

/// The election's state: what was read, when our hold ends.
#[derive(Debug, Clone)]
pub struct Elector {
    identity: String,
    /// Ours; also the duration of a record that does not say its own.
    duration: Duration,
    renew_deadline: Duration,
    observed: Option<Observed>,
    /// While we hold the Lease: the instant before our last successful write was sent.
    renewed: Option<Instant>,
}

impl Elector {
    pub fn new(identity: &str, duration: Duration, renew_deadline: Duration) -> Self {
        Self { identity: identity.to_owned(), duration, renew_deadline, observed: None, renewed: None }
    }

    /// When our hold ends unless a renew succeeds first (`None`: we do not hold it).
    pub fn deadline(&self) -> Option<Instant> {
        self.renewed.map(|t| t + self.renew_deadline)
    }

    /// Whether we hold the Lease at `now`: a write of ours succeeded within the renew deadline.
    pub fn holds(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now < d)
    }

    /// A read of the Lease (`None`: there is none) at `now`.
    pub fn read(&mut self, lease: Option<Record>, now: Instant) -> Decision {
        let Some(record) = lease else {
            self.observed = None;
            self.renewed = None;
            return Decision::Create;
        };
        let observed = Observed::fold(self.observed.take(), record, now);
        let decision = match observed.record.holder() {
            None => Decision::Take { transition: true },
            Some(h) if h == self.identity => Decision::Take { transition: false },
            Some(_) if observed.expired(now, self.duration) => Decision::Take { transition: true },
            Some(h) => Decision::Wait { holder: h.to_owned() },
        };
        if matches!(decision, Decision::Wait { .. }) {
            // Someone else holds it: whatever we held is gone.
            self.renewed = None;
        }
        self.observed = Some(observed);
        decision
    }

    /// Our write (a create, take or renew) sent at `sent` succeeded; the API server answered
    /// with `record` at `now`.
    pub fn wrote(&mut self, sent: Instant, record: Record, now: Instant) {
        self.renewed = Some(sent);
        self.observed = Some(Observed { record, since: now });
    }

    /// Our hold ended (renew deadline, released): back to standby.
    pub fn step_down(&mut self) {
        self.renewed = None;
    }
}

/// The Lease to send for `decision`, from what was read (`None` for a create), at wall-clock
/// `now` (which only the holder's own fields carry). Labelled so other installs find it.
pub fn to_write(read: Option<Lease>, cfg: &LeaseConfig, transition: bool, now: Timestamp) -> Lease {
    let mut lease = read.unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(cfg.name.clone()),
            namespace: Some(cfg.namespace.clone()),
            ..Default::default()
        },
        spec: Some(LeaseSpec { lease_transitions: Some(0), ..Default::default() }),
    });
    let labels = lease.metadata.labels.get_or_insert_with(Default::default);
    for (k, v) in installs::LABELS {
        labels.insert(k.to_owned(), v.to_owned());
    }
    let spec = lease.spec.get_or_insert_with(Default::default);
    let now = MicroTime(now);
    if transition || spec.acquire_time.is_none() {
        if spec.holder_identity.as_deref().is_some_and(|h| !h.is_empty() && h != cfg.identity) {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.acquire_time = Some(now.clone());
    }
    spec.holder_identity = Some(cfg.identity.clone());
    spec.renew_time = Some(now);
    spec.lease_duration_seconds = Some(i32::try_from(cfg.duration.as_secs()).unwrap_or(i32::MAX));
    lease
}

/// Our Lease with the holder cleared, so that a standby takes it at once.
pub fn released(mut lease: Lease) -> Lease {
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.renew_time = None;
    }
    lease
}

/// `d` plus up to a fifth of it, so that replicas started together do not ask together.
fn jittered(d: Duration) -> Duration {
    // A fresh RandomState is keyed anew each time: enough randomness for a jitter.
    let r = std::collections::hash_map::RandomState::new().build_hasher().finish();
    d + d.mul_f64((r % 1000) as f64 / 5000.0)
}

// ---------------------------------------------------------------------------------------------
// The loop.

/// A Lease request that failed, and how.
#[derive(Debug, thiserror::Error)]
enum LeaseError {
    #[error("{0}")]
    Api(&'static str, #[source] Error),
    #[error("no answer within {1:?}")]
    Timeout(&'static str, Duration),
}

impl LeaseError {
    fn verb(&self) -> &'static str {
        match self {
            LeaseError::Api(v, _) | LeaseError::Timeout(v, _) => v,
        }
    }

    /// How it counts: only an answer of the API server can be a misconfiguration.
    fn kind(&self) -> Kind {
        match self {
            LeaseError::Api(_, e) => Kind::of(e),
            LeaseError::Timeout(..) => Kind::Passing,
        }
    }

    /// The sentence for the operator.
    fn explain(&self, cfg: &LeaseConfig) -> String {
        let access = Access {
            verb: self.verb(),
            resource: "leases.coordination.k8s.io",
            namespace: Some(&cfg.namespace),
            role: LEASE_ROLE,
        };
        match self {
            LeaseError::Api(_, e) => explain(e, access),
            LeaseError::Timeout(verb, after) => format!(
                "could not {verb} Lease {}/{}: the API server did not answer within {after:?}",
                cfg.namespace, cfg.name
            ),
        }
    }
}

async fn timed<T>(
    verb: &'static str,
    after: Duration,
    f: impl Future<Output = Result<T, Error>>,
) -> Result<T, LeaseError> {
    match tokio::time::timeout(after, f).await {
        Ok(r) => r.map_err(|e| LeaseError::Api(verb, e)),
        Err(_) => Err(LeaseError::Timeout(verb, after)),
    }
}

/// What one round of the loop found.
enum Round {
    /// We hold the Lease (just written); `acquired` when we did not hold it before.
    Held {
        acquired: bool,
    },
    Standby(String),
}

struct Running {
    token: CancellationToken,
    task: JoinHandle<()>,
}

/// The loop's state.
struct Election {
    cfg: LeaseConfig,
    api: Api<Lease>,
    /// Every namespace's, for the other installs' Leases.
    all: Api<Lease>,
    metrics: Arc<Metrics>,
    elector: Elector,
    /// Our Lease as last written, renewed by a compare-and-swap on its resourceVersion.
    mine: Option<Lease>,
    installs: Installs,
    /// What was last said about the other installs, to say each change once.
    installs_said: Option<Verdict>,
    /// What was said of listing the other installs' Leases: a refusal, once.
    list_said: Said,
    /// Since when this install has been the senior one of several (see [`installs`]).
    senior_since: Option<Instant>,
}

impl Election {
    async fn round(&mut self) -> Result<Round, LeaseError> {
        let timeout = self.cfg.request_timeout();
        let pp = PostParams::default();
        // The holder renews what it last wrote; a conflict means someone else wrote since: read.
        if let Some(mine) = self.mine.clone()
            && self.elector.holds(Instant::now())
        {
            let lease = to_write(Some(mine), &self.cfg, false, Timestamp::now());
            let sent = Instant::now();
            self.metrics.wrote("leases");
            match timed("update", timeout, self.api.replace(&self.cfg.name, &pp, &lease)).await {
                Ok(l) => {
                    self.elector.wrote(sent, Record::of(&l), Instant::now());
                    self.mine = Some(l);
                    self.look_for_other_installs().await;
                    return Ok(Round::Held { acquired: false });
                }
                Err(LeaseError::Api(_, Error::Api(s))) if s.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
        let was_holding = self.elector.holds(Instant::now());
        let read = timed("get", timeout, self.api.get_opt(&self.cfg.name)).await?;
        let decision = self.elector.read(read.as_ref().map(Record::of), Instant::now());
        let transition = match decision {
            Decision::Wait { holder } => {
                self.mine = None;
                return Ok(Round::Standby(holder));
            }
            Decision::Create => true,
            Decision::Take { transition } => transition,
        };
        let creating = read.is_none();
        let holder = read.as_ref().and_then(|l| Record::of(l).holder).unwrap_or_default();
        let lease = to_write(read, &self.cfg, transition, Timestamp::now());
        let sent = Instant::now();
        self.metrics.wrote("leases");
        let written = if creating {
            timed("create", timeout, self.api.create(&pp, &lease)).await
        } else {
            timed("update", timeout, self.api.replace(&self.cfg.name, &pp, &lease)).await
        };
        match written {
            Ok(l) => {
                self.elector.wrote(sent, Record::of(&l), Instant::now());
                self.mine = Some(l);
                self.look_for_other_installs().await;
                Ok(Round::Held { acquired: !was_holding })
            }
            // Another replica wrote first: the next read shows what it wrote.
            Err(LeaseError::Api(_, Error::Api(s))) if s.is_conflict() || s.is_already_exists() => {
                self.elector.step_down();
                self.mine = None;
                Ok(Round::Standby(if holder.is_empty() { "another replica".into() } else { holder }))
            }
            Err(e) => Err(e),
        }
    }

    /// Lists the other installs' Leases (each round of the holder's, so within the renew deadline's
    /// race); a refusal is said once and leaves this install alone.
    async fn look_for_other_installs(&mut self) {
        let lp = ListParams::default().labels(&installs::selector()).match_any();
        match timed("list", self.cfg.request_timeout(), self.all.list(&lp)).await {
            Ok(list) => {
                let others = list
                    .items
                    .iter()
                    .map(InstallLease::of)
                    .filter(|l| {
                        l.seniority.namespace != self.cfg.namespace || l.seniority.name != self.cfg.name
                    })
                    .collect();
                self.installs.listed(others, Instant::now());
                if self.list_said.succeeded().say == Say::Recovered {
                    info!("Leases can be listed cluster-wide again: other installs are looked for");
                }
            }
            Err(e) => {
                let problem = match &e {
                    LeaseError::Api(_, err) => explain(
                        err,
                        Access {
                            verb: "list",
                            resource: "leases.coordination.k8s.io",
                            namespace: None,
                            role: CLUSTER_ROLE,
                        },
                    ),
                    LeaseError::Timeout(..) => e.to_string(),
                };
                // Not a fault: this install goes on alone; only a refusal needs a fix.
                if self.list_said.failed(e.kind(), problem.clone(), Repeat::Never).say == Say::Failed {
                    warn!(%problem, "cannot look for another install of offloading-webhook on this cluster: a second one would reconcile beside this one unnoticed");
                }
            }
        }
    }

    /// Whether this install reconciles, said once per change.
    fn arbitrate(&mut self) -> Verdict {
        let ours = self.mine.as_ref().map(Seniority::of).unwrap_or_else(|| Seniority {
            created: None,
            namespace: self.cfg.namespace.clone(),
            name: self.cfg.name.clone(),
        });
        let verdict = installs::arbitrate(
            &ours,
            &self.installs.live(Instant::now(), self.cfg.duration),
            self.cfg.duration,
        );
        self.metrics.other_installs.set(verdict.others().len().try_into().unwrap_or(i64::MAX));
        let changed = self.installs_said.as_ref().is_none_or(|said| {
            said.others_set() != verdict.others_set()
                || std::mem::discriminant(said) != std::mem::discriminant(&verdict)
        });
        if changed {
            match &verdict {
                Verdict::Alone if self.installs_said.as_ref().is_some_and(|s| !s.others().is_empty()) => {
                    info!("no other install of offloading-webhook reconciles on this cluster any more")
                }
                Verdict::Alone => {}
                Verdict::Senior { others, .. } => error!(
                    other_leases = ?others, ours = %ours.key(),
                    "another install of offloading-webhook runs a reconcile loop on this cluster; this one is the older and reconciles, the other stands by: uninstall one of them"
                ),
                Verdict::Junior { senior, .. } => error!(
                    other_lease = %senior, ours = %ours.key(),
                    "another install of offloading-webhook runs a reconcile loop on this cluster and is the older: this one stands by while that one lives: uninstall one of them"
                ),
            }
            self.installs_said = Some(verdict.clone());
        }
        verdict
    }

    /// Our Lease released, if we still hold it, so that a standby takes over at once.
    async fn release(&mut self) {
        let Some(mine) = self.mine.take() else { return };
        if !self.elector.holds(Instant::now()) {
            return;
        }
        self.elector.step_down();
        self.metrics.wrote("leases");
        let (pp, lease) = (PostParams::default(), released(mine));
        match timed("update", self.cfg.request_timeout(), self.api.replace(&self.cfg.name, &pp, &lease)).await
        {
            Ok(_) => info!(lease = %self.cfg.name, "released the lease"),
            Err(e) => {
                warn!(problem = %e.explain(&self.cfg), "could not release the lease; a standby takes over once it expires")
            }
        }
    }
}

/// Resolves at `deadline`, never when `None`.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Tells the work to stop, waits `grace` for it, then aborts it: returns once it is gone.
async fn stop_work(running: &mut Option<Running>, grace: Duration, metrics: &Metrics) {
    let Some(Running { token, mut task }) = running.take() else { return };
    token.cancel();
    if tokio::time::timeout(grace, &mut task).await.is_err() {
        task.abort();
        let _ = task.await;
    }
    metrics.not_leading();
}

/// Runs `work` while this replica holds the Lease (and no older install reconciles); cancels
/// the token it got, then aborts it, when that ends. Returns when `stop` is cancelled, after
/// releasing the Lease if held.
pub async fn run_while_leader<F, Fut>(
    client: Client,
    cfg: LeaseConfig,
    faults: Faults,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    work: F,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut e = Election {
        api: Api::namespaced(client.clone(), &cfg.namespace),
        all: Api::all(client),
        elector: Elector::new(&cfg.identity, cfg.duration, cfg.renew_deadline),
        cfg,
        metrics,
        mine: None,
        installs: Installs::default(),
        installs_said: None,
        list_said: Said::default(),
        senior_since: None,
    };
    metrics_not_leading(&e.metrics);
    let grace = e.cfg.grace();
    let mut running: Option<Running> = None;
    let mut last_holder = String::new();
    // What was said of the Lease's failures; the last one since the last success is said again
    // when the renew deadline passes.
    let mut said = Said::default();
    loop {
        let deadline = e.elector.deadline();
        let round = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = until(deadline) => None,
            r = e.round() => Some(r),
        };
        match round {
            None => {
                let was_running = running.is_some();
                stop_work(&mut running, grace, &e.metrics).await;
                e.elector.step_down();
                e.mine = None;
                e.senior_since = None;
                e.metrics.other_installs.set(0);
                let error =
                    said.last().unwrap_or("a request to the API server is still unanswered").to_owned();
                warn!(lease = %e.cfg.name, namespace = %e.cfg.namespace, renew_deadline = ?e.cfg.renew_deadline,
                    reconcile_loop_stopped = was_running, %error,
                    "renew deadline passed: no renew of the Lease succeeded in time, so this replica stopped reconciling before a standby can take over; it stands by and can lead again");
            }
            Some(Ok(Round::Held { acquired })) => {
                lease_works(&mut said, &faults, &e.cfg);
                if acquired {
                    info!(lease = %e.cfg.name, namespace = %e.cfg.namespace, identity = %e.cfg.identity, "acquired the Lease");
                    last_holder.clear();
                }
                let reconcile = match e.arbitrate() {
                    Verdict::Alone => {
                        e.senior_since = None;
                        true
                    }
                    Verdict::Senior { wait, .. } => {
                        let now = Instant::now();
                        running.is_some() || now >= *e.senior_since.get_or_insert(now) + wait
                    }
                    Verdict::Junior { .. } => {
                        e.senior_since = None;
                        false
                    }
                };
                if reconcile && running.is_none() && e.elector.holds(Instant::now()) {
                    info!(lease = %e.cfg.name, identity = %e.cfg.identity, "became the active reconciler");
                    let token = stop.child_token();
                    running = Some(Running { token: token.clone(), task: tokio::spawn(work(token)) });
                    e.metrics.leader.set(1);
                } else if !reconcile && running.is_some() {
                    warn!(lease = %e.cfg.name, "standing by for an older install: stopping the reconcile loop");
                    stop_work(&mut running, grace, &e.metrics).await;
                }
            }
            Some(Ok(Round::Standby(holder))) => {
                lease_works(&mut said, &faults, &e.cfg);
                e.senior_since = None;
                e.metrics.other_installs.set(0);
                if running.is_some() {
                    warn!(lease = %e.cfg.name, %holder, "lost the lease; stopping the reconcile loop");
                    stop_work(&mut running, grace, &e.metrics).await;
                }
                if holder != last_holder {
                    info!(lease = %e.cfg.name, %holder, "standing by: another replica reconciles");
                    last_holder = holder;
                }
            }
            Some(Err(err)) => {
                let problem = err.explain(&e.cfg);
                let problem = format!(
                    "the reconcile loop cannot run: Lease {}/{}: {problem} (the Lease's namespace is \
                     --lease-namespace, env POD_NAMESPACE; --reconcile=false runs the webhooks alone)",
                    e.cfg.namespace, e.cfg.name,
                );
                // A misconfiguration (RBAC, a missing namespace) is said once, as a fault; a
                // passing failure (an API server restart) once per change of what it says: the
                // Lease is retried every retry period.
                let step = said.failed(err.kind(), problem.clone(), Repeat::OnChange);
                failure_policy::record(&faults, "lease", &step);
                if step.say == Say::Failed {
                    warn!(lease = %e.cfg.name, namespace = %e.cfg.namespace, %problem, holding = e.elector.holds(Instant::now()),
                        "could not acquire or renew the lease; retrying");
                }
            }
        }
        let deadline = e.elector.deadline();
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = until(deadline) => {}
            _ = tokio::time::sleep(jittered(e.cfg.retry)) => {}
        }
    }
    stop_work(&mut running, grace, &e.metrics).await;
    e.release().await;
    metrics_not_leading(&e.metrics);
}

/// A round of the Lease went through: a fault of it is over, and said to be.
fn lease_works(said: &mut Said, faults: &Faults, cfg: &LeaseConfig) {
    let step = said.succeeded();
    failure_policy::record(faults, "lease", &step);
    if step.say == Say::Recovered {
        info!(lease = %cfg.name, namespace = %cfg.namespace, "the Lease can be used again");
    }
}

fn metrics_not_leading(metrics: &Metrics) {
    metrics.not_leading();
    metrics.other_installs.set(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn cfg() -> LeaseConfig {
        LeaseConfig::new("l".into(), "ns".into(), "me".into(), D)
    }

    fn record(holder: Option<&str>, rv: &str) -> Record {
        Record {
            holder: holder.map(str::to_owned),
            duration_seconds: Some(15),
            resource_version: Some(rv.into()),
            ..Default::default()
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn client_go_proportions() {
        let c = cfg();
        assert_eq!(c.renew_deadline, secs(10.0));
        assert_eq!(c.retry, secs(2.0));
        assert_eq!(c.grace(), secs(1.0));
        assert_eq!(c.request_timeout(), secs(5.0));
        // Renew deadline + grace stays below the duration for every duration the flag allows.
        for s in 3..=600 {
            let c = LeaseConfig::new("l".into(), "ns".into(), "me".into(), Duration::from_secs(s));
            assert!(c.renew_deadline + c.grace() < c.duration, "{s}");
            assert!(c.retry < c.renew_deadline / 2, "{s}");
        }
        for _ in 0..100 {
            let j = jittered(secs(2.0));
            assert!(j >= secs(2.0) && j <= secs(2.4), "{j:?}");
        }
    }

    #[test]
    fn the_holder_stops_at_the_renew_deadline_counted_from_before_its_last_successful_renew() {
        let t0 = Instant::now();
        let mut e = Elector::new("me", D, secs(10.0));
        assert_eq!(e.read(None, t0), Decision::Create);
        // Sent at t0, answered 3 s later: the hold is counted from t0.
        e.wrote(t0, record(Some("me"), "1"), t0 + secs(3.0));
        assert!(e.holds(t0 + secs(9.9)));
        assert!(!e.holds(t0 + secs(10.0)));
        assert_eq!(e.deadline(), Some(t0 + secs(10.0)));
        // A renew sent at t0 + 2 extends it from there.
        e.wrote(t0 + secs(2.0), record(Some("me"), "2"), t0 + secs(2.1));
        assert_eq!(e.deadline(), Some(t0 + secs(12.0)));
        // Failed renews extend nothing; stepping down ends it.
        e.step_down();
        assert!(!e.holds(t0 + secs(2.2)));
    }

    #[test]
    fn a_standby_takes_the_lease_only_once_the_record_stayed_unchanged_for_its_duration_by_our_clock() {
        let t0 = Instant::now();
        let mut e = Elector::new("me", D, secs(10.0));
        let wait = Decision::Wait { holder: "other".into() };
        assert_eq!(e.read(Some(record(Some("other"), "5")), t0), wait);
        assert_eq!(e.read(Some(record(Some("other"), "5")), t0 + secs(14.9)), wait);
        assert_eq!(e.read(Some(record(Some("other"), "5")), t0 + D), Decision::Take { transition: true });
        // A renew seen in between starts the count again.
        let mut e = Elector::new("me", D, secs(10.0));
        e.read(Some(record(Some("other"), "5")), t0);
        assert_eq!(e.read(Some(record(Some("other"), "6")), t0 + secs(10.0)), wait);
        assert_eq!(e.read(Some(record(Some("other"), "6")), t0 + secs(24.9)), wait);
        assert_eq!(
            e.read(Some(record(Some("other"), "6")), t0 + secs(25.0)),
            Decision::Take { transition: true }
        );
        // The Lease's own duration counts, not ours.
        let mut e = Elector::new("me", D, secs(10.0));
        let long = Record { duration_seconds: Some(60), ..record(Some("other"), "7") };
        e.read(Some(long.clone()), t0);
        assert_eq!(e.read(Some(long.clone()), t0 + secs(59.0)), wait);
        assert_eq!(e.read(Some(long), t0 + secs(60.0)), Decision::Take { transition: true });
    }

    #[test]
    fn the_other_nodes_clock_does_not_matter() {
        let t0 = Instant::now();
        let hour = k8s_openapi::jiff::SignedDuration::from_hours(1);
        for skew in [hour, -hour] {
            // A holder whose clock is an hour off: its renewTime says nothing to us.
            let r = Record {
                renew_time: Some(Timestamp::now().checked_add(skew).unwrap()),
                ..record(Some("other"), "5")
            };
            let mut e = Elector::new("me", D, secs(10.0));
            assert!(matches!(e.read(Some(r.clone()), t0), Decision::Wait { .. }), "{skew}");
            assert!(matches!(e.read(Some(r.clone()), t0 + secs(14.0)), Decision::Wait { .. }), "{skew}");
            assert_eq!(e.read(Some(r), t0 + D), Decision::Take { transition: true }, "{skew}");
        }
    }

    #[test]
    fn a_released_lease_is_taken_at_once_and_our_own_is_kept() {
        let t0 = Instant::now();
        let mut e = Elector::new("me", D, secs(10.0));
        assert_eq!(e.read(Some(record(None, "5")), t0), Decision::Take { transition: true });
        // Held by our own identity (a restarted replica of the same name): ours, no transition.
        assert_eq!(e.read(Some(record(Some("me"), "6")), t0), Decision::Take { transition: false });
        // What a release writes: no holder, no renewTime, the rest kept.
        let mine = to_write(None, &cfg(), true, Timestamp::now());
        let r = Record::of(&released(mine.clone()));
        assert_eq!(r.holder, None);
        assert_eq!(r.renew_time, None);
        assert_eq!(r.acquire_time, Record::of(&mine).acquire_time);
    }

    #[test]
    fn a_conflict_leaves_the_lease_to_the_writer_that_won() {
        let t0 = Instant::now();
        let mut e = Elector::new("me", D, secs(10.0));
        e.read(Some(record(Some("other"), "5")), t0);
        assert_eq!(e.read(Some(record(Some("other"), "5")), t0 + D), Decision::Take { transition: true });
        // Our take (on version 5) conflicted: the holder renewed meanwhile. Read again: wait.
        e.step_down();
        assert_eq!(
            e.read(Some(record(Some("other"), "6")), t0 + D + secs(0.1)),
            Decision::Wait { holder: "other".into() }
        );
        // A holder that reads another holder on its Lease has lost it at once.
        let mut e = Elector::new("me", D, secs(10.0));
        e.wrote(t0, record(Some("me"), "1"), t0);
        assert!(e.holds(t0 + secs(1.0)));
        assert!(matches!(e.read(Some(record(Some("intruder"), "2")), t0 + secs(1.0)), Decision::Wait { .. }));
        assert!(!e.holds(t0 + secs(1.0)));
    }

    #[test]
    fn the_holder_has_stopped_before_any_standby_can_take_the_lease() {
        // The holder's last successful renew is sent at t0 and written by the API server any time
        // after; a standby first reads it any time after that, and takes it D later at the
        // earliest. The holder stops, grace and abort included, before.
        let c = cfg();
        let t0 = Instant::now();
        let mut holder = Elector::new("me", c.duration, c.renew_deadline);
        holder.wrote(t0, record(Some("me"), "9"), t0 + secs(4.0));
        let stopped_by = holder.deadline().unwrap() + c.grace();
        for first_read in [0.0, 0.001, 3.0, 9.0] {
            let mut standby = Elector::new("other", c.duration, c.renew_deadline);
            let seen = t0 + secs(first_read);
            standby.read(Some(record(Some("me"), "9")), seen);
            let mut t = seen;
            while standby.read(Some(record(Some("me"), "9")), t) != (Decision::Take { transition: true }) {
                t += secs(0.05);
            }
            assert!(
                t > stopped_by,
                "a standby takes at {:?}, the holder stops by {:?}",
                t - t0,
                stopped_by - t0
            );
        }
    }

    #[test]
    fn the_lease_written_is_labelled_and_counts_transitions() {
        let c = cfg();
        let now = Timestamp::now();
        let created = to_write(None, &c, true, now);
        assert_eq!(created.metadata.labels.as_ref().unwrap()["app.kubernetes.io/component"], "reconciler");
        let spec = created.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
        // Taken over from another holder: one more transition, a new acquireTime.
        let mut theirs = created.clone();
        theirs.metadata.labels = None;
        theirs.spec.as_mut().unwrap().holder_identity = Some("other".into());
        let taken = to_write(Some(theirs), &c, true, now);
        assert_eq!(taken.spec.as_ref().unwrap().lease_transitions, Some(1));
        assert!(taken.metadata.labels.is_some());
        // Renewed: the acquireTime stays.
        let later = now.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(2)).unwrap();
        let renewed = to_write(Some(taken.clone()), &c, false, later);
        assert_eq!(renewed.spec.as_ref().unwrap().acquire_time, taken.spec.as_ref().unwrap().acquire_time);
        assert_eq!(renewed.spec.as_ref().unwrap().renew_time.as_ref().unwrap().0, later);
        assert_eq!(renewed.spec.as_ref().unwrap().lease_transitions, Some(1));
    }
}

//! Prometheus metrics: one registry, shared by the admission handlers and the server.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// `validate` or `mutate`.
    pub endpoint: &'static str,
    /// `CREATE`, `UPDATE`, `DELETE`, `CONNECT`, or `unknown` for a body that could not be read.
    pub operation: &'static str,
    /// `allowed`, `denied`, `warned` (a denial turned into warnings), `invalid`, `skipped`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `ok`, `waiting` (caches or remote namespaces), `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// What was written, as the API server names it: `namespaceoffloadings`,
    /// `namespaceoffloadings/status`, `namespacemaps`, `namespacemaps/status`, `namespaces`,
    /// `events`, `leases`, `remote-namespaces` (in a remote cluster).
    pub resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProblemLabels {
    /// What is at fault: `lease`, `nodes`, `virtualnodes`, `cluster-id`, a watch of the loop
    /// (`namespacemaps`, `namespaces`, `secrets`, `namespaceoffloadings`), or a loop refused by the
    /// API server (`offloading-loop`, `tenant-loop`, `remote-loop`).
    pub part: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// The metrics this process exports.
pub struct Metrics {
    registry: Registry,
    pub reviews: Family<ReviewLabels, Counter>,
    pub review_seconds: Family<EndpointLabels, Histogram>,
    pub tls_handshake_failures: Counter,
    pub cert_reload_failures: Counter,
    /// Unix time at which the serving certificate expires.
    pub cert_expiry_seconds: Gauge,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_seconds: Histogram,
    /// NamespaceOffloadings per offloading phase, exported by the active reconciler only.
    pub objects: Family<PhaseLabels, Gauge>,
    /// Every write the reconcile loop issued (finalizers, Events and Lease renewals included), by
    /// resource: use [`Metrics::wrote`].
    pub writes: Family<WriteLabels, Counter>,
    /// Stored objects (each version once) that the reconcile loop could not decode.
    pub decode_failures: Family<KindLabels, Counter>,
    /// 1 while this replica is the active reconciler, else 0.
    pub leader: Gauge,
    /// Other installs' reconcile Leases that may be live, as the Lease holder last saw them.
    pub other_installs: Gauge,
    /// 1 while no part of the process is at fault (the reconcile loop, its Lease and watches, the
    /// caches), 0 otherwise; the reason is in the log and in [`Metrics::problems`].
    pub reconcile_up: Gauge,
    /// 1 while that part is at fault (see [`crate::health::Faults`]).
    pub problems: Family<ProblemLabels, Gauge>,
    /// Request bytes reserved by reviews waiting for or under judgment, and the budget for them.
    pub review_bytes_in_flight: Gauge,
    pub review_bytes_budget: Gauge,
    /// Reviews refused with HTTP 429 because the budget had no room for them.
    pub review_budget_refusals: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let reviews = Family::<ReviewLabels, Counter>::default();
        // 25 µs .. ~0.8 s: the interesting range of an in-memory review.
        let review_seconds = Family::<EndpointLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(25e-6, 2.0, 16))) as fn() -> Histogram,
        );
        let tls_handshake_failures = Counter::default();
        let cert_reload_failures = Counter::default();
        let cert_expiry_seconds = Gauge::default();
        let mut registry = Registry::with_prefix("offloading_webhook");
        registry.register("admission_reviews", "Admission reviews answered", reviews.clone());
        registry.register(
            "admission_review_duration_seconds",
            "Time to answer one admission review, body read to response",
            review_seconds.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            tls_handshake_failures.clone(),
        );
        registry.register(
            "certificate_reload_failures",
            "Certificate reloads that failed (the last good certificate kept serving)",
            cert_reload_failures.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "Unix time at which the serving certificate expires",
            cert_expiry_seconds.clone(),
        );
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(1e-4, 2.0, 16));
        let objects = Family::<PhaseLabels, Gauge>::default();
        let writes = Family::<WriteLabels, Counter>::default();
        registry.register("reconciles", "NamespaceOffloading reconciles by result", reconciles.clone());
        registry.register(
            "reconcile_duration_seconds",
            "Time of one NamespaceOffloading reconcile",
            reconcile_seconds.clone(),
        );
        registry.register(
            "namespace_offloadings",
            "NamespaceOffloadings per offloading phase (exported by the active reconciler only)",
            objects.clone(),
        );
        registry.register(
            "reconcile_writes",
            "Writes issued by the reconcile loop (finalizers, Events and Lease renewals included), by resource",
            writes.clone(),
        );
        let decode_failures = Family::<KindLabels, Counter>::default();
        registry.register(
            "decode_failures",
            "Stored objects (each version once) that could not be decoded, left alone by the reconcile loop",
            decode_failures.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica is the active reconciler (holds the Lease and reconciles), else 0",
            leader.clone(),
        );
        let other_installs = Gauge::default();
        registry.register(
            "other_installs",
            "Other installs of offloading-webhook whose reconcile Lease may be live on this cluster (seen by the Lease holder)",
            other_installs.clone(),
        );
        let reconcile_up = Gauge::default();
        reconcile_up.set(1);
        registry.register(
            "reconcile_up",
            "1 while the reconcile loop's parts (its Lease, watches and writes, the caches it shares with the webhook) work; 0 with the reason in the log. Never a reason for /readyz to fail",
            reconcile_up.clone(),
        );
        let problems = Family::<ProblemLabels, Gauge>::default();
        registry.register(
            "problem",
            "1 while that part keeps the process from some of its job (the reason is in the log), 0 once fixed",
            problems.clone(),
        );
        let review_bytes_in_flight = Gauge::default();
        let review_bytes_budget = Gauge::default();
        let review_budget_refusals = Counter::default();
        registry.register(
            "review_bytes_in_flight",
            "Request body bytes reserved by reviews waiting for or under judgment",
            review_bytes_in_flight.clone(),
        );
        registry.register(
            "review_bytes_budget",
            "The budget of request body bytes in flight (--max-review-bytes-in-flight)",
            review_bytes_budget.clone(),
        );
        registry.register(
            "review_budget_refusals",
            "Reviews refused with HTTP 429 because the budget of bytes in flight had no room for them",
            review_budget_refusals.clone(),
        );
        Self {
            registry,
            reviews,
            review_seconds,
            tls_handshake_failures,
            cert_reload_failures,
            cert_expiry_seconds,
            reconciles,
            reconcile_seconds,
            objects,
            writes,
            decode_failures,
            leader,
            other_installs,
            reconcile_up,
            problems,
            review_bytes_in_flight,
            review_bytes_budget,
            review_budget_refusals,
        }
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts one write to `resource` (see [`WriteLabels`]).
    pub fn wrote(&self, resource: &'static str) {
        self.writes.get_or_create(&WriteLabels { resource }).inc();
    }

    /// This replica stopped reconciling: the leader gauge drops, and the phase gauges, which only
    /// the active reconciler exports, go.
    pub fn not_leading(&self) {
        self.leader.set(0);
        self.objects.clear();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

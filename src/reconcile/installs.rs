//! Two installs of offloading-webhook on one cluster (two Helm releases in two namespaces) each
//! elect a leader through a Lease of their own namespace, and both leaders would reconcile the same
//! objects. A single cluster-wide Lease would make that impossible, but it needs a namespace every
//! install can write to and that outlives each of them; instead every install labels its Lease
//! ([`LABELS`]), and the holder lists such Leases cluster-wide each retry period. When another
//! install's Lease may be live, the older install (its Lease created first, by the API server's
//! clock; then the namespace's name) reconciles and the other holds its own Lease but stands by,
//! says so in an error line and in `offloading_webhook_other_installs`.
//!
//! "May be live" is judged, like expiry, by this process's own observation: a Lease that holds a
//! holder (or that we saw held and then released: its standby may be taking over) is live until
//! its record has stayed unchanged for its duration by our clock. The order compares two values
//! written by the API server (`creationTimestamp`), the same on both sides, so clock skew cannot
//! make both installs think they are first. And the older install starts only once the younger
//! has had a third of its Lease's duration to see it and stand by (a younger holder lists every
//! retry period, about 1/7 of it, and stops within a grace of a second), so that a younger install
//! that was reconciling, while the older one had none of its replicas running, has stopped first.
//! An install that may not list Leases cluster-wide cannot see the others: that is logged, and it
//! reconciles as if alone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use tokio::time::Instant;

use super::lease::{Observed, Record};

/// The labels on every install's reconcile Lease, by which the others find it.
pub const LABELS: [(&str, &str); 2] =
    [("app.kubernetes.io/name", "offloading-webhook"), ("app.kubernetes.io/component", "reconciler")];

/// The label selector of [`LABELS`].
pub fn selector() -> String {
    LABELS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Which of two installs reconciles: the smaller. `created` first (the API server's clock, one
/// value both sides read alike), then the namespace and the name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seniority {
    pub created: Option<Timestamp>,
    pub namespace: String,
    pub name: String,
}

impl Seniority {
    pub fn of(lease: &Lease) -> Self {
        Self {
            created: lease.metadata.creation_timestamp.as_ref().map(|t| t.0),
            namespace: lease.namespace().unwrap_or_default(),
            name: lease.name_any(),
        }
    }

    /// `namespace/name`, for log lines.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// One install's Lease as listed.
#[derive(Debug, Clone)]
pub struct InstallLease {
    pub seniority: Seniority,
    pub record: Record,
}

impl InstallLease {
    pub fn of(lease: &Lease) -> Self {
        Self { seniority: Seniority::of(lease), record: Record::of(lease) }
    }
}

struct Seen {
    lease: InstallLease,
    observed: Observed,
    /// Whether its record changed while we watched (a release after a holder counts as life).
    changed: bool,
}

/// What this process has seen of the other installs' Leases.
#[derive(Default)]
pub struct Installs {
    seen: BTreeMap<(String, String), Seen>,
}

impl Installs {
    /// A new list of the other installs' Leases (ours left out), read at `now`. A Lease gone from
    /// the list is forgotten.
    pub fn listed(&mut self, leases: Vec<InstallLease>, now: Instant) {
        let mut seen = BTreeMap::new();
        for lease in leases {
            let key = (lease.seniority.namespace.clone(), lease.seniority.name.clone());
            let before = self.seen.remove(&key);
            let changed = before.as_ref().is_some_and(|b| b.changed || b.observed.record != lease.record);
            let observed = Observed::fold(before.map(|b| b.observed), lease.record.clone(), now);
            seen.insert(key, Seen { lease, observed, changed });
        }
        self.seen = seen;
    }

    /// The other installs that may be reconciling at `now` (see the module's comment), oldest
    /// first. `fallback` is the duration of a Lease that does not say its own.
    pub fn live(&self, now: Instant, fallback: Duration) -> Vec<&InstallLease> {
        let mut live: Vec<&InstallLease> = self
            .seen
            .values()
            .filter(|s| {
                !s.observed.expired(now, fallback) && (s.lease.record.holder().is_some() || s.changed)
            })
            .map(|s| &s.lease)
            .collect();
        live.sort_by(|a, b| a.seniority.cmp(&b.seniority));
        live
    }
}

/// Whether this install reconciles, given the other installs that may be live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No other install: reconcile.
    Alone,
    /// Others are live, all younger: reconcile, once they have had `wait` to see this one and
    /// stand by. `others` are their Leases (`namespace/name`).
    Senior { wait: Duration, others: Vec<String> },
    /// An older install (its Lease `namespace/name`) reconciles: stand by.
    Junior { senior: String, others: Vec<String> },
}

impl Verdict {
    pub fn others(&self) -> &[String] {
        match self {
            Verdict::Alone => &[],
            Verdict::Senior { others, .. } | Verdict::Junior { others, .. } => others,
        }
    }

    /// The set of other installs, to say a change once.
    pub fn others_set(&self) -> BTreeSet<String> {
        self.others().iter().cloned().collect()
    }
}

/// Pure: which install reconciles.
pub fn arbitrate(ours: &Seniority, live: &[&InstallLease], fallback: Duration) -> Verdict {
    let others: Vec<String> = live.iter().map(|l| l.seniority.key()).collect();
    match live.iter().filter(|l| l.seniority < *ours).min_by(|a, b| a.seniority.cmp(&b.seniority)) {
        Some(senior) => Verdict::Junior { senior: senior.seniority.key(), others },
        None if live.is_empty() => Verdict::Alone,
        None => {
            let wait = live.iter().map(|l| l.record.duration(fallback) / 3).max().unwrap_or_default();
            Verdict::Senior { wait, others }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn at(s: i64) -> Option<Timestamp> {
        Some(Timestamp::from_second(1_700_000_000 + s).unwrap())
    }

    fn lease(namespace: &str, created: i64, holder: Option<&str>, rv: &str) -> InstallLease {
        InstallLease {
            seniority: Seniority {
                created: at(created),
                namespace: namespace.into(),
                name: "offloading-webhook-reconciler".into(),
            },
            record: Record {
                holder: holder.map(str::to_owned),
                duration_seconds: Some(15),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
        }
    }

    fn ours(created: i64, namespace: &str) -> Seniority {
        Seniority {
            created: at(created),
            namespace: namespace.into(),
            name: "offloading-webhook-reconciler".into(),
        }
    }

    #[test]
    fn the_older_install_reconciles_and_the_younger_stands_by() {
        let t0 = Instant::now();
        let mut seen = Installs::default();
        seen.listed(vec![lease("team-b", 100, Some("b-1"), "7")], t0);
        let live = seen.live(t0, D);
        // We are older: reconcile, once the other has had a third of its duration to see us.
        assert_eq!(
            arbitrate(&ours(50, "team-a"), &live, D),
            Verdict::Senior {
                wait: Duration::from_secs(5),
                others: vec!["team-b/offloading-webhook-reconciler".into()]
            }
        );
        // We are younger: stand by.
        assert_eq!(
            arbitrate(&ours(200, "team-a"), &live, D),
            Verdict::Junior {
                senior: "team-b/offloading-webhook-reconciler".into(),
                others: vec!["team-b/offloading-webhook-reconciler".into()]
            }
        );
        // Created in the same second: the namespace's name decides, the same way on both sides.
        assert!(matches!(arbitrate(&ours(100, "team-a"), &live, D), Verdict::Senior { .. }));
        assert!(matches!(arbitrate(&ours(100, "team-c"), &live, D), Verdict::Junior { .. }));
        assert_eq!(arbitrate(&ours(1, "x"), &[], D), Verdict::Alone);
    }

    #[test]
    fn another_install_is_live_until_its_lease_stays_unchanged_for_its_duration_by_our_clock() {
        let t0 = Instant::now();
        let mut seen = Installs::default();
        seen.listed(vec![lease("team-b", 100, Some("b-1"), "7")], t0);
        seen.listed(vec![lease("team-b", 100, Some("b-1"), "7")], t0 + Duration::from_secs(14));
        assert_eq!(seen.live(t0 + Duration::from_secs(14), D).len(), 1);
        // Unchanged for 15 s since we first saw it: its install is gone (or cannot renew).
        seen.listed(vec![lease("team-b", 100, Some("b-1"), "7")], t0 + D);
        assert!(seen.live(t0 + D, D).is_empty());
        // Renewed again: live again, for another 15 s from now.
        seen.listed(vec![lease("team-b", 100, Some("b-1"), "8")], t0 + Duration::from_secs(20));
        assert_eq!(seen.live(t0 + Duration::from_secs(34), D).len(), 1);
        assert!(seen.live(t0 + Duration::from_secs(35), D).is_empty());
    }

    #[test]
    fn a_release_seen_after_a_holder_is_a_handover_but_a_lease_found_released_is_not_an_install() {
        let t0 = Instant::now();
        let mut seen = Installs::default();
        // Left behind released by an uninstalled release: nobody reconciles there.
        seen.listed(vec![lease("old", 1, None, "3")], t0);
        assert!(seen.live(t0, D).is_empty());
        // Held, then released (a rolling update): its standby takes over any moment.
        seen.listed(vec![lease("team-b", 100, Some("b-1"), "7")], t0);
        seen.listed(vec![lease("team-b", 100, None, "8")], t0 + Duration::from_secs(1));
        assert_eq!(seen.live(t0 + Duration::from_secs(2), D).len(), 1);
        assert!(seen.live(t0 + Duration::from_secs(16), D).is_empty());
        // A Lease gone from the list is forgotten.
        seen.listed(vec![], t0 + Duration::from_secs(3));
        assert!(seen.live(t0 + Duration::from_secs(3), D).is_empty());
    }

    #[test]
    fn the_selector_names_both_labels() {
        assert_eq!(
            selector(),
            "app.kubernetes.io/name=offloading-webhook,app.kubernetes.io/component=reconciler"
        );
    }
}

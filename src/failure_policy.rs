//! One policy for a failed request or watch against the API server, whoever makes it (the watches
//! of [`crate::cluster::ClusterView`], those of the reconcile loop, the Lease):
//!
//! 1. **explain** it: the verb, the resource and the fix ([`crate::health::explain`]);
//! 2. **classify** it ([`Kind`]): an answer no retry changes until someone fixes the setup (401, 403,
//!    404: RBAC, a missing namespace or CRD, credentials) is a misconfiguration, a fault of its
//!    part; anything else (an API server restarting, a timeout) is passing;
//! 3. **say it once** ([`Said`]): a fault is said when it appears or changes, and once more when
//!    the part works again; a passing failure as its caller's retry rhythm warrants ([`Repeat`]);
//! 4. **back off**: a watch retries as kube-runtime's do ([`retried`]); a request, on its caller's
//!    own timer (the Lease's retry period).
//!
//! Nothing here fails `/readyz`: a fault is reported (log, `offloading_webhook_problem{part}`), and
//! the watch keeps what it knew meanwhile. [`Said`] is pure; [`WatchHealth`] applies it to a watch's
//! events, with the fault record and the log lines.

use futures::{Stream, StreamExt, future};
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::StreamBackoff;
use kube::runtime::watcher::{self, DefaultBackoff};
use tracing::{info, warn};

use crate::health::{Access, CLUSTER_ROLE, Faults, explain_watch};

/// How a failure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No retry changes it until someone fixes the setup: a fault of its part.
    Misconfiguration,
    /// It may pass by itself: logged and retried, never a fault.
    Passing,
}

impl Kind {
    /// The kind of an API answer with this HTTP status code.
    pub fn of_status(code: u16) -> Self {
        if matches!(code, 401 | 403 | 404) { Kind::Misconfiguration } else { Kind::Passing }
    }

    /// The kind of a failed request: only an answer of the API server can be a misconfiguration.
    pub fn of(err: &kube::Error) -> Self {
        match err {
            kube::Error::Api(s) => Kind::of_status(s.code),
            _ => Kind::Passing,
        }
    }

    /// The kind of a watch's error.
    pub fn of_watch(err: &watcher::Error) -> Self {
        match err {
            watcher::Error::InitialListFailed(e)
            | watcher::Error::WatchStartFailed(e)
            | watcher::Error::WatchFailed(e) => Kind::of(e),
            watcher::Error::WatchError(s) => Kind::of_status(s.code),
            _ => Kind::Passing,
        }
    }
}

/// How often a passing failure is said: as often as its caller retries it is worth a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Each time: a watch backs off between tries (up to 30 s), so each failure is a line.
    EachTime,
    /// When it differs from the last failure said since the last success: a request retried on a
    /// short timer (the Lease's, 2 s) would fill the log.
    OnChange,
    /// Never: the caller does without the answer meanwhile, and only a misconfiguration needs a fix.
    Never,
}

/// What to do after an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub say: Say,
    pub fault: Fault,
}

/// The log line an outcome earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Say {
    Nothing,
    /// A warning with the explanation: the part failed.
    Failed,
    /// The part works again after a fault.
    Recovered,
}

/// What becomes of the part's fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Keep,
    /// Record this sentence as the part's fault.
    Set(String),
    Clear,
}

/// What one part has said of its failures: the state of the policy, for one writer.
#[derive(Debug, Clone, Default)]
pub struct Said {
    /// The fault recorded (a misconfiguration's sentence), until a success.
    fault: Option<String>,
    /// The last failure since the last success.
    last: Option<String>,
}

impl Said {
    /// A failure of `kind`, told by `sentence` (what the fault record holds).
    pub fn failed(&mut self, kind: Kind, sentence: String, repeat: Repeat) -> Step {
        let step = match kind {
            Kind::Misconfiguration => {
                let new = self.fault.as_ref() != Some(&sentence);
                self.fault = Some(sentence.clone());
                Step {
                    say: if new { Say::Failed } else { Say::Nothing },
                    fault: Fault::Set(sentence.clone()),
                }
            }
            Kind::Passing => {
                let say = match repeat {
                    Repeat::EachTime => true,
                    Repeat::OnChange => self.last.as_ref() != Some(&sentence),
                    Repeat::Never => false,
                };
                Step { say: if say { Say::Failed } else { Say::Nothing }, fault: Fault::Keep }
            }
        };
        self.last = Some(sentence);
        step
    }

    /// A success: a fault is over, and said to be.
    pub fn succeeded(&mut self) -> Step {
        self.last = None;
        match self.fault.take() {
            Some(_) => Step { say: Say::Recovered, fault: Fault::Clear },
            None => Step { say: Say::Nothing, fault: Fault::Keep },
        }
    }

    /// The last failure since the last success.
    pub fn last(&self) -> Option<&str> {
        self.last.as_deref()
    }

    /// Whether a fault is recorded.
    pub fn at_fault(&self) -> bool {
        self.fault.is_some()
    }
}

/// Applies `step`'s fault to `part` of `faults`.
pub fn record(faults: &Faults, part: &'static str, step: &Step) {
    match &step.fault {
        Fault::Keep => {}
        Fault::Set(sentence) => {
            faults.set(part, sentence.clone());
        }
        Fault::Clear => {
            faults.clear(part);
        }
    }
}

/// A watch as every watch here runs: after an error, kube-runtime's default backoff (from 0.8 s,
/// doubling to 30 s, jittered; reset once the watch has worked for a while).
pub fn retried<S>(watch: S) -> StreamBackoff<S, DefaultBackoff>
where
    S: futures::TryStream,
{
    watch.default_backoff()
}

/// A watch under the policy: backed off after an error ([`retried`]), each outcome told to `health`,
/// and only the items that came through yielded: the caller keeps what it knew meanwhile.
pub fn watched<S, T>(watch: S, mut health: WatchHealth) -> impl Stream<Item = T> + Send
where
    S: Stream<Item = Result<T, watcher::Error>> + Send,
    T: Send,
{
    retried(watch).filter_map(move |event| {
        health.event(&event);
        future::ready(event.ok())
    })
}

/// One watch's health under `part`: the policy applied to each of its events, with the fault
/// record and the log lines (`{what} watch failed; retrying`, `{what} watch works again`).
pub struct WatchHealth {
    faults: Faults,
    part: &'static str,
    what: String,
    resource: String,
    namespace: Option<String>,
    role: &'static str,
    said: Said,
}

impl WatchHealth {
    /// A watch (list and watch) of `resource`, in `namespace` or cluster-wide, whose rights are in
    /// `role`; `what` names it in the log.
    pub fn new(
        faults: Faults,
        part: &'static str,
        what: &str,
        resource: &str,
        namespace: Option<&str>,
        role: &'static str,
    ) -> Self {
        Self {
            faults,
            part,
            what: what.to_owned(),
            resource: resource.to_owned(),
            namespace: namespace.map(str::to_owned),
            role,
            said: Said::default(),
        }
    }

    /// A cluster-wide watch of the reconcile loop: its part and its words are the resource's, its
    /// rights in [`CLUSTER_ROLE`].
    pub fn of_loop(faults: Faults, resource: &'static str) -> Self {
        Self::new(faults, resource, resource, resource, None, CLUSTER_ROLE)
    }

    /// One event of the watch (an item, or the error it gave instead).
    pub fn event<T>(&mut self, event: &Result<T, watcher::Error>) {
        let (part, what) = (self.part, self.what.as_str());
        match event {
            Ok(_) => {
                let step = self.said.succeeded();
                record(&self.faults, part, &step);
                if step.say == Say::Recovered {
                    info!(part, "{what} watch works again");
                }
            }
            Err(e) => {
                let access = Access {
                    verb: "list and watch",
                    resource: &self.resource,
                    namespace: self.namespace.as_deref(),
                    role: self.role,
                };
                let problem = explain_watch(e, access);
                let step =
                    self.said.failed(Kind::of_watch(e), format!("{what}: {problem}"), Repeat::EachTime);
                record(&self.faults, part, &step);
                if step.say == Say::Failed {
                    warn!(part, %problem, "{what} watch failed; retrying");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Status::failure(message, reason).with_code(code).boxed())
    }

    #[test]
    fn refusals_and_missing_things_are_misconfigurations_the_rest_passes() {
        for code in [401, 403, 404] {
            assert_eq!(Kind::of(&api(code, "x", "y")), Kind::Misconfiguration, "{code}");
            assert_eq!(
                Kind::of_watch(&watcher::Error::WatchFailed(api(code, "x", "y"))),
                Kind::Misconfiguration
            );
        }
        for code in [409, 410, 429, 500, 503] {
            assert_eq!(Kind::of(&api(code, "x", "y")), Kind::Passing, "{code}");
        }
        assert_eq!(Kind::of_watch(&watcher::Error::NoResourceVersion), Kind::Passing);
        let status = Status::failure("gone", "Expired").with_code(410);
        assert_eq!(Kind::of_watch(&watcher::Error::WatchError(status.boxed())), Kind::Passing);
    }

    #[test]
    fn a_fault_is_said_once_again_when_it_changes_and_once_when_it_clears() {
        let mut s = Said::default();
        let forbidden = || "forbidden".to_owned();
        let step = s.failed(Kind::Misconfiguration, forbidden(), Repeat::EachTime);
        assert_eq!(step, Step { say: Say::Failed, fault: Fault::Set(forbidden()) });
        assert_eq!(s.failed(Kind::Misconfiguration, forbidden(), Repeat::EachTime).say, Say::Nothing);
        assert!(s.at_fault());
        // A passing failure in between keeps the fault, and does not make it new again.
        assert_eq!(s.failed(Kind::Passing, "timeout".into(), Repeat::OnChange).fault, Fault::Keep);
        assert_eq!(s.failed(Kind::Misconfiguration, forbidden(), Repeat::EachTime).say, Say::Nothing);
        assert_eq!(s.failed(Kind::Misconfiguration, "not found".into(), Repeat::EachTime).say, Say::Failed);
        assert_eq!(s.succeeded(), Step { say: Say::Recovered, fault: Fault::Clear });
        assert_eq!(s.succeeded(), Step { say: Say::Nothing, fault: Fault::Keep });
        // After the fix, the same fault is new again.
        assert_eq!(s.failed(Kind::Misconfiguration, forbidden(), Repeat::EachTime).say, Say::Failed);
    }

    #[test]
    fn a_passing_failure_is_said_as_often_as_its_retries_warrant_and_never_a_fault() {
        let says = |repeat: Repeat| {
            let mut s = Said::default();
            let mut out = Vec::new();
            for sentence in ["down", "down", "refused", "down"] {
                let step = s.failed(Kind::Passing, sentence.into(), repeat);
                assert_eq!(step.fault, Fault::Keep);
                out.push(step.say == Say::Failed);
            }
            assert_eq!(s.last(), Some("down"));
            // Nothing was a fault: the success that follows says nothing.
            assert_eq!(s.succeeded().say, Say::Nothing);
            assert_eq!(s.last(), None);
            out
        };
        assert_eq!(says(Repeat::EachTime), [true, true, true, true]);
        assert_eq!(says(Repeat::OnChange), [true, false, true, true]);
        assert_eq!(says(Repeat::Never), [false, false, false, false]);
        // A success in between makes the same failure worth saying again.
        let mut s = Said::default();
        s.failed(Kind::Passing, "down".into(), Repeat::OnChange);
        s.succeeded();
        assert_eq!(s.failed(Kind::Passing, "down".into(), Repeat::OnChange).say, Say::Failed);
    }

    #[test]
    fn a_watch_fault_is_recorded_until_an_event_arrives() {
        let f = Faults::default();
        let mut maps = WatchHealth::of_loop(f.clone(), "namespacemaps");
        let forbidden: Result<(), watcher::Error> = Err(watcher::Error::WatchFailed(api(
            403,
            "Forbidden",
            r#"namespacemaps is forbidden: User "x" cannot watch resource "namespacemaps""#,
        )));
        maps.event(&forbidden);
        let said = f.get("namespacemaps").unwrap_or_default();
        assert!(
            said.starts_with(r#"namespacemaps: forbidden to list and watch namespacemaps cluster-wide"#),
            "{said}"
        );
        // A passing failure is not a fault.
        let mut secrets = WatchHealth::of_loop(f.clone(), "secrets");
        let gone: Result<(), watcher::Error> =
            Err(watcher::Error::WatchFailed(api(500, "InternalError", "etcd leader changed")));
        secrets.event(&gone);
        assert_eq!(f.get("secrets"), None);
        maps.event(&Ok::<(), watcher::Error>(()));
        assert_eq!(f.summary(), None);
    }

    #[test]
    fn a_namespaced_watch_names_its_namespace_and_role() {
        let f = Faults::default();
        let role = crate::health::CLUSTER_ID_ROLE;
        let mut w = WatchHealth::new(
            f.clone(),
            "cluster-id",
            "cluster id ConfigMap",
            "configmaps",
            Some("liqo"),
            role,
        );
        w.event(&Err::<(), _>(watcher::Error::InitialListFailed(api(403, "Forbidden", "no"))));
        let said = f.get("cluster-id").unwrap_or_default();
        assert!(
            said.starts_with(
                "cluster id ConfigMap: forbidden to list and watch configmaps in namespace \"liqo\""
            ),
            "{said}"
        );
        assert!(said.contains(role), "{said}");
    }
}

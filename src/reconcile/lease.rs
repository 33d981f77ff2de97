//! One active reconciler among replicas, through a coordination.k8s.io Lease. A small loop:
//! create or renew the Lease while holding it, take it over once it has expired, release it on
//! shutdown so a standby takes over at once. Conflicts are the arbitration: the API server lets
//! one writer of a given resourceVersion win.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::{Client, Error};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::health::{Access, Faults, LEASE_ROLE, explain};
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease not renewed stays held.
    pub duration: Duration,
    /// How often the holder renews and a standby retries.
    pub retry: Duration,
}

enum Outcome {
    Leading,
    Standby(String),
}

/// Runs `work` while this replica holds the Lease; cancels the token it got when leadership is
/// lost. Returns when `stop` is cancelled, after releasing the Lease if held.
pub async fn run_while_leader<F, Fut>(
    client: Client,
    cfg: LeaseConfig,
    faults: Faults,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    work: F,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut running: Option<(CancellationToken, tokio::task::JoinHandle<()>)> = None;
    let mut last_holder = String::new();
    loop {
        let outcome = try_acquire(&api, &cfg, &metrics).await;
        match outcome {
            Ok(Outcome::Leading) => {
                if running.is_none() {
                    info!(lease = %cfg.name, identity = %cfg.identity, "became the active reconciler");
                    let token = stop.child_token();
                    running = Some((token.clone(), tokio::spawn(work(token))));
                }
            }
            Ok(Outcome::Standby(holder)) => {
                if let Some((token, task)) = running.take() {
                    warn!(lease = %cfg.name, %holder, "lost the lease; stopping the reconcile loop");
                    token.cancel();
                    let _ = task.await;
                }
                if holder != last_holder {
                    info!(lease = %cfg.name, %holder, "standing by: another replica reconciles");
                    last_holder = holder;
                }
            }
            Err((verb, e)) => {
                let access = Access {
                    verb,
                    resource: "leases.coordination.k8s.io",
                    namespace: Some(&cfg.namespace),
                    role: LEASE_ROLE,
                };
                let problem = format!(
                    "the reconcile loop cannot run: Lease {}/{}: {} (the Lease's namespace is \
                     --lease-namespace, env POD_NAMESPACE; --reconcile=false runs the webhooks alone)",
                    cfg.namespace,
                    cfg.name,
                    explain(&e, access)
                );
                // A misconfiguration (RBAC, a missing namespace) is said once and carried by
                // /readyz until fixed; a passing failure (an API server restart) only logged.
                if !is_misconfiguration(&e) {
                    warn!(lease = %cfg.name, namespace = %cfg.namespace, %problem, "could not acquire or renew the lease; retrying");
                } else if faults.set("lease", problem.clone()) {
                    warn!(lease = %cfg.name, namespace = %cfg.namespace, %problem, "could not acquire or renew the lease; retrying");
                }
                continue_after(&stop, cfg.retry).await;
                if stop.is_cancelled() {
                    break;
                }
                continue;
            }
        }
        if faults.clear("lease") {
            info!(lease = %cfg.name, namespace = %cfg.namespace, "the Lease can be used again");
        }
        continue_after(&stop, cfg.retry).await;
        if stop.is_cancelled() {
            break;
        }
    }
    if let Some((token, task)) = running.take() {
        token.cancel();
        let _ = task.await;
        if let Err(e) = release(&api, &cfg, &metrics).await {
            warn!(error = %e, "could not release the lease; a standby takes over once it expires");
        } else {
            info!(lease = %cfg.name, "released the lease");
        }
    }
}

/// An answer that no retry will change until someone fixes the setup.
fn is_misconfiguration(e: &Error) -> bool {
    matches!(e, Error::Api(s) if matches!(s.code, 401 | 403 | 404))
}

/// Waits `retry`, or less when `stop` comes first.
async fn continue_after(stop: &CancellationToken, retry: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(retry) => {}
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// The verb that failed, and how.
type Failure = (&'static str, Error);

async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig, metrics: &Metrics) -> Result<Outcome, Failure> {
    let seconds = i32::try_from(cfg.duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&cfg.name).await.map_err(|e| ("get", e))? else {
        let lease = Lease {
            metadata: ObjectMeta { name: Some(cfg.name.clone()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        metrics.wrote("leases");
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Outcome::Leading),
            Err(Error::Api(s)) if s.is_already_exists() => {
                Ok(Outcome::Standby("(just created by another)".into()))
            }
            Err(e) => Err(("create", e)),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(t), Some(d)) => {
            t.0.saturating_add(SignedDuration::from_secs(i64::from(d)))
                .is_ok_and(|end| end < Timestamp::now())
        }
        _ => true,
    };
    if holder != cfg.identity && !holder.is_empty() && !expired {
        return Ok(Outcome::Standby(holder));
    }
    if holder != cfg.identity {
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.holder_identity = Some(cfg.identity.clone());
    }
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(seconds);
    // The resourceVersion in `lease` makes this a compare-and-swap.
    metrics.wrote("leases");
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Outcome::Leading),
        Err(Error::Api(s)) if s.is_conflict() => Ok(Outcome::Standby(holder)),
        Err(e) => Err(("update", e)),
    }
}

async fn release(api: &Api<Lease>, cfg: &LeaseConfig, metrics: &Metrics) -> Result<(), Error> {
    let mut lease = api.get(&cfg.name).await?;
    if let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(cfg.identity.as_str())
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        metrics.wrote("leases");
        api.replace(&cfg.name, &PostParams::default(), &lease).await?;
    }
    Ok(())
}

//! Certificates the replicas keep themselves (`serve --certificate-source=managed`): a CA and a
//! serving pair in one Secret, filled in when empty (created when absent, where allowed), renewed
//! before they expire by whichever replica looks first. Every write replaces the Secret with the
//! resourceVersion just read, a compare-and-swap: two replicas that decide at once cannot both
//! win, and the loser reads the winner's work. Every replica loads the serving pair from the Secret
//! (keeping the last good one) and publishes its trust bundle, `ca-bundle.crt`, as the caBundle of
//! the registrations ([`crate::registration`]).
//!
//! Renewal, once two thirds of a certificate's lifetime are gone:
//! - the serving certificate is signed again by the same CA, which every caBundle trusts already;
//!   replicas load it within the reload interval, long before the old one expires (a third of
//!   its lifetime later);
//! - the CA in two steps. *Staged*: a new CA joins the trust bundle while the current one still
//!   signs. *Promoted*, once every registration trusts the new CA and at least the promotion delay
//!   after it was staged (the API servers' caches): it signs a new serving certificate. The old
//!   CA stays in the bundle until it expires, so a replica that still serves the old pair, however
//!   late it reads the Secret, is trusted meanwhile; an expired CA leaves the bundle.
//!
//! [`plan`] decides (pure, the time a parameter); [`write`] makes the new contents; [`Keeper`]
//! reads, loads and writes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::pki::{self, CertInfo, Pair, PkiError};
use crate::health::{Access, Faults, explain};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
/// The CAs the registrations trust (PEM): the current one, a staged one, older unexpired ones.
pub const BUNDLE: &str = "ca-bundle.crt";
pub const NEXT_CA_CERT: &str = "next-ca.crt";
pub const NEXT_CA_KEY: &str = "next-ca.key";
/// The fault `/readyz` reports until a serving pair is loaded.
pub const FAULT: &str = "certificate";
const SECRET_ROLE: &str = "the Role offloading-webhook-registration (in the webhook's namespace)";

#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    #[error(
        "--cert-validity {given}s is too short for --cert-reload-seconds {reload}: a renewed certificate must reach every replica long before the old one expires; give at least {min}s"
    )]
    CertTooShort { given: i64, reload: u64, min: i64 },
    #[error(
        "--ca-validity {given}s is too short for --cert-reload-seconds {reload}: a new CA must be trusted by the registrations, and then served by every replica, before the old one expires; give at least {min}s"
    )]
    CaTooShort { given: i64, reload: u64, min: i64 },
    #[error(
        "--certificate-source=managed keeps the certificate in a Secret and needs a cluster: drop --no-cluster, or serve files with --certificate-source=files"
    )]
    NoCluster,
    #[error(
        "the managed certificate has no name to be valid for: give --webhook-service or --webhook-url (or --certificate-name)"
    )]
    NoNames,
}

/// How the managed certificates are made and renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Lifetimes, in seconds.
    pub ca_validity: i64,
    pub cert_validity: i64,
    /// How long a staged CA is trusted before it signs, in seconds.
    pub promote_after: i64,
    /// The names the serving certificate must carry (DNS names or IP addresses).
    pub names: Vec<String>,
}

impl Policy {
    /// Checks the lifetimes against the reload interval (seconds): each renewal must reach every
    /// replica within a third of the lifetime, several reload intervals over.
    pub fn new(
        ca_validity: Duration,
        cert_validity: Duration,
        reload: Duration,
        names: Vec<String>,
    ) -> Result<Self, ManagedError> {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let reload_s = secs(reload).max(1);
        let promote_after = (2 * reload_s).max(10);
        let (ca, cert) = (secs(ca_validity), secs(cert_validity));
        let cert_min = 9 * reload_s;
        if cert < cert_min {
            return Err(ManagedError::CertTooShort { given: cert, reload: reload.as_secs(), min: cert_min });
        }
        let ca_min = 3 * (promote_after + 3 * reload_s);
        if ca < ca_min {
            return Err(ManagedError::CaTooShort { given: ca, reload: reload.as_secs(), min: ca_min });
        }
        if names.is_empty() {
            return Err(ManagedError::NoNames);
        }
        Ok(Self { ca_validity: ca, cert_validity: cert, promote_after, names })
    }
}

/// A certificate and key from the Secret that parse and belong together.
#[derive(Debug, Clone)]
pub struct Slot {
    pub pair: Pair,
    pub info: CertInfo,
}

/// The Secret's contents, read.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The CA that signs, or why there is none usable.
    pub ca: Result<Slot, String>,
    pub serving: Result<Slot, String>,
    /// A staged CA (absent outside a rotation).
    pub next: Option<Result<Slot, String>>,
    pub bundle: Vec<CertInfo>,
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    data.get(key).map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

fn slot(
    data: &BTreeMap<String, ByteString>,
    cert: &str,
    key: &str,
    what: &'static str,
) -> Option<Result<Slot, String>> {
    let (c, k) = (text(data, cert), text(data, key));
    if c.is_none() && k.is_none() {
        return None;
    }
    let pair = Pair { cert: c.unwrap_or_default(), key: k.unwrap_or_default() };
    Some(pki::parse_pair(&pair, what).map(|info| Slot { pair, info }).map_err(|e| e.to_string()))
}

/// Reads the Secret's data.
pub fn read(data: &BTreeMap<String, ByteString>) -> Stored {
    let missing = |what: &str| format!("no {what} yet");
    Stored {
        ca: slot(data, CA_CERT, CA_KEY, "CA").unwrap_or_else(|| Err(missing("CA"))),
        serving: slot(data, TLS_CERT, TLS_KEY, "serving certificate")
            .unwrap_or_else(|| Err(missing("serving certificate"))),
        next: slot(data, NEXT_CA_CERT, NEXT_CA_KEY, "staged CA"),
        bundle: data.get(BUNDLE).map(|b| pki::parse_bundle(&b.0)).unwrap_or_default(),
    }
}

/// What to write next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A new CA and serving pair: there is no usable CA (a new Secret, an expired or broken CA).
    Create,
    /// A new CA joins the trust bundle; the current one still signs.
    StageCa,
    /// The staged CA signs a new serving certificate; the old one stays trusted until it expires.
    PromoteCa,
    /// A new serving certificate from the current CA.
    RenewServing,
    /// The trust bundle rewritten: the current and staged CAs in, expired ones out.
    FixBundle,
    Keep,
}

/// Decides the next write. `next_trusted`: whether every registration trusts the staged CA.
pub fn plan(stored: &Stored, now: i64, policy: &Policy, next_trusted: bool) -> (Step, String) {
    let ca = match &stored.ca {
        Ok(ca) if !ca.info.expired(now) => ca,
        Ok(_) => return (Step::Create, "the CA has expired".into()),
        Err(why) => return (Step::Create, why.clone()),
    };
    match &stored.next {
        Some(Ok(next)) if !next.info.expired(now) => {
            let since = now - next.info.issued_at();
            if since >= policy.promote_after && next_trusted {
                return (
                    Step::PromoteCa,
                    format!("the CA staged {since}s ago is trusted by the registrations"),
                );
            }
        }
        _ if now >= ca.info.renew_at() => {
            return (Step::StageCa, format!("the CA expires in {}s", ca.info.not_after - now));
        }
        _ => {}
    }
    match &stored.serving {
        Err(why) => return (Step::RenewServing, why.clone()),
        Ok(s) if !s.info.signed_by(&ca.info) => {
            return (Step::RenewServing, "the serving certificate is not signed by the current CA".into());
        }
        Ok(s) if now >= s.info.renew_at() => {
            return (
                Step::RenewServing,
                format!("the serving certificate expires in {}s", s.info.not_after - now),
            );
        }
        Ok(s) => {
            if let Some(n) = policy.names.iter().find(|n| !s.info.names.contains(n)) {
                return (Step::RenewServing, format!("the serving certificate is not valid for {n}"));
            }
        }
    }
    let staged = match &stored.next {
        Some(Ok(n)) => Some(&n.info),
        _ => None,
    };
    let holds = |c: &CertInfo| stored.bundle.iter().any(|b| b.der == c.der);
    if !holds(&ca.info) || staged.is_some_and(|n| !holds(n)) {
        return (Step::FixBundle, "the trust bundle lacks a CA that signs or is staged".into());
    }
    if stored.bundle.iter().any(|b| b.expired(now)) {
        return (Step::FixBundle, "the trust bundle holds an expired CA".into());
    }
    (Step::Keep, String::new())
}

fn put(data: &mut BTreeMap<String, ByteString>, key: &str, value: &str) {
    data.insert(key.to_owned(), ByteString(value.as_bytes().to_vec()));
}

/// The Secret's new data for `step` (new keys are generated here).
pub fn write(
    step: Step,
    stored: &Stored,
    data: &BTreeMap<String, ByteString>,
    now: i64,
    policy: &Policy,
) -> Result<BTreeMap<String, ByteString>, PkiError> {
    let mut out = data.clone();
    let serving_names = |old: &Result<Slot, String>| {
        let mut names = policy.names.clone();
        if let Ok(s) = old {
            names.extend(s.info.names.iter().filter(|n| !policy.names.contains(n)).cloned());
        }
        names
    };
    let info = |p: &Pair, what| pki::parse_pair(p, what);
    let (signer, staged): (Pair, Option<Pair>) = match step {
        Step::Keep => return Ok(out),
        Step::Create => {
            let ca = pki::new_ca(now, policy.ca_validity)?;
            let serving = pki::new_serving(&ca, &policy.names, now, policy.cert_validity)?;
            put(&mut out, TLS_CERT, &serving.cert);
            put(&mut out, TLS_KEY, &serving.key);
            out.remove(NEXT_CA_CERT);
            out.remove(NEXT_CA_KEY);
            (ca, None)
        }
        Step::StageCa => {
            let current =
                stored.ca.as_ref().map_err(|e| PkiError::Unusable { what: "CA", detail: e.clone() })?;
            let next = pki::new_ca(now, policy.ca_validity)?;
            (current.pair.clone(), Some(next))
        }
        Step::PromoteCa => {
            let next = match &stored.next {
                Some(Ok(n)) => n.pair.clone(),
                _ => return Err(PkiError::Unusable { what: "staged CA", detail: "gone".into() }),
            };
            let serving =
                pki::new_serving(&next, &serving_names(&stored.serving), now, policy.cert_validity)?;
            put(&mut out, TLS_CERT, &serving.cert);
            put(&mut out, TLS_KEY, &serving.key);
            out.remove(NEXT_CA_CERT);
            out.remove(NEXT_CA_KEY);
            (next, None)
        }
        Step::RenewServing | Step::FixBundle => {
            let current =
                stored.ca.as_ref().map_err(|e| PkiError::Unusable { what: "CA", detail: e.clone() })?;
            if step == Step::RenewServing {
                let serving = pki::new_serving(
                    &current.pair,
                    &serving_names(&stored.serving),
                    now,
                    policy.cert_validity,
                )?;
                put(&mut out, TLS_CERT, &serving.cert);
                put(&mut out, TLS_KEY, &serving.key);
            }
            let staged = match &stored.next {
                Some(Ok(n)) => Some(n.pair.clone()),
                _ => None,
            };
            (current.pair.clone(), staged)
        }
    };
    put(&mut out, CA_CERT, &signer.cert);
    put(&mut out, CA_KEY, &signer.key);
    let mut mine = vec![info(&signer, "CA")?];
    if let Some(next) = &staged {
        put(&mut out, NEXT_CA_CERT, &next.cert);
        put(&mut out, NEXT_CA_KEY, &next.key);
        mine.push(info(next, "staged CA")?);
    }
    // The CA that signed until now stays trusted until it expires (a promotion, a new CA).
    let mut others = stored.bundle.clone();
    if let Ok(old) = &stored.ca {
        others.push(old.info.clone());
    }
    put(&mut out, BUNDLE, &pki::bundle_pem(&pki::merge_bundle(&mine, &others, now)));
    Ok(out)
}

/// The trust bundle the Secret holds now (read afresh).
pub async fn fetch_bundle(api: &Api<Secret>, namespace: &str, name: &str) -> Result<Vec<CertInfo>, String> {
    match api.get_opt(name).await {
        Ok(Some(s)) => Ok(s
            .data
            .as_ref()
            .and_then(|d| d.get(BUNDLE))
            .map(|b| pki::parse_bundle(&b.0))
            .unwrap_or_default()),
        Ok(None) => Err(format!("the Secret {namespace}/{name} does not exist")),
        Err(e) => Err(explain(&e, secret_access("get", namespace))),
    }
}

fn secret_access<'a>(verb: &'a str, namespace: &'a str) -> Access<'a> {
    Access { verb, resource: "secrets", namespace: Some(namespace), role: SECRET_ROLE }
}

/// Whether every registration trusts a CA (its DER).
pub type TrustCheck = Arc<dyn Fn(Vec<u8>) -> BoxFuture<'static, bool> + Send + Sync>;

/// Where the keeper hands the serving pair over: the TLS server's certificate store, which keeps
/// the last good pair.
pub trait Serving: Send + Sync {
    /// Whether a certificate is served.
    fn serves_a_pair(&self) -> bool;
    /// Serves this pair if it is new and good; why not, when it is not good.
    fn serve(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<bool, String>;
}

/// Keeps the Secret and loads its serving pair into the store.
pub struct Keeper {
    pub api: Api<Secret>,
    pub secret: String,
    pub namespace: String,
    pub policy: Policy,
    pub store: Arc<dyn Serving>,
    pub faults: Faults,
    /// `None` when nothing is registered by the replicas: a staged CA then waits only the delay.
    pub trusted: Option<TrustCheck>,
    /// Ticks after each write, so that the registration publishes the new bundle at once.
    pub changed: Arc<tokio::sync::watch::Sender<u64>>,
    /// Whether the Secret was ever seen: one that disappears later was deleted on purpose (the
    /// release uninstalled) and is not made again by a replica that is going away.
    pub seen: std::sync::atomic::AtomicBool,
}

impl Keeper {
    /// Looks every `every` until `stop`.
    pub async fn run(self, every: Duration, stop: CancellationToken) {
        let mut last = String::new();
        loop {
            let (said, again) = match self.look().await {
                Ok(s) => (s, false),
                Err(Look::Retry(s)) => (s, true),
                Err(Look::Problem(s)) => (s, false),
            };
            if !said.is_empty() && said != last {
                warn!(secret = %format!("{}/{}", self.namespace, self.secret), problem = said.as_str(), "managed certificate");
            }
            last = said;
            // Until a certificate is served, look again soon: /readyz waits on it.
            let wait = if again {
                Duration::from_millis(100)
            } else if !self.store.serves_a_pair() {
                every.min(Duration::from_secs(1))
            } else {
                every
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One look: read, load, maybe write. Returns a problem to report ("" when none).
    async fn look(&self) -> Result<String, Look> {
        let secret = match self.api.get_opt(&self.secret).await {
            Ok(Some(s)) => s,
            Ok(None) if self.seen.load(std::sync::atomic::Ordering::Relaxed) => {
                return Err(Look::Problem(
                    "the Secret was deleted: serving the last certificate loaded, not making the Secret again (the chart installs it empty; `helm upgrade` restores it, or restart the replicas to make a new one)".into(),
                ));
            }
            Ok(None) => return self.create().await,
            Err(e) => {
                return Err(Look::Problem(
                    self.not_loaded(explain(&e, secret_access("get", &self.namespace))),
                ));
            }
        };
        self.seen.store(true, std::sync::atomic::Ordering::Relaxed);
        let data = secret.data.clone().unwrap_or_default();
        let stored = read(&data);
        self.load(&stored);
        let now = pki::unix_now();
        let next_trusted = match (&stored.next, &self.trusted) {
            (Some(Ok(n)), Some(check)) if now - n.info.issued_at() >= self.policy.promote_after => {
                check(n.info.der.clone()).await
            }
            (_, None) => true,
            _ => false,
        };
        let (step, why) = plan(&stored, now, &self.policy, next_trusted);
        if step == Step::Keep {
            return Ok(String::new());
        }
        let new = write(step, &stored, &data, now, &self.policy).map_err(|e| Look::Problem(e.to_string()))?;
        let mut updated = secret;
        updated.data = Some(new);
        updated.string_data = None;
        // Left out, the API server keeps the field managers' records and adds this write to them.
        updated.metadata.managed_fields = None;
        let pp = PostParams {
            field_manager: Some(crate::kube_client::FIELD_MANAGER.into()),
            ..Default::default()
        };
        match self.api.replace(&self.secret, &pp, &updated).await {
            Ok(written) => {
                info!(secret = %format!("{}/{}", self.namespace, self.secret), ?step, why = why.as_str(), "managed certificate written");
                self.load(&read(&written.data.unwrap_or_default()));
                self.changed.send_modify(|v| *v = v.wrapping_add(1));
                Ok(String::new())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                debug!(?step, "another replica wrote the Secret first; reading it again");
                Err(Look::Retry(String::new()))
            }
            Err(e) => Err(Look::Problem(explain(&e, secret_access("update", &self.namespace)))),
        }
    }

    async fn create(&self) -> Result<String, Look> {
        let empty = BTreeMap::new();
        let now = pki::unix_now();
        let data = write(Step::Create, &read(&empty), &empty, now, &self.policy)
            .map_err(|e| Look::Problem(e.to_string()))?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.secret.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".into(),
                    "offloading-webhook".into(),
                )])),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data),
            ..Default::default()
        };
        let pp = PostParams {
            field_manager: Some(crate::kube_client::FIELD_MANAGER.into()),
            ..Default::default()
        };
        match self.api.create(&pp, &secret).await {
            Ok(written) => {
                self.seen.store(true, std::sync::atomic::Ordering::Relaxed);
                info!(secret = %format!("{}/{}", self.namespace, self.secret), "managed certificate created");
                self.load(&read(&written.data.unwrap_or_default()));
                self.changed.send_modify(|v| *v = v.wrapping_add(1));
                Ok(String::new())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Err(Look::Retry(String::new())),
            Err(e) => Err(Look::Problem(self.not_loaded(format!(
                "the Secret does not exist and could not be created: {} (the chart installs it empty; `helm upgrade` restores it)",
                explain(&e, Access { verb: "create", resource: "secrets", namespace: Some(&self.namespace), role: SECRET_ROLE })
            )))),
        }
    }

    /// Loads the serving pair if it changed; reports on `/readyz` while none is loaded.
    fn load(&self, stored: &Stored) {
        let problem = match &stored.serving {
            Ok(s) => self.store.serve(s.pair.cert.as_bytes(), s.pair.key.as_bytes()).err(),
            Err(why) => Some(why.clone()),
        };
        if self.store.serves_a_pair() {
            if self.faults.clear(FAULT) {
                info!(secret = %format!("{}/{}", self.namespace, self.secret), "serving the managed certificate");
            }
        } else {
            self.not_loaded(problem.unwrap_or_else(|| "the Secret's serving pair is not usable".into()));
        }
    }

    /// Says why, on `/readyz`, while no certificate is loaded; returns `why`.
    fn not_loaded(&self, why: String) -> String {
        if !self.store.serves_a_pair() {
            self.faults.set(FAULT, format!("the managed certificate is not loaded yet: {why}"));
        }
        why
    }
}

enum Look {
    /// Lost a race: look again at once.
    Retry(String),
    Problem(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn policy() -> Policy {
        Policy::new(
            Duration::from_secs(3000),
            Duration::from_secs(300),
            Duration::from_secs(1),
            vec!["ow.ns.svc".into()],
        )
        .unwrap()
    }

    fn step_at(data: &BTreeMap<String, ByteString>, now: i64, trusted: bool) -> Step {
        plan(&read(data), now, &policy(), trusted).0
    }

    /// Applies the planned steps from `now` on, every `tick` seconds, until `until`; returns the
    /// steps taken with their times.
    fn run(
        data: &mut BTreeMap<String, ByteString>,
        from: i64,
        until: i64,
        tick: i64,
        trusted: bool,
    ) -> Vec<(i64, Step)> {
        let mut taken = Vec::new();
        let mut now = from;
        while now <= until {
            loop {
                let stored = read(data);
                let (step, _) = plan(&stored, now, &policy(), trusted);
                if step == Step::Keep {
                    break;
                }
                *data = write(step, &stored, data, now, &policy()).unwrap();
                taken.push((now, step));
            }
            now += tick;
        }
        taken
    }

    #[test]
    fn lifetimes_too_short_for_the_reload_interval_are_refused_with_the_minimum() {
        let p = |ca, cert| {
            Policy::new(
                Duration::from_secs(ca),
                Duration::from_secs(cert),
                Duration::from_secs(10),
                vec!["x".into()],
            )
        };
        assert_eq!(
            p(1000, 60).unwrap_err().to_string(),
            "--cert-validity 60s is too short for --cert-reload-seconds 10: a renewed certificate must reach every replica long before the old one expires; give at least 90s"
        );
        assert!(p(100, 90).unwrap_err().to_string().starts_with("--ca-validity 100s is too short"));
        assert_eq!(p(150, 90).unwrap().promote_after, 20);
        assert!(matches!(
            Policy::new(Duration::from_secs(150), Duration::from_secs(90), Duration::from_secs(10), vec![]),
            Err(ManagedError::NoNames)
        ));
    }

    #[test]
    fn an_empty_secret_gets_a_ca_a_serving_pair_and_a_bundle_then_nothing() {
        let mut data = BTreeMap::new();
        assert_eq!(step_at(&data, NOW, true), Step::Create);
        data = write(Step::Create, &read(&data), &data, NOW, &policy()).unwrap();
        let stored = read(&data);
        let (ca, serving) = (stored.ca.unwrap(), stored.serving.unwrap());
        assert!(serving.info.signed_by(&ca.info));
        assert_eq!(serving.info.names, ["ow.ns.svc"]);
        assert_eq!(stored.bundle, vec![ca.info.clone()]);
        assert_eq!(step_at(&data, NOW + 1, true), Step::Keep);
    }

    #[test]
    fn rotations_never_serve_a_certificate_the_bundle_does_not_trust() {
        // Replayed second by second over two CA lifetimes and a half: at every write, the serving
        // certificate stored until then (a replica may not have loaded the new one yet) and the
        // new one are both signed by an unexpired CA of the new bundle.
        let mut data = BTreeMap::new();
        let mut taken: Vec<(i64, Step)> = Vec::new();
        let mut now = NOW;
        while now <= NOW + 4500 {
            loop {
                let stored = read(&data);
                let (step, _) = plan(&stored, now, &policy(), true);
                if step == Step::Keep {
                    break;
                }
                let before = stored.serving.as_ref().ok().map(|s| s.info.clone());
                data = write(step, &stored, &data, now, &policy()).unwrap();
                taken.push((now, step));
                let after = read(&data);
                for served in before.iter().chain(after.serving.as_ref().ok().map(|s| &s.info)) {
                    if !served.expired(now) {
                        assert!(
                            after.bundle.iter().any(|ca| served.signed_by(ca) && !ca.expired(now)),
                            "at +{}s after {step:?} a served certificate is not trusted",
                            now - NOW
                        );
                    }
                }
            }
            now += 1;
        }
        // 3000 s CAs, staged at two thirds of their life, promoted promote_after (10 s) later.
        let at = |step| taken.iter().filter(|(_, s)| *s == step).map(|(t, _)| t - NOW).collect::<Vec<_>>();
        assert_eq!(at(Step::Create), [0]);
        assert_eq!(at(Step::StageCa), [2000, 4000]);
        assert_eq!(at(Step::PromoteCa), [2010, 4010]);
        // The old CA leaves the bundle when it expires.
        assert_eq!(at(Step::FixBundle), [3000]);
        // 300 s serving certificates renewed at 200 s, and at each promotion.
        assert!(at(Step::RenewServing).len() >= 20, "{taken:?}");
    }

    #[test]
    fn a_staged_ca_waits_until_the_registrations_trust_it() {
        let mut data = BTreeMap::new();
        run(&mut data, NOW, NOW + 2000, 1, true);
        let stored = read(&data);
        assert!(stored.next.as_ref().is_some_and(|n| n.is_ok()), "staged at two thirds of the CA's life");
        assert_eq!(stored.bundle.len(), 2);
        assert_eq!(step_at(&data, NOW + 2100, false), Step::Keep);
        assert_eq!(step_at(&data, NOW + 2100, true), Step::PromoteCa);
    }

    #[test]
    fn a_broken_or_expired_ca_starts_over_and_keeps_the_unexpired_trust() {
        let mut data = BTreeMap::new();
        run(&mut data, NOW, NOW + 10, 1, true);
        let old_ca = read(&data).ca.unwrap().info;
        let mut broken = data.clone();
        put(&mut broken, CA_KEY, "not a key");
        let (step, why) = plan(&read(&broken), NOW + 20, &policy(), true);
        assert_eq!(step, Step::Create);
        assert!(why.starts_with("the CA cannot be used: its key"), "{why}");
        let fresh = write(Step::Create, &read(&broken), &broken, NOW + 20, &policy()).unwrap();
        let bundle = read(&fresh).bundle;
        assert_eq!(bundle.len(), 2);
        assert!(bundle.contains(&old_ca), "a replica still serving under the old CA stays trusted");
        assert_eq!(step_at(&data, NOW + 3000, true), Step::Create, "expired");
    }

    #[test]
    fn new_names_renew_the_serving_certificate_keeping_the_old_ones() {
        let mut data = BTreeMap::new();
        run(&mut data, NOW, NOW, 1, true);
        let wider = Policy { names: vec!["other.ns.svc".into()], ..policy() };
        let (step, why) = plan(&read(&data), NOW + 1, &wider, true);
        assert_eq!(
            (step, why.as_str()),
            (Step::RenewServing, "the serving certificate is not valid for other.ns.svc")
        );
        let data = write(step, &read(&data), &data, NOW + 1, &wider).unwrap();
        assert_eq!(read(&data).serving.unwrap().info.names, ["other.ns.svc", "ow.ns.svc"]);
    }
}

//! The webhooks' registration, kept by the replicas (`serve --webhook-configuration NAME`).
//!
//! The chart installs the Validating and MutatingWebhookConfiguration as shells with no webhook
//! entries: they intercept nothing, so an install whose pods never become ready blocks no write.
//! Once this replica can answer (its certificate loaded, the facts its verdicts use synced) and,
//! for a Service, the API server has a ready endpoint to call, it fills in the entries as
//! [`webhook_config`] builds them — caBundle, rules, selectors, matchConditions, failurePolicy,
//! timeouts — by server-side apply under its own field manager, so that a GitOps re-apply of the
//! chart, which owns only the shells' metadata, changes none of them. Every ready replica applies
//! the same content, and only when what is stored differs: a converged registration costs reads.
//! A replica writes its settings once, when it starts (or when the entries are gone); afterwards
//! only the caBundle. So during a rollout that changes them, the old and the new replicas do not
//! take turns rewriting the settings (the newest wins), and an operator's emergency edit (say
//! `failurePolicy: Ignore`) stays until the next rollout.
//!
//! It never creates a configuration: each apply carries the uid and resourceVersion just read, so
//! one that `helm uninstall` deleted meanwhile stays deleted. It makes the Namespace it runs in (cluster
//! scoped, like the configurations) their owner, so the garbage collector deletes them with the
//! namespace; and while that namespace is terminating it withdraws the entries at once.
//!
//! The caBundle is the CA this replica's certificate source publishes, merged with the unexpired
//! CAs the entries trust already ([`pki::merge_bundle`]): a CA another replica still serves under
//! stays trusted until it expires, and replicas that load a renewed certificate at different times
//! only ever add to the bundle, never take turns rewriting it.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::certs::{managed, pki};
use crate::health::{Access, CLUSTER_ROLE, explain};
use crate::kube_client::FIELD_MANAGER;
use crate::webhook_config::{self, Settings, Target};

/// Where the chart grants what the registration reads in the webhook's namespace.
pub const REGISTRATION_ROLE: &str = "the Role offloading-webhook-registration (in the webhook's namespace)";

/// The CA a replica publishes in the caBundle.
#[derive(Clone)]
pub enum CaSource {
    /// A PEM file (cert-manager's `ca.crt`, or the existing Secret's CA), read at each pass.
    File(PathBuf),
    /// The managed Secret's trust bundle, read afresh at each pass: after the configurations, so
    /// that what is written is never older than what another replica wrote.
    Managed { api: Box<Api<Secret>>, namespace: String, secret: String },
}

impl CaSource {
    async fn fetch(&self) -> Result<Vec<pki::CertInfo>, String> {
        let certs = match self {
            CaSource::File(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    format!("could not read the CA bundle {} (--ca-bundle-file): {e}", path.display())
                })?;
                pki::parse_bundle(&pem)
            }
            CaSource::Managed { api, namespace, secret } => {
                managed::fetch_bundle(api, namespace, secret).await?
            }
        };
        if certs.is_empty() {
            return Err(match self {
                CaSource::File(path) => {
                    format!("{} (--ca-bundle-file) holds no PEM certificate", path.display())
                }
                CaSource::Managed { secret, .. } => format!("the Secret {secret} holds no CA yet"),
            });
        }
        Ok(certs)
    }
}

/// What a replica registers, and where.
#[derive(Clone)]
pub struct Registration {
    /// The name of both configurations.
    pub configuration: String,
    pub target: Target,
    pub settings: Settings,
    /// The namespace this replica runs in: the configurations' owner.
    pub namespace: String,
    pub ca: CaSource,
    /// How often a converged registration is looked at again.
    pub every: Duration,
}

/// What one look at the registration found.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Both configurations hold what this replica would write.
    Settled,
    /// Written now (the kinds).
    Applied(Vec<&'static str>),
    /// Nothing written yet, for this reason.
    Waiting(String),
    /// The namespace is terminating: the entries are gone.
    Withdrawn,
}

/// A configuration as stored.
struct Live {
    kind: &'static str,
    uid: String,
    resource_version: String,
    owners: Vec<OwnerReference>,
    /// The `webhooks` list, as JSON (empty when none).
    webhooks: Vec<Value>,
}

impl Live {
    fn from<K: serde::Serialize>(kind: &'static str, obj: &K) -> Self {
        let v = serde_json::to_value(obj).unwrap_or(Value::Null);
        let owners = serde_json::from_value(v["metadata"]["ownerReferences"].clone()).unwrap_or_default();
        Self {
            kind,
            uid: v["metadata"]["uid"].as_str().unwrap_or_default().to_owned(),
            resource_version: v["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_owned(),
            owners,
            webhooks: v["webhooks"].as_array().cloned().unwrap_or_default(),
        }
    }

    /// The CAs its entries trust.
    fn trusted(&self) -> Vec<pki::CertInfo> {
        self.webhooks
            .iter()
            .filter_map(|w| w["clientConfig"]["caBundle"].as_str())
            .filter_map(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .flat_map(|pem| pki::parse_bundle(&pem))
            .collect()
    }
}

fn api_version_kind(kind: &str) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind})
}

impl Registration {
    /// Keeps the registration until `stop`, looking whenever `changed` ticks (a new CA) and every
    /// [`Registration::every`]; nothing is written while `ready()` is false.
    pub async fn run(
        self,
        client: Client,
        ready: impl Fn() -> bool + Send,
        mut changed: tokio::sync::watch::Receiver<u64>,
        stop: CancellationToken,
    ) {
        let mut last: Option<String> = None;
        let mut settled = false;
        let mut announced = Announced::default();
        loop {
            if ready() {
                let (said, outcome) = match self.pass(&client, &mut announced).await {
                    Ok(o) => (format!("{o:?}"), Some(o)),
                    Err(problem) => (problem, None),
                };
                settled = matches!(outcome, Some(Outcome::Settled | Outcome::Withdrawn));
                if last.as_deref() != Some(said.as_str()) {
                    self.log(&said, outcome.as_ref());
                }
                last = Some(said);
            }
            // Until the registration is in place, look often: the first fill is what makes the
            // webhooks effective.
            let wait = if settled { self.every } else { Duration::from_secs(1).min(self.every) };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = changed.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // The namespace controller stops the pods of a namespace being deleted: one last look, so
        // that no write waits on the replicas while the namespace goes.
        if let Ok(Err(problem)) =
            tokio::time::timeout(Duration::from_secs(3), self.withdraw_if_terminating(&client)).await
        {
            warn!(configuration = self.configuration.as_str(), problem, "could not withdraw the webhooks");
        }
    }

    async fn withdraw_if_terminating(&self, client: &Client) -> Result<(), String> {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        if let Ok(Some(ns)) = namespaces.get_opt(&self.namespace).await
            && ns.metadata.deletion_timestamp.is_some()
        {
            self.withdraw(client, owner_of(&ns)).await?;
            self.log("", Some(&Outcome::Withdrawn));
        }
        Ok(())
    }

    fn log(&self, said: &str, outcome: Option<&Outcome>) {
        let configuration = self.configuration.as_str();
        match outcome {
            Some(Outcome::Applied(kinds)) => {
                info!(configuration, ?kinds, "webhooks registered (entries, caBundle, owner written)")
            }
            Some(Outcome::Settled) => debug!(configuration, "registration in place"),
            Some(Outcome::Waiting(why)) => {
                info!(configuration, why = why.as_str(), "webhooks not registered yet")
            }
            Some(Outcome::Withdrawn) => info!(
                configuration,
                namespace = self.namespace.as_str(),
                "the namespace is being deleted: webhooks withdrawn, so that no write waits on replicas that are going away"
            ),
            None => warn!(configuration, problem = said, "could not keep the webhook registration; retrying"),
        }
    }

    async fn pass(&self, client: &Client, announced: &mut Announced) -> Result<Outcome, String> {
        let access = |verb, resource| Access { verb, resource, namespace: None, role: CLUSTER_ROLE };
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let owner = match namespaces.get_opt(&self.namespace).await {
            Ok(Some(ns)) => {
                if ns.metadata.deletion_timestamp.is_some() {
                    return self.withdraw(client, owner_of(&ns)).await;
                }
                owner_of(&ns)
            }
            Ok(None) => None,
            Err(e) => return Err(explain(&e, access("get", "namespaces"))),
        };
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let name = self.configuration.as_str();
        let v = validating
            .get_opt(name)
            .await
            .map_err(|e| explain(&e, access("get", "validatingwebhookconfigurations")))?
            .map(|o| Live::from("ValidatingWebhookConfiguration", &o));
        let m = mutating
            .get_opt(name)
            .await
            .map_err(|e| explain(&e, access("get", "mutatingwebhookconfigurations")))?
            .map(|o| Live::from("MutatingWebhookConfiguration", &o));
        if v.is_none() && m.is_none() {
            return Ok(Outcome::Waiting(format!(
                "no Validating or MutatingWebhookConfiguration {name:?} exists: they are never created here \
                 (the chart installs them empty; `helm upgrade` restores them)"
            )));
        }
        let live: Vec<Live> = v.into_iter().chain(m).collect();

        // Read after the configurations: a CA newer than the one behind what they hold.
        let mine = self.ca.fetch().await?;
        let trusted: Vec<pki::CertInfo> = live.iter().flat_map(Live::trusted).collect();
        let bundle = pki::bundle_pem(&pki::merge_bundle(&mine, &trusted, pki::unix_now()));

        let mut applied = Vec::new();
        for l in &live {
            // This replica's settings once, when it starts (or when the entries are gone); after
            // that only the caBundle: during a rollout that changes the settings, the replicas
            // of the old and the new version would otherwise take turns rewriting them.
            let first = l.webhooks.is_empty() || !announced.get(l.kind);
            let desired = if first {
                self.webhooks(l.kind, bundle.as_bytes())
            } else {
                with_ca_bundle(&l.webhooks, bundle.as_bytes())
            };
            let owned = owner.as_ref().is_none_or(|o| l.owners.iter().any(|x| x.uid == o.uid));
            if l.webhooks == desired && owned {
                continue;
            }
            if l.webhooks.is_empty()
                && let Some(why) = self.no_ready_endpoint(client).await
            {
                return Ok(Outcome::Waiting(why));
            }
            let mut owners = l.owners.clone();
            if let Some(o) = &owner
                && !owned
            {
                owners.push(o.clone());
            }
            self.apply(client, l, &owners, Some(desired)).await?;
            announced.set(l.kind);
            applied.push(l.kind);
        }
        for l in &live {
            if !l.webhooks.is_empty() && !applied.contains(&l.kind) {
                // Found as this replica would write it.
                announced.set(l.kind);
            }
        }
        Ok(if applied.is_empty() { Outcome::Settled } else { Outcome::Applied(applied) })
    }

    /// Our entries of one kind, as JSON.
    fn webhooks(&self, kind: &str, bundle: &[u8]) -> Vec<Value> {
        let hook = if kind == "ValidatingWebhookConfiguration" {
            serde_json::to_value(webhook_config::validating_webhook(
                &self.settings,
                &self.target,
                Some(bundle),
            ))
        } else {
            serde_json::to_value(webhook_config::mutating_webhook(&self.settings, &self.target, Some(bundle)))
        };
        hook.into_iter().collect()
    }

    /// Server-side apply of `webhooks` (none: our entries removed), never creating the object.
    async fn apply(
        &self,
        client: &Client,
        live: &Live,
        owners: &[OwnerReference],
        webhooks: Option<Vec<Value>>,
    ) -> Result<(), String> {
        let mut body = api_version_kind(live.kind);
        body["metadata"] = json!({
            "name": self.configuration,
            // Preconditions: with the uid the API server refuses to create the object if it is gone
            // (a resourceVersion alone does not stop an apply from creating it); with the
            // resourceVersion it refuses if another writer changed it since it was read.
            "uid": live.uid,
            "resourceVersion": live.resource_version,
        });
        if !owners.is_empty() {
            body["metadata"]["ownerReferences"] = serde_json::to_value(owners).unwrap_or_default();
        }
        if let Some(w) = webhooks {
            body["webhooks"] = Value::Array(w);
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let (resource, result) = if live.kind == "ValidatingWebhookConfiguration" {
            let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
            (
                "validatingwebhookconfigurations",
                api.patch(&self.configuration, &params, &Patch::Apply(&body)).await.map(drop),
            )
        } else {
            let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
            (
                "mutatingwebhookconfigurations",
                api.patch(&self.configuration, &params, &Patch::Apply(&body)).await.map(drop),
            )
        };
        match result {
            Ok(()) => Ok(()),
            // Changed (another replica) or deleted since read: the next look decides again.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Err(format!(
                "{} {} changed while being written; looking again",
                live.kind, self.configuration
            )),
            Err(e) => {
                Err(explain(&e, Access { verb: "patch", resource, namespace: None, role: CLUSTER_ROLE }))
            }
        }
    }

    /// The namespace is terminating: remove our entries (the shells stay, owned by the namespace,
    /// for the garbage collector).
    async fn withdraw(&self, client: &Client, owner: Option<OwnerReference>) -> Result<Outcome, String> {
        let name = self.configuration.as_str();
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let mut live = Vec::new();
        if let Ok(Some(o)) = validating.get_opt(name).await {
            live.push(Live::from("ValidatingWebhookConfiguration", &o));
        }
        if let Ok(Some(o)) = mutating.get_opt(name).await {
            live.push(Live::from("MutatingWebhookConfiguration", &o));
        }
        for l in live.iter().filter(|l| !l.webhooks.is_empty()) {
            let mut owners = l.owners.clone();
            if let Some(o) = &owner
                && !owners.iter().any(|x| x.uid == o.uid)
            {
                owners.push(o.clone());
            }
            self.apply(client, l, &owners, None).await?;
        }
        Ok(Outcome::Withdrawn)
    }

    /// For a Service target: why the API server has no ready endpoint to call yet, or `None`.
    /// A replica that cannot look (no RBAC) does not wait: it would wait forever.
    async fn no_ready_endpoint(&self, client: &Client) -> Option<String> {
        let Target::Service { namespace, name, .. } = &self.target else { return None };
        let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
        let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={name}"));
        match api.list(&lp).await {
            Ok(slices) => {
                let ready = slices.items.iter().flat_map(|s| s.endpoints.iter().flatten()).any(|e| {
                    e.conditions.as_ref().and_then(|c| c.ready) != Some(false) && !e.addresses.is_empty()
                });
                (!ready).then(|| format!("the Service {namespace}/{name} has no ready endpoint yet"))
            }
            Err(e) => {
                let access = Access {
                    verb: "list",
                    resource: "endpointslices.discovery.k8s.io",
                    namespace: Some(namespace),
                    role: REGISTRATION_ROLE,
                };
                warn!(problem = %explain(&e, access), "registering without knowing whether the Service has a ready endpoint");
                None
            }
        }
    }
}

/// Whether this replica has written its settings into each configuration.
#[derive(Default)]
struct Announced {
    validating: bool,
    mutating: bool,
}

impl Announced {
    fn get(&self, kind: &str) -> bool {
        if kind == "ValidatingWebhookConfiguration" { self.validating } else { self.mutating }
    }

    fn set(&mut self, kind: &str) {
        if kind == "ValidatingWebhookConfiguration" {
            self.validating = true;
        } else {
            self.mutating = true;
        }
    }
}

/// The stored entries with their caBundle replaced, everything else as it is.
fn with_ca_bundle(webhooks: &[Value], bundle: &[u8]) -> Vec<Value> {
    let encoded = Value::String(base64::engine::general_purpose::STANDARD.encode(bundle));
    webhooks
        .iter()
        .cloned()
        .map(|mut w| {
            if let Some(cc) = w.get_mut("clientConfig").and_then(Value::as_object_mut) {
                cc.insert("caBundle".into(), encoded.clone());
            }
            w
        })
        .collect()
}

/// The ownerReference that makes a Namespace the owner of a cluster-scoped object.
fn owner_of(ns: &Namespace) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "v1".into(),
        kind: "Namespace".into(),
        name: ns.metadata.name.clone()?,
        uid: ns.metadata.uid.clone()?,
        ..Default::default()
    })
}

/// Whether every entry of the configurations `name` trusts the CA `der` (also when there are no
/// entries yet: then nothing can fail on it). What a staged CA waits for before it signs.
pub async fn trusts(client: &Client, name: &str, der: &[u8]) -> bool {
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let (v, m) = match (validating.get_opt(name).await, mutating.get_opt(name).await) {
        (Ok(v), Ok(m)) => (v, m),
        _ => return false,
    };
    let live = v
        .map(|o| Live::from("ValidatingWebhookConfiguration", &o))
        .into_iter()
        .chain(m.map(|o| Live::from("MutatingWebhookConfiguration", &o)));
    live.flat_map(|l| {
        l.webhooks
            .iter()
            .map(|w| {
                w["clientConfig"]["caBundle"]
                    .as_str()
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .is_some_and(|pem| pki::pem_certificates(&pem).iter().any(|c| c == der))
            })
            .collect::<Vec<_>>()
    })
    .all(|t| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_ca_bundle_is_replaced_in_entries_another_replica_wrote() {
        let stored = vec![json!({
            "name": "validate.offloading-webhook.io",
            "timeoutSeconds": 10,
            "clientConfig": {"caBundle": "b2xk", "service": {"name": "ow", "namespace": "ns"}},
        })];
        let out = with_ca_bundle(&stored, b"new");
        assert_eq!(out[0]["clientConfig"]["caBundle"], "bmV3");
        assert_eq!(out[0]["timeoutSeconds"], 10);
        assert_eq!(out[0]["clientConfig"]["service"]["name"], "ow");
        let mut a = Announced::default();
        a.set("MutatingWebhookConfiguration");
        assert!(a.get("MutatingWebhookConfiguration") && !a.get("ValidatingWebhookConfiguration"));
    }
}

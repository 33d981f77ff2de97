//! The Validating and Mutating WebhookConfigurations: what the replicas register ([`crate::registration`])
//! and what `webhook-config` prints, for a URL or a Service. Every field the API server would
//! default is set here, so what it stores reads back equal to what was applied.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};

use crate::liqo::{
    NAMESPACE_OFFLOADINGS as RESOURCE, OFFLOADING_GROUP as GROUP, OFFLOADING_VERSIONS as VERSIONS,
    SCHEDULING_ENABLED, WEBHOOK_SKIP_LABEL,
};

/// The webhooks' names in the project's own domain: kubectl prints them in every refusal
/// (`admission webhook "validate.offloading-webhook.io" denied the request: ...`) and the API
/// server's metrics label its calls with them. Not Liqo v1.x's `nsoff.validate.liqo.io`, which
/// Liqo's chart registers too.
pub const VALIDATE_NAME: &str = "validate.offloading-webhook.io";
pub const MUTATE_NAME: &str = "mutate.offloading-webhook.io";
pub const VALIDATE_PATH: &str = "/validate/namespace-offloading";
pub const MUTATE_PATH: &str = "/mutate/namespace-offloading";
/// The namespace every fail-closed webhook must leave alone.
const KUBE_SYSTEM: &str = "kube-system";

/// Where the API server reaches the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `https://host:port` (the path is appended).
    Url(String),
    /// A Service in the cluster.
    Service { namespace: String, name: String, port: i32 },
}

impl Target {
    /// Parses `NAMESPACE/NAME[:PORT]` (port 443 by default).
    pub fn service(text: &str) -> Result<Self, String> {
        let (namespace, rest) = text.split_once('/').ok_or_else(|| {
            format!("{text:?} is not NAMESPACE/NAME[:PORT], e.g. offloading-webhook/offloading-webhook")
        })?;
        let (name, port) = match rest.split_once(':') {
            None => (rest, 443),
            Some((name, port)) => match port.parse::<u16>() {
                Ok(p) if p > 0 => (name, i32::from(p)),
                _ => return Err(format!("{port:?} in {text:?} is not a port number (1-65535)")),
            },
        };
        if namespace.is_empty() || name.is_empty() {
            return Err(format!(
                "{text:?} is not NAMESPACE/NAME[:PORT], e.g. offloading-webhook/offloading-webhook"
            ));
        }
        Ok(Self::Service { namespace: namespace.to_owned(), name: name.to_owned(), port })
    }

    /// The host names a serving certificate must carry for the API server to accept it.
    pub fn certificate_names(&self) -> Vec<String> {
        match self {
            Target::Service { namespace, name, .. } => vec![
                format!("{name}.{namespace}.svc"),
                format!("{name}.{namespace}.svc.cluster.local"),
                format!("{name}.{namespace}"),
            ],
            Target::Url(url) => url_host(url).into_iter().collect(),
        }
    }
}

/// The host of `https://host[:port][/...]`, IPv6 brackets removed.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// Everything about the two webhooks that an operator may choose.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub validating_name: String,
    pub mutating_name: String,
    /// `Fail` or `Ignore`.
    pub failure_policy: String,
    pub timeout_seconds: i32,
    /// Namespaces never sent, on top of kube-system and the webhook's own (a Service target's).
    pub excluded_namespaces: Vec<String>,
    /// Extra namespaceSelector / objectSelector requirements, ANDed with the built-in ones.
    pub namespace_expressions: Vec<LabelSelectorRequirement>,
    pub object_expressions: Vec<LabelSelectorRequirement>,
    /// Skip the updates that change nothing the webhooks judge ([`match_condition`]).
    pub match_conditions: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            validating_name: VALIDATE_NAME.into(),
            mutating_name: MUTATE_NAME.into(),
            failure_policy: "Fail".into(),
            timeout_seconds: 5,
            excluded_namespaces: Vec::new(),
            namespace_expressions: Vec::new(),
            object_expressions: Vec::new(),
            match_conditions: true,
        }
    }
}

/// Why a webhook name would be refused by the API server (it must be a fully qualified domain
/// name of at least three labels), or `None`.
pub fn webhook_name_problem(name: &str) -> Option<String> {
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 3 {
        return Some(format!(
            "{name:?} is not a webhook name: the API server wants a domain of at least three labels, e.g. validate.offloading-webhook.io"
        ));
    }
    if name.len() > 253 {
        return Some(format!("{name:?} is longer than 253 characters"));
    }
    labels.iter().find_map(|l| crate::offloading::names::rfc1123_label_problem(l)).map(|p| {
        format!(
            "{name:?} is not a webhook name: each of its dot-separated labels must be an RFC 1123 label: {p}"
        )
    })
}

/// The name of the match condition on both webhooks.
pub const MATCH_CONDITION_NAME: &str = "offloading-webhook.io/judged-change";

/// The CEL condition under which the API server calls a webhook: every CREATE, every server-side
/// dry run (`kubectl apply --dry-run=server`, `kubectl diff`: the user asked for the verdict), and
/// an UPDATE only when it changes what is judged — the spec (and for the mutating webhook the
/// annotation it keeps). An update of metadata alone (Liqo's finalizer, the reconcile loop's
/// annotations, labels) never reaches the webhooks; status writes go to the status subresource,
/// which is not registered at all. Written so that no object can make it fail to evaluate (a
/// failed condition with failurePolicy Fail would refuse the write).
pub fn match_condition(mutating: bool) -> MatchCondition {
    let annotation = |o: &str| {
        format!(
            "(has({o}.metadata.annotations) && '{SCHEDULING_ENABLED}' in {o}.metadata.annotations ? {o}.metadata.annotations['{SCHEDULING_ENABLED}'] : '')"
        )
    };
    let mut expression = String::from(
        "request.operation != 'UPDATE' || (has(request.dryRun) && request.dryRun == true) || !has(object.spec) || !has(oldObject.spec) || object.spec != oldObject.spec",
    );
    if mutating {
        expression.push_str(&format!(" || {} != {}", annotation("object"), annotation("oldObject")));
    }
    MatchCondition { name: MATCH_CONDITION_NAME.into(), expression }
}

fn client_config(target: &Target, path: &str, ca_bundle: Option<&[u8]>) -> WebhookClientConfig {
    let ca_bundle = ca_bundle.map(|b| ByteString(b.to_vec()));
    match target {
        Target::Url(base) => WebhookClientConfig {
            url: Some(format!("{}{path}", base.trim_end_matches('/'))),
            ca_bundle,
            service: None,
        },
        Target::Service { namespace, name, port } => WebhookClientConfig {
            service: Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                path: Some(path.to_owned()),
                port: Some(*port),
            }),
            ca_bundle,
            url: None,
        },
    }
}

fn rules() -> Vec<RuleWithOperations> {
    vec![RuleWithOperations {
        api_groups: Some(vec![GROUP.to_owned()]),
        api_versions: Some(VERSIONS.iter().map(|v| (*v).to_owned()).collect()),
        operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
        resources: Some(vec![RESOURCE.to_owned()]),
        scope: Some("Namespaced".into()),
    }]
}

fn object_selector(extra: &[LabelSelectorRequirement]) -> LabelSelector {
    let mut expressions = vec![LabelSelectorRequirement {
        key: WEBHOOK_SKIP_LABEL.into(),
        operator: "NotIn".into(),
        values: Some(vec!["true".into()]),
    }];
    expressions.extend(extra.iter().cloned());
    LabelSelector { match_expressions: Some(expressions), match_labels: None }
}

/// Excludes kube-system, the webhook's own namespace and the namespaces listed, so that a
/// fail-closed webhook cannot lock out what it needs to run.
fn namespace_selector(target: &Target, s: &Settings) -> LabelSelector {
    let mut values: Vec<String> = vec![KUBE_SYSTEM.into()];
    if let Target::Service { namespace, .. } = target {
        values.push(namespace.clone());
    }
    for ns in &s.excluded_namespaces {
        if !values.contains(ns) {
            values.push(ns.clone());
        }
    }
    let mut expressions = vec![LabelSelectorRequirement {
        key: "kubernetes.io/metadata.name".into(),
        operator: "NotIn".into(),
        values: Some(values),
    }];
    expressions.extend(s.namespace_expressions.iter().cloned());
    LabelSelector { match_expressions: Some(expressions), match_labels: None }
}

/// The validating webhook, as registered.
pub fn validating_webhook(s: &Settings, target: &Target, ca_bundle: Option<&[u8]>) -> ValidatingWebhook {
    ValidatingWebhook {
        name: s.validating_name.clone(),
        admission_review_versions: vec!["v1".into()],
        client_config: client_config(target, VALIDATE_PATH, ca_bundle),
        failure_policy: Some(s.failure_policy.clone()),
        match_conditions: s.match_conditions.then(|| vec![match_condition(false)]),
        match_policy: Some("Equivalent".into()),
        namespace_selector: Some(namespace_selector(target, s)),
        object_selector: Some(object_selector(&s.object_expressions)),
        rules: Some(rules()),
        side_effects: "None".into(),
        timeout_seconds: Some(s.timeout_seconds),
    }
}

/// The mutating webhook, as registered.
pub fn mutating_webhook(s: &Settings, target: &Target, ca_bundle: Option<&[u8]>) -> MutatingWebhook {
    MutatingWebhook {
        name: s.mutating_name.clone(),
        admission_review_versions: vec!["v1".into()],
        client_config: client_config(target, MUTATE_PATH, ca_bundle),
        failure_policy: Some(s.failure_policy.clone()),
        match_conditions: s.match_conditions.then(|| vec![match_condition(true)]),
        match_policy: Some("Equivalent".into()),
        namespace_selector: Some(namespace_selector(target, s)),
        object_selector: Some(object_selector(&s.object_expressions)),
        reinvocation_policy: Some("Never".into()),
        rules: Some(rules()),
        side_effects: "None".into(),
        timeout_seconds: Some(s.timeout_seconds),
    }
}

/// Both configurations, named `name`, whole (what `webhook-config` prints).
pub fn configurations(
    name: &str,
    s: &Settings,
    target: &Target,
    ca_bundle: Option<&[u8]>,
    annotations: Option<BTreeMap<String, String>>,
) -> (ValidatingWebhookConfiguration, MutatingWebhookConfiguration) {
    let meta = ObjectMeta { name: Some(name.to_owned()), annotations, ..Default::default() };
    let validating = ValidatingWebhookConfiguration {
        metadata: meta.clone(),
        webhooks: Some(vec![validating_webhook(s, target, ca_bundle)]),
    };
    let mutating = MutatingWebhookConfiguration {
        metadata: meta,
        webhooks: Some(vec![mutating_webhook(s, target, ca_bundle)]),
    };
    (validating, mutating)
}

/// Both configurations as a YAML stream.
pub fn to_yaml(
    v: &ValidatingWebhookConfiguration,
    m: &MutatingWebhookConfiguration,
) -> Result<String, serde_norway::Error> {
    Ok(format!("---\n{}---\n{}", serde_norway::to_string(v)?, serde_norway::to_string(m)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_target_is_parsed_and_named_for_its_certificate() {
        let t = Target::service("webhooks/ow:8443").unwrap();
        assert_eq!(t, Target::Service { namespace: "webhooks".into(), name: "ow".into(), port: 8443 });
        assert_eq!(
            t.certificate_names(),
            ["ow.webhooks.svc", "ow.webhooks.svc.cluster.local", "ow.webhooks"]
        );
        assert_eq!(
            Target::service("ow").unwrap_err(),
            "\"ow\" is not NAMESPACE/NAME[:PORT], e.g. offloading-webhook/offloading-webhook"
        );
        assert_eq!(
            Target::service("a/b:http").unwrap_err(),
            "\"http\" in \"a/b:http\" is not a port number (1-65535)"
        );
        assert_eq!(Target::Url("https://[::1]:9443".into()).certificate_names(), ["::1"]);
        assert_eq!(Target::Url("https://127.0.0.1:9443/x".into()).certificate_names(), ["127.0.0.1"]);
        assert_eq!(Target::Url("https://webhook.example".into()).certificate_names(), ["webhook.example"]);
    }

    #[test]
    fn webhook_names_are_checked_as_the_api_server_does() {
        assert_eq!(webhook_name_problem(VALIDATE_NAME), None);
        assert_eq!(webhook_name_problem("nsoff.validate.liqo.io"), None);
        assert!(webhook_name_problem("offloading-webhook.io").unwrap().contains("at least three labels"));
        assert!(webhook_name_problem("a.B_c.io").unwrap().contains("RFC 1123 label"));
    }

    #[test]
    fn the_webhooks_carry_the_settings_and_skip_their_own_namespace() {
        let s = Settings {
            validating_name: "v.example.com".into(),
            excluded_namespaces: vec!["liqo".into(), "kube-system".into()],
            failure_policy: "Ignore".into(),
            match_conditions: false,
            ..Settings::default()
        };
        let target = Target::service("webhooks/ow").unwrap();
        let v = validating_webhook(&s, &target, Some(b"CA"));
        assert_eq!(v.name, "v.example.com");
        assert_eq!(v.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(v.match_conditions, None);
        let ns = v.namespace_selector.unwrap().match_expressions.unwrap();
        assert_eq!(ns[0].values.as_deref().unwrap(), ["kube-system", "webhooks", "liqo"]);
        assert_eq!(v.client_config.service.unwrap().port, Some(443));
        let m = mutating_webhook(&Settings::default(), &target, None);
        assert_eq!(m.name, MUTATE_NAME);
        assert_eq!(m.match_conditions.unwrap()[0].name, MATCH_CONDITION_NAME);
    }
}

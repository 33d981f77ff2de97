//! The Validating and Mutating WebhookConfigurations (SPEC §3), for a URL or a Service.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};

use crate::liqo::{
    NAMESPACE_OFFLOADINGS as RESOURCE, OFFLOADING_GROUP as GROUP, OFFLOADING_VERSIONS as VERSIONS,
    WEBHOOK_SKIP_LABEL,
};

pub const VALIDATE_NAME: &str = "nsoff.validate.liqo.io";
pub const MUTATE_NAME: &str = "nsoff.mutate.liqo.io";
pub const VALIDATE_PATH: &str = "/validate/namespace-offloading";
pub const MUTATE_PATH: &str = "/mutate/namespace-offloading";

/// Where the API server reaches the webhook.
pub enum Target<'a> {
    /// `https://host:port` (the path is appended).
    Url(&'a str),
    /// A Service in the cluster, on port 443 by default.
    Service { namespace: &'a str, name: &'a str, port: i32 },
}

fn client_config(target: &Target<'_>, path: &str, ca_bundle: Option<&[u8]>) -> WebhookClientConfig {
    let ca_bundle = ca_bundle.map(|b| ByteString(b.to_vec()));
    match target {
        Target::Url(base) => WebhookClientConfig {
            url: Some(format!("{}{path}", base.trim_end_matches('/'))),
            ca_bundle,
            service: None,
        },
        Target::Service { namespace, name, port } => WebhookClientConfig {
            service: Some(ServiceReference {
                namespace: (*namespace).to_owned(),
                name: (*name).to_owned(),
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

fn object_selector() -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: WEBHOOK_SKIP_LABEL.into(),
            operator: "NotIn".into(),
            values: Some(vec!["true".into()]),
        }]),
        match_labels: None,
    }
}

/// Excludes kube-system and the namespaces listed, so a fail-closed webhook cannot lock out its own.
fn namespace_selector(excluded: &[&str]) -> LabelSelector {
    let mut values: Vec<String> = vec!["kube-system".into()];
    values.extend(excluded.iter().map(|s| (*s).to_owned()));
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: "NotIn".into(),
            values: Some(values),
        }]),
        match_labels: None,
    }
}

/// Both configurations, named `<name>`.
pub fn configurations(
    name: &str,
    target: &Target<'_>,
    ca_bundle: Option<&[u8]>,
    annotations: Option<BTreeMap<String, String>>,
    excluded_namespaces: &[&str],
) -> (ValidatingWebhookConfiguration, MutatingWebhookConfiguration) {
    let meta = ObjectMeta { name: Some(name.to_owned()), annotations, ..Default::default() };
    let validating = ValidatingWebhookConfiguration {
        metadata: meta.clone(),
        webhooks: Some(vec![ValidatingWebhook {
            name: VALIDATE_NAME.into(),
            admission_review_versions: vec!["v1".into()],
            client_config: client_config(target, VALIDATE_PATH, ca_bundle),
            failure_policy: Some("Fail".into()),
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(namespace_selector(excluded_namespaces)),
            object_selector: Some(object_selector()),
            rules: Some(rules()),
            side_effects: "None".into(),
            timeout_seconds: Some(5),
            ..Default::default()
        }]),
    };
    let mutating = MutatingWebhookConfiguration {
        metadata: meta,
        webhooks: Some(vec![MutatingWebhook {
            name: MUTATE_NAME.into(),
            admission_review_versions: vec!["v1".into()],
            client_config: client_config(target, MUTATE_PATH, ca_bundle),
            failure_policy: Some("Fail".into()),
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(namespace_selector(excluded_namespaces)),
            object_selector: Some(object_selector()),
            reinvocation_policy: Some("Never".into()),
            rules: Some(rules()),
            side_effects: "None".into(),
            timeout_seconds: Some(5),
            ..Default::default()
        }]),
    };
    (validating, mutating)
}

/// Both configurations as a YAML stream.
pub fn to_yaml(
    v: &ValidatingWebhookConfiguration,
    m: &MutatingWebhookConfiguration,
) -> Result<String, serde_yaml::Error> {
    Ok(format!("---\n{}---\n{}", serde_yaml::to_string(v)?, serde_yaml::to_string(m)?))
}

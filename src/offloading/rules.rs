//! The verdict on a NamespaceOffloading (SPEC §3): what denies it and what only deserves a warning.
//! Pure: the webhook calls it per review, the reconcile loop per object, with what each knows.

use std::collections::BTreeMap;

use crate::crd::{
    NamespaceMappingStrategy, NamespaceOffloading, NamespaceOffloadingSpec, OFFLOADING_NAME,
    PodOffloadingStrategy,
};

use super::field::{FieldError, aggregate, first_and_count};
use super::names::{RemoteNameError, remote_namespace_name};
use super::selector::{self, NodeFacts, SELECTOR_PATH};

/// A remote cluster as the local cluster sees it: a virtual node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualNode {
    pub name: String,
    pub cluster_id: String,
    pub labels: BTreeMap<String, String>,
}

impl VirtualNode {
    pub fn facts(&self) -> NodeFacts<'_> {
        NodeFacts { name: &self.name, labels: &self.labels }
    }
}

/// What the judge knows about the cluster, each part possibly unknown.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The local cluster id, when known.
    pub cluster_id: Option<&'a str>,
    /// The virtual nodes known right now; `None` when no cache is running or it has not synced.
    pub virtual_nodes: Option<&'a [VirtualNode]>,
}

/// Errors deny the object; warnings are shown by kubectl as `Warning: ...`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<String>,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.errors.is_empty()
    }

    /// The denial message: every error, joined as Kubernetes joins field errors.
    pub fn message(&self) -> String {
        aggregate(&self.errors)
    }
}

/// Judges a NamespaceOffloading being created in `namespace`.
pub fn review_create(obj: &NamespaceOffloading, namespace: &str, ctx: &Context<'_>) -> Verdict {
    let mut v = Verdict::default();
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    if name != OFFLOADING_NAME {
        v.errors.push(FieldError::invalid(
            "metadata.name",
            name,
            format!(
                "a NamespaceOffloading must be named {OFFLOADING_NAME:?} (Liqo reads one per \
                 namespace, by that name): set metadata.name: {OFFLOADING_NAME}"
            ),
        ));
    }
    judge_spec(&obj.spec, namespace, ctx, &mut v);
    v
}

/// Judges an update. Only what the update changes is judged, so that an object admitted before
/// the webhook existed can still get its finalizer and status written, and be deleted.
pub fn review_update(
    old: &NamespaceOffloading,
    new: &NamespaceOffloading,
    namespace: &str,
    ctx: &Context<'_>,
) -> Verdict {
    let mut v = Verdict::default();
    if old.spec == new.spec {
        return v;
    }
    let (o, n) = (&old.spec, &new.spec);
    if o.namespace_mapping_strategy != n.namespace_mapping_strategy {
        v.errors.push(FieldError::invalid(
            "spec.namespaceMappingStrategy",
            n.namespace_mapping_strategy.as_str(),
            format!(
                "field is immutable (it was {:?}): the remote namespaces already carry the old \
                 name; delete the NamespaceOffloading and create it again to change it",
                o.namespace_mapping_strategy.as_str()
            ),
        ));
    }
    if o.remote_namespace_name != n.remote_namespace_name {
        v.errors.push(FieldError::invalid(
            "spec.remoteNamespaceName",
            n.remote_namespace_name.as_deref().unwrap_or_default(),
            format!(
                "field is immutable (it was {:?}): delete the NamespaceOffloading and create it \
                 again to change it",
                o.remote_namespace_name.as_deref().unwrap_or_default()
            ),
        ));
    }
    if o.pod_offloading_strategy != n.pod_offloading_strategy
        && n.pod_offloading_strategy != PodOffloadingStrategy::LocalAndRemote
        && o.pod_offloading_strategy.rank().is_some()
    {
        v.warnings.push(format!(
            "spec.podOffloadingStrategy: changed from {:?} to {:?}, which is more restrictive: pods \
             already running are not moved; delete them to have them rescheduled",
            o.pod_offloading_strategy.as_str(),
            n.pod_offloading_strategy.as_str()
        ));
    }
    judge_spec(n, namespace, ctx, &mut v);
    v
}

fn judge_spec(spec: &NamespaceOffloadingSpec, namespace: &str, ctx: &Context<'_>, v: &mut Verdict) {
    if let NamespaceMappingStrategy::Unsupported(s) = &spec.namespace_mapping_strategy {
        v.errors.push(FieldError::unsupported(
            "spec.namespaceMappingStrategy",
            s,
            &NamespaceMappingStrategy::SUPPORTED,
        ));
    }
    if let PodOffloadingStrategy::Unsupported(s) = &spec.pod_offloading_strategy {
        v.errors.push(FieldError::unsupported(
            "spec.podOffloadingStrategy",
            s,
            &PodOffloadingStrategy::SUPPORTED,
        ));
    }
    let selector_errors = selector_errors(spec);
    let selector_ok = selector_errors.is_empty();
    v.errors.extend(selector_errors);
    if let Err(e) = derived_name(spec, namespace, ctx.cluster_id) {
        match e {
            RemoteNameError::UnknownClusterId => v.warnings.push(format!(
                "{e}: its length was not checked (give the webhook --cluster-id, or create the \
                 liqo-clusterid-configmap)"
            )),
            e => v.errors.push(name_error(spec, namespace, e)),
        }
    }
    if spec.namespace_mapping_strategy != NamespaceMappingStrategy::SelectedName
        && spec.remote_namespace_name.as_deref().is_some_and(|s| !s.is_empty())
    {
        v.warnings.push(format!(
            "spec.remoteNamespaceName is ignored with namespaceMappingStrategy {:?}: use \
             SelectedName to choose the remote name",
            spec.namespace_mapping_strategy.as_str()
        ));
    }
    if let Some(sel) = &spec.cluster_selector {
        for i in selector::empty_terms(sel) {
            v.warnings.push(format!(
                "{SELECTOR_PATH}.nodeSelectorTerms[{i}]: an empty term matches no cluster; give it \
                 matchExpressions or remove it"
            ));
        }
    }
    if selector_ok && let Some(nodes) = ctx.virtual_nodes {
        let selector = spec.cluster_selector.as_ref();
        if nodes.is_empty() {
            v.warnings.push(
                "no remote cluster is known yet (no virtual node): the namespace is offloaded \
                 once a peering exists and matches spec.clusterSelector"
                    .into(),
            );
        } else if !nodes.iter().any(|n| selector::matches(selector, &n.facts())) {
            let ids: Vec<&str> = nodes.iter().map(|n| n.cluster_id.as_str()).collect();
            v.warnings.push(format!(
                "{SELECTOR_PATH} matches none of the {} virtual nodes known now (remote clusters {}): \
                 phase will be NoClusterSelected until a cluster with matching labels appears",
                nodes.len(),
                ids.join(", ")
            ));
        }
    }
}

/// Syntax errors of the clusterSelector (empty when absent or well formed).
pub fn selector_errors(spec: &NamespaceOffloadingSpec) -> Vec<FieldError> {
    spec.cluster_selector.as_ref().map(selector::validate).unwrap_or_default()
}

/// The remote namespace name of this spec in `namespace`.
pub fn derived_name(
    spec: &NamespaceOffloadingSpec,
    namespace: &str,
    cluster_id: Option<&str>,
) -> Result<String, RemoteNameError> {
    remote_namespace_name(
        &spec.namespace_mapping_strategy,
        namespace,
        spec.remote_namespace_name.as_deref(),
        cluster_id,
    )
}

fn name_error(spec: &NamespaceOffloadingSpec, namespace: &str, e: RemoteNameError) -> FieldError {
    match e {
        RemoteNameError::MissingSelectedName => {
            FieldError::required("spec.remoteNamespaceName", e.to_string())
        }
        RemoteNameError::DefaultNameTooLong { .. } => {
            FieldError::invalid("metadata.namespace", namespace, e.to_string())
        }
        _ => FieldError::invalid(
            "spec.remoteNamespaceName",
            spec.remote_namespace_name.as_deref().unwrap_or_default(),
            e.to_string(),
        ),
    }
}

/// The value of the `liqo.io/scheduling-enabled` annotation Liqo v0.3 keeps on the object.
pub fn scheduling_annotation(spec: &NamespaceOffloadingSpec) -> String {
    let errors = selector_errors(spec);
    if errors.is_empty() {
        "true".to_owned()
    } else {
        // Annotations share 256 KiB per object: the first error and a count, never the whole list.
        format!("Invalid Cluster Selector : {}", first_and_count(&errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const UUID: &str = "b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a";

    fn obj(v: serde_json::Value) -> NamespaceOffloading {
        serde_json::from_value(json!({
            "apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
            "metadata": {"name": "offloading", "namespace": "web"}, "spec": v
        }))
        .unwrap()
    }

    fn ctx() -> Context<'static> {
        Context { cluster_id: Some(UUID), virtual_nodes: None }
    }

    fn errors(v: &Verdict) -> Vec<String> {
        v.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_good_object_passes_silently() {
        let v = review_create(&obj(json!({})), "web", &ctx());
        assert_eq!(v, Verdict::default());
    }

    #[test]
    fn wrong_name_and_bad_enums_are_all_reported() {
        let mut o = obj(json!({"namespaceMappingStrategy": "Same", "podOffloadingStrategy": "Anywhere"}));
        o.metadata.name = Some("my-offloading".into());
        let v = review_create(&o, "web", &ctx());
        assert_eq!(
            errors(&v),
            vec![
                r#"metadata.name: Invalid value: "my-offloading": a NamespaceOffloading must be named "offloading" (Liqo reads one per namespace, by that name): set metadata.name: offloading"#,
                r#"spec.namespaceMappingStrategy: Unsupported value: "Same": supported values: "DefaultName", "EnforceSameName", "SelectedName""#,
                r#"spec.podOffloadingStrategy: Unsupported value: "Anywhere": supported values: "LocalAndRemote", "Local", "Remote""#,
            ]
        );
        assert!(v.message().starts_with("[metadata.name: Invalid value"));
    }

    #[test]
    fn too_long_namespace_names_the_namespace_and_the_limit() {
        let ns = "payments-processing-europe-1"; // 28 characters
        let v = review_create(&obj(json!({})), ns, &ctx());
        let msg = v.message();
        assert!(msg.starts_with(&format!(r#"metadata.namespace: Invalid value: "{ns}": the remote namespace name "{ns}-{UUID}" is 65 characters"#)), "{msg}");
        assert!(msg.contains("at most 26 characters"), "{msg}");
        assert!(
            review_create(&obj(json!({"namespaceMappingStrategy": "EnforceSameName"})), ns, &ctx()).allowed()
        );
    }

    #[test]
    fn selected_name_rules() {
        let v = review_create(&obj(json!({"namespaceMappingStrategy": "SelectedName"})), "web", &ctx());
        assert_eq!(
            errors(&v),
            vec![
                "spec.remoteNamespaceName: Required value: SelectedName needs spec.remoteNamespaceName, the name of the namespace to create in the remote clusters"
            ]
        );
        let v = review_create(
            &obj(json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "Bad_Name"})),
            "web",
            &ctx(),
        );
        assert!(v.message().starts_with(r#"spec.remoteNamespaceName: Invalid value: "Bad_Name": the remote namespace name "Bad_Name" (8 characters) is not a valid namespace name"#));
        let v = review_create(&obj(json!({"remoteNamespaceName": "x"})), "web", &ctx());
        assert!(v.allowed());
        assert_eq!(v.warnings.len(), 1);
        assert!(v.warnings[0].starts_with("spec.remoteNamespaceName is ignored"));
    }

    #[test]
    fn unknown_cluster_id_warns_instead_of_denying() {
        let v = review_create(&obj(json!({})), "web", &Context::default());
        assert!(v.allowed());
        assert!(v.warnings[0].contains("--cluster-id"), "{:?}", v.warnings);
    }

    #[test]
    fn warnings_for_empty_terms_and_unmatched_selectors() {
        let nodes = vec![VirtualNode {
            name: "liqo-a".into(),
            cluster_id: "cluster-a".into(),
            labels: [("region".to_string(), "us".to_string())].into(),
        }];
        let c = Context { cluster_id: Some(UUID), virtual_nodes: Some(&nodes) };
        let o = obj(json!({"clusterSelector": {"nodeSelectorTerms": [
            {}, {"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu"]}]}]}}));
        let v = review_create(&o, "web", &c);
        assert!(v.allowed());
        assert_eq!(
            v.warnings,
            vec![
                "spec.clusterSelector.nodeSelectorTerms[0]: an empty term matches no cluster; give it matchExpressions or remove it".to_string(),
                "spec.clusterSelector matches none of the 1 virtual nodes known now (remote clusters cluster-a): phase will be NoClusterSelected until a cluster with matching labels appears".to_string(),
            ]
        );
        let none = Context { cluster_id: Some(UUID), virtual_nodes: Some(&[]) };
        assert!(
            review_create(&obj(json!({})), "web", &none).warnings[0]
                .starts_with("no remote cluster is known yet")
        );
    }

    #[test]
    fn updates_judge_only_what_changed() {
        let bad = obj(json!({"clusterSelector": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "region", "operator": "Equals", "values": ["eu"]}]}]}}));
        let mut same = bad.clone();
        same.metadata.finalizers = Some(vec!["f".into()]);
        assert!(review_update(&bad, &same, "web", &ctx()).allowed());

        let new =
            obj(json!({"namespaceMappingStrategy": "EnforceSameName", "podOffloadingStrategy": "Local"}));
        let v = review_update(&obj(json!({})), &new, "web", &ctx());
        assert_eq!(
            errors(&v),
            vec![
                r#"spec.namespaceMappingStrategy: Invalid value: "EnforceSameName": field is immutable (it was "DefaultName"): the remote namespaces already carry the old name; delete the NamespaceOffloading and create it again to change it"#
            ]
        );
        assert_eq!(
            v.warnings,
            vec![
                r#"spec.podOffloadingStrategy: changed from "LocalAndRemote" to "Local", which is more restrictive: pods already running are not moved; delete them to have them rescheduled"#
            ]
        );
    }

    #[test]
    fn annotation_carries_the_selector_error() {
        assert_eq!(scheduling_annotation(&obj(json!({})).spec), "true");
        let o = obj(json!({"clusterSelector": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "region", "operator": "In"}]}]}}));
        assert_eq!(
            scheduling_annotation(&o.spec),
            "Invalid Cluster Selector : spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].values: Required value: must be specified when `operator` is \"In\": list the label values to match"
        );
    }
}

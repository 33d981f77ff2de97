//! The verdict on a NamespaceOffloading (docs/behaviour.md, "The webhooks"): what denies it and what only deserves a warning.
//! Pure: the webhook calls it per review, the reconcile loop per object, with what each knows.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NodeSelector;

use crate::crd::{
    NamespaceMappingStrategy, NamespaceOffloading, NamespaceOffloadingSpec, PodOffloadingStrategy,
};
pub use crate::liqo::Generation;
use crate::liqo::OFFLOADING_NAME;

use super::field::{FieldError, RuleId, aggregate, first_and_count};
use super::names::{RemoteNameError, remote_namespace_name};
use super::node_index::{NodeBits, NodeIndex};
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

/// The virtual nodes known at one moment, with their names and labels indexed once (when the
/// cluster view rebuilds its snapshot), so that judging a selector against all of them costs about
/// the same with 1 or 1 000. Reads as the slice of nodes.
#[derive(Clone, Default)]
pub struct VirtualNodes {
    nodes: Vec<VirtualNode>,
    index: NodeIndex,
}

impl VirtualNodes {
    pub fn new(nodes: Vec<VirtualNode>) -> Self {
        let index = NodeIndex::new(nodes.iter().map(VirtualNode::facts));
        Self { nodes, index }
    }

    pub fn as_slice(&self) -> &[VirtualNode] {
        &self.nodes
    }

    /// The positions of the nodes the generation's controller selects (for a selector it
    /// accepts): what [`selects`] says of each node.
    pub fn selected(&self, generation: Generation, selector: Option<&NodeSelector>) -> NodeBits {
        match generation {
            Generation::V0_3 => self.index.matching(selector),
            Generation::V1 => self.index.matching_lazily(selector),
        }
    }
}

impl From<Vec<VirtualNode>> for VirtualNodes {
    fn from(nodes: Vec<VirtualNode>) -> Self {
        Self::new(nodes)
    }
}

impl std::ops::Deref for VirtualNodes {
    type Target = [VirtualNode];

    fn deref(&self) -> &[VirtualNode] {
        &self.nodes
    }
}

/// The nodes alone: the index follows from them.
impl std::fmt::Debug for VirtualNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.nodes).finish()
    }
}

impl PartialEq for VirtualNodes {
    fn eq(&self, other: &Self) -> bool {
        self.nodes == other.nodes
    }
}

impl Eq for VirtualNodes {}

/// What the judge knows about the cluster, each part possibly unknown.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The local cluster id, when known.
    pub cluster_id: Option<&'a str>,
    /// The virtual nodes known right now; `None` when no cache is running or it has not synced.
    pub virtual_nodes: Option<&'a VirtualNodes>,
    /// The Liqo generation the cluster runs.
    pub generation: Generation,
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
        v.errors.push(name_error_of(name));
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
        v.errors.push(immutable_mapping_strategy(
            o.namespace_mapping_strategy.as_str(),
            n.namespace_mapping_strategy.as_str(),
        ));
    }
    if o.remote_namespace_name != n.remote_namespace_name {
        v.errors.push(immutable_remote_name(
            o.remote_namespace_name.as_deref().unwrap_or_default(),
            n.remote_namespace_name.as_deref().unwrap_or_default(),
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
        v.errors.push(unsupported_mapping_strategy(s));
    }
    if let PodOffloadingStrategy::Unsupported(s) = &spec.pod_offloading_strategy {
        v.errors.push(unsupported_pod_strategy(s));
    }
    let selector = judge_selector(spec, ctx);
    let selector_ok = selector.allowed();
    v.errors.extend(selector.errors);
    v.warnings.extend(selector.warnings);
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
        } else if nodes.selected(ctx.generation, selector).is_empty() {
            v.warnings.push(format!(
                "{SELECTOR_PATH} matches none of the {} virtual nodes known now (remote clusters {}): \
                 phase will be NoClusterSelected until a cluster with matching labels appears",
                nodes.len(),
                first_few(nodes.iter().map(|n| n.cluster_id.clone()), nodes.len())
            ));
        }
    }
}

/// Syntax errors of the clusterSelector (empty when absent or well formed), by the eager rule of
/// Liqo v0.3 and this project's reconcile loop.
pub fn selector_errors(spec: &NamespaceOffloadingSpec) -> Vec<FieldError> {
    spec.cluster_selector.as_ref().map(selector::validate).unwrap_or_default()
}

/// The clusterSelector's part of the verdict, by the rule of the generation in `ctx`.
pub fn judge_selector(spec: &NamespaceOffloadingSpec, ctx: &Context<'_>) -> Verdict {
    let mut v = Verdict::default();
    match ctx.generation {
        Generation::V0_3 => v.errors = selector_errors(spec),
        Generation::V1 => {
            judge_selector_v1(spec, ctx.virtual_nodes, &mut v);
        }
    }
    v
}

/// Whether the generation's controller selects the virtual node (for a selector it accepts).
pub fn selects(generation: Generation, selector: Option<&NodeSelector>, node: &VirtualNode) -> bool {
    match generation {
        Generation::V0_3 => selector::matches(selector, &node.facts()),
        Generation::V1 => selector::matches_lazily(selector, &node.facts()),
    }
}

/// The error of a v1.x object without `nodeSelectorTerms`.
pub fn missing_terms_error() -> FieldError {
    FieldError::required(
        RuleId::TermsRequired,
        selector::TERMS_PATH,
        "Liqo v1.x needs it: without it, Liqo's controller writes nodeSelectorTerms: null with its \
         finalizer, its own CRD refuses that, and the object stays NoClusterSelected forever, with no \
         Event; to offload to every remote cluster set clusterSelector: {nodeSelectorTerms: []}",
    )
}

/// What Liqo v1.x fails on in the clusterSelector, as errors; what works only by luck, as warnings.
/// Returns whether the selector is accepted.
///
/// Liqo v1.2 judges the selector per virtual node (`MatchVirtualNodeSelectorTerms` ->
/// `LazyErrorNodeSelector.Match`): a broken term costs nothing while a well-formed term matches
/// that node, and turns the whole object `Invalid` (no cluster selected, never retried) as soon as
/// one virtual node matches none of the well-formed terms.
fn judge_selector_v1(spec: &NamespaceOffloadingSpec, nodes: Option<&VirtualNodes>, v: &mut Verdict) -> bool {
    let Some(sel) = spec.cluster_selector.as_ref() else {
        v.errors.push(missing_terms_error());
        return false;
    };
    // Bounded before any per-term work, on every generation (docs/behaviour.md, "The webhooks").
    let too_many = selector::too_many(sel);
    if !too_many.is_empty() {
        v.errors.extend(too_many);
        return false;
    }
    let reading = selector::read_lazily(sel);
    v.warnings.extend(reading.meaningless.iter().cloned());
    if reading.broken.is_empty() {
        return true;
    }
    if reading.all_broken() {
        // Every virtual node, now or later, gets the parse errors.
        v.errors.extend(reading.errors());
        return false;
    }
    let unmatched = nodes.map(|n| (n, n.selected(Generation::V1, Some(sel)).complement()));
    if let Some((nodes, unmatched)) = unmatched.filter(|(_, u)| !u.is_empty()) {
        v.errors.extend(reading.errors());
        let which = unmatched.iter().map(|i| format!("{} (node {})", nodes[i].cluster_id, nodes[i].name));
        v.errors.push(FieldError::forbidden(
            RuleId::SelectorUnmatched,
            SELECTOR_PATH,
            format!(
                "remote cluster {} matches none of the well-formed terms, so Liqo v1.x reports the \
                 malformed terms above (Event Invalid) and selects no cluster at all: fix or remove them",
                first_few(which, unmatched.count())
            ),
        ));
        return false;
    }
    for (i, errors) in &reading.broken {
        let more = match errors.len() {
            1 => String::new(),
            n => format!(" (and {} more problems in this term)", n - 1),
        };
        v.warnings.push(format!(
            "{SELECTOR_PATH}.nodeSelectorTerms[{i}] is malformed and works only by luck: {}{more}; \
             Liqo v1.x ignores it while another term matches every remote cluster, and the day a \
             cluster matches none of the other terms the whole object turns Invalid and no cluster \
             is selected: fix or remove this term",
            errors[0]
        ));
    }
    true
}

/// The first few of `total` clusters, then how many more: a few name the problem, a fleet of them
/// would only make the answer long.
fn first_few(items: impl Iterator<Item = String>, total: usize) -> String {
    const SHOWN: usize = 5;
    let mut shown: Vec<String> = items.take(SHOWN).collect();
    if total > SHOWN {
        shown.push(format!("and {} more", total - SHOWN));
    }
    shown.join(", ")
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
    let remote = spec.remote_namespace_name.as_deref().unwrap_or_default();
    name_field_error(&e, namespace, remote, e.to_string())
}

/// The field error of a remote name that cannot be derived, with `message` as its words: the
/// field it names (the namespace when the namespace is what to change), its rule, its value.
pub(crate) fn name_field_error(
    e: &RemoteNameError,
    namespace: &str,
    remote_name: &str,
    message: String,
) -> FieldError {
    match e {
        RemoteNameError::MissingSelectedName => {
            FieldError::required(RuleId::SelectedNameRequired, REMOTE_NAME_PATH, message)
        }
        RemoteNameError::DefaultNameTooLong { .. } => {
            FieldError::invalid(RuleId::DefaultNameTooLong, NAMESPACE_PATH, namespace, message)
        }
        RemoteNameError::ExistsEverywhere { same_name: true, .. } => {
            FieldError::invalid(RuleId::RemoteNameEverywhere, NAMESPACE_PATH, namespace, message)
        }
        RemoteNameError::ExistsEverywhere { same_name: false, .. } => {
            FieldError::invalid(RuleId::RemoteNameEverywhere, REMOTE_NAME_PATH, remote_name, message)
        }
        // The unknown cluster id is a warning, never an error; named here for completeness.
        RemoteNameError::InvalidName { .. } | RemoteNameError::UnknownClusterId => {
            FieldError::invalid(RuleId::RemoteNameInvalid, REMOTE_NAME_PATH, remote_name, message)
        }
    }
}

// One constructor per rule, shared with the ValidatingAdmissionPolicy generator (`crate::policy`),
// which renders them with placeholders to build its messages.

pub const NAME_PATH: &str = "metadata.name";
pub const NAMESPACE_PATH: &str = "metadata.namespace";
pub const MAPPING_STRATEGY_PATH: &str = "spec.namespaceMappingStrategy";
pub const POD_STRATEGY_PATH: &str = "spec.podOffloadingStrategy";
pub const REMOTE_NAME_PATH: &str = "spec.remoteNamespaceName";

pub(crate) fn name_error_of(name: &str) -> FieldError {
    FieldError::invalid(
        RuleId::Name,
        NAME_PATH,
        name,
        format!(
            "a NamespaceOffloading must be named {OFFLOADING_NAME:?} (Liqo reads one per \
             namespace, by that name): set metadata.name: {OFFLOADING_NAME}"
        ),
    )
}

pub(crate) fn immutable_mapping_strategy(old: &str, new: &str) -> FieldError {
    FieldError::invalid(
        RuleId::ImmutableMappingStrategy,
        MAPPING_STRATEGY_PATH,
        new,
        format!(
            "field is immutable (it was {old:?}): the remote namespaces already carry the old \
             name; delete the NamespaceOffloading and create it again to change it"
        ),
    )
}

pub(crate) fn immutable_remote_name(old: &str, new: &str) -> FieldError {
    FieldError::invalid(
        RuleId::ImmutableRemoteName,
        REMOTE_NAME_PATH,
        new,
        format!(
            "field is immutable (it was {old:?}): delete the NamespaceOffloading and create it \
             again to change it"
        ),
    )
}

pub(crate) fn unsupported_mapping_strategy(value: &str) -> FieldError {
    FieldError::unsupported(
        RuleId::MappingStrategy,
        MAPPING_STRATEGY_PATH,
        value,
        &NamespaceMappingStrategy::SUPPORTED,
    )
}

pub(crate) fn unsupported_pod_strategy(value: &str) -> FieldError {
    FieldError::unsupported(
        RuleId::PodOffloadingStrategy,
        POD_STRATEGY_PATH,
        value,
        &PodOffloadingStrategy::SUPPORTED,
    )
}

/// The value of the `liqo.io/scheduling-enabled` annotation Liqo v0.3 keeps on the object: `"true"`
/// only when the generation's controller will select with this selector.
pub fn scheduling_annotation(spec: &NamespaceOffloadingSpec, generation: Generation) -> String {
    let errors = match (generation, spec.cluster_selector.as_ref()) {
        (Generation::V0_3, _) => selector_errors(spec),
        (Generation::V1, None) => vec![missing_terms_error()],
        (Generation::V1, Some(sel)) => {
            let too_many = selector::too_many(sel);
            if !too_many.is_empty() {
                too_many
            } else {
                let reading = selector::read_lazily(sel);
                if reading.all_broken() { reading.errors() } else { Vec::new() }
            }
        }
    };
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
        Context { cluster_id: Some(UUID), virtual_nodes: None, generation: Generation::V0_3 }
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
        let nodes = VirtualNodes::new(vec![VirtualNode {
            name: "liqo-a".into(),
            cluster_id: "cluster-a".into(),
            labels: [("region".to_string(), "us".to_string())].into(),
        }]);
        let c = Context { cluster_id: Some(UUID), virtual_nodes: Some(&nodes), ..Default::default() };
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
        // A fleet is named by its first few clusters.
        let fleet = VirtualNodes::new(
            (0..1000)
                .map(|i| VirtualNode {
                    name: format!("liqo-c{i:04}"),
                    cluster_id: format!("c{i:04}"),
                    ..nodes[0].clone()
                })
                .collect(),
        );
        let c = Context { cluster_id: Some(UUID), virtual_nodes: Some(&fleet), ..Default::default() };
        assert_eq!(
            review_create(&o, "web", &c).warnings[1],
            "spec.clusterSelector matches none of the 1000 virtual nodes known now (remote clusters c0000, c0001, c0002, c0003, c0004, and 995 more): phase will be NoClusterSelected until a cluster with matching labels appears"
        );
        let empty = VirtualNodes::default();
        let none = Context { cluster_id: Some(UUID), virtual_nodes: Some(&empty), ..Default::default() };
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
        assert_eq!(scheduling_annotation(&obj(json!({})).spec, Generation::V0_3), "true");
        let o = obj(json!({"clusterSelector": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "region", "operator": "In"}]}]}}));
        assert_eq!(
            scheduling_annotation(&o.spec, Generation::V0_3),
            "Invalid Cluster Selector : spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].values: Required value: must be specified when `operator` is \"In\": list the label values to match"
        );
    }

    // Liqo v1.x (docs/behaviour.md, "Verdicts per generation"): deny exactly what Liqo v1.2
    // fails on, warn on luck.

    const V1_ID: &str = "frosty-bird";

    fn v1(nodes: Option<&VirtualNodes>) -> Context<'_> {
        Context { cluster_id: Some(V1_ID), virtual_nodes: nodes, generation: Generation::V1 }
    }

    fn node(id: &str, region: &str) -> VirtualNode {
        VirtualNode {
            name: format!("vk-{id}"),
            cluster_id: id.into(),
            labels: [("region".to_string(), region.to_string())].into(),
        }
    }

    fn sel(terms: serde_json::Value) -> serde_json::Value {
        json!({"clusterSelector": {"nodeSelectorTerms": terms}})
    }

    #[test]
    fn v1_denies_a_selector_without_terms_and_v0_3_allows_it() {
        let fix = "to offload to every remote cluster set clusterSelector: {nodeSelectorTerms: []}";
        for spec in [
            json!({}),
            json!({"clusterSelector": {}}),
            json!({"clusterSelector": {"nodeSelectorTerms": null}}),
        ] {
            let v = review_create(&obj(spec.clone()), "web", &v1(None));
            assert_eq!(v.errors.len(), 1, "{spec}");
            let msg = v.message();
            assert!(
                msg.starts_with("spec.clusterSelector.nodeSelectorTerms: Required value: Liqo v1.x needs it"),
                "{msg}"
            );
            assert!(msg.ends_with(fix), "{msg}");
            assert!(review_create(&obj(spec.clone()), "web", &ctx()).allowed(), "{spec}");
            assert_eq!(scheduling_annotation(&obj(spec.clone()).spec, Generation::V0_3), "true");
            let a = scheduling_annotation(&obj(spec).spec, Generation::V1);
            assert!(
                a.starts_with(
                    "Invalid Cluster Selector : spec.clusterSelector.nodeSelectorTerms: Required value"
                ),
                "{a}"
            );
        }
        let every = obj(sel(json!([])));
        assert_eq!(review_create(&every, "web", &v1(None)), Verdict::default());
        assert_eq!(scheduling_annotation(&every.spec, Generation::V1), "true");
    }

    #[test]
    fn names_every_cluster_has_are_denied_on_both_generations() {
        for c in [ctx(), v1(None)] {
            let o =
                obj(json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "kube-system",
                "clusterSelector": {"nodeSelectorTerms": []}}));
            let msg = review_create(&o, "web", &c).message();
            assert!(msg.starts_with(r#"spec.remoteNamespaceName: Invalid value: "kube-system": the remote namespace name "kube-system" is a namespace every Kubernetes cluster already has"#), "{msg}");
            let o = obj(
                json!({"namespaceMappingStrategy": "EnforceSameName", "clusterSelector": {"nodeSelectorTerms": []}}),
            );
            let msg = review_create(&o, "default", &c).message();
            assert!(
                msg.starts_with(
                    r#"metadata.namespace: Invalid value: "default": the remote namespace name "default""#
                ),
                "{msg}"
            );
        }
    }

    #[test]
    fn v1_match_fields_liqo_accepts_warn_instead_of_denying() {
        let nodes = VirtualNodes::new(vec![node("a", "eu")]);
        let o = obj(sel(json!([{"matchFields": [
            {"key": "metadata.labels", "operator": "NotIn", "values": ["x"]},
            {"key": "metadata.name", "operator": "NotIn", "values": ["Not_A_Node"]}]}])));
        let v = review_create(&o, "web", &v1(Some(&nodes)));
        assert!(v.allowed(), "{}", v.message());
        assert_eq!(v.warnings.len(), 2, "{:?}", v.warnings);
        assert!(v.warnings[0].starts_with(r#"spec.clusterSelector.nodeSelectorTerms[0].matchFields[0].key: "metadata.labels" is not a node field (only "metadata.name" is): Liqo accepts it but compares an empty string with "x", so this requirement always holds"#), "{}", v.warnings[0]);
        assert!(
            v.warnings[1].contains(r#""Not_A_Node" is not a node name"#)
                && v.warnings[1].contains("always holds and excludes nothing"),
            "{}",
            v.warnings[1]
        );
        // Under In it never holds: the term matches nothing, so nothing is selected (a warning).
        let o =
            obj(sel(json!([{"matchFields": [{"key": "spec.podCIDR", "operator": "In", "values": ["x"]}]}])));
        let v = review_create(&o, "web", &v1(Some(&nodes)));
        assert!(v.allowed());
        assert!(v.warnings[0].contains("never holds and its term matches no cluster"), "{:?}", v.warnings);
        assert!(
            v.warnings[1].starts_with("spec.clusterSelector matches none of the 1 virtual nodes"),
            "{:?}",
            v.warnings
        );
        // What Liqo's field selector parser refuses is still denied.
        let o = obj(sel(json!([{"matchFields": [{"key": "metadata.name", "operator": "Exists"}]}])));
        assert_eq!(
            errors(&review_create(&o, "web", &v1(Some(&nodes)))),
            vec![
                r#"spec.clusterSelector.nodeSelectorTerms[0].matchFields[0].operator: Unsupported value: "Exists": supported values: "In", "NotIn""#
            ]
        );
        // v0.3 keeps the eager rule of its reconcile loop.
        let o = obj(sel(
            json!([{"matchFields": [{"key": "metadata.labels", "operator": "NotIn", "values": ["x"]}]}]),
        ));
        assert!(!review_create(&o, "web", &ctx()).allowed());
    }

    #[test]
    fn v1_a_broken_term_beside_a_matching_one_is_a_loud_warning() {
        let terms = json!([
            {"matchExpressions": [{"key": "region", "operator": "Equals", "values": ["eu"]}]},
            {"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu"]}]}]);
        let o = obj(sel(terms));
        let eu = VirtualNodes::new(vec![node("a", "eu")]);
        let v = review_create(&o, "web", &v1(Some(&eu)));
        assert!(v.allowed(), "{}", v.message());
        assert_eq!(
            v.warnings,
            vec![r#"spec.clusterSelector.nodeSelectorTerms[0] is malformed and works only by luck: spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: "Equals": supported values: "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"; Liqo v1.x ignores it while another term matches every remote cluster, and the day a cluster matches none of the other terms the whole object turns Invalid and no cluster is selected: fix or remove this term"#.to_string()]
        );
        // No virtual node known (or no cache): nothing fails yet; the same warning.
        assert!(review_create(&o, "web", &v1(None)).allowed());
        assert!(review_create(&o, "web", &v1(Some(&VirtualNodes::default()))).allowed());
        assert_eq!(scheduling_annotation(&o.spec, Generation::V1), "true");
        // A cluster the good term does not match: Liqo reports the broken term now.
        let both = VirtualNodes::new(vec![node("a", "eu"), node("b", "us")]);
        let v = review_create(&o, "web", &v1(Some(&both)));
        assert_eq!(
            errors(&v),
            vec![
                r#"spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: "Equals": supported values: "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt""#.to_string(),
                "spec.clusterSelector: Forbidden: remote cluster b (node vk-b) matches none of the well-formed terms, so Liqo v1.x reports the malformed terms above (Event Invalid) and selects no cluster at all: fix or remove them".to_string(),
            ]
        );
        // v0.3 refuses any broken term.
        assert!(!review_create(&o, "web", &ctx()).allowed());
    }

    #[test]
    fn v1_a_selector_whose_every_term_is_broken_is_denied() {
        let o = obj(sel(json!([
            {},
            {"matchExpressions": [{"key": "region", "operator": "In"}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]}])));
        let empty = VirtualNodes::default();
        for nodes in [None, Some(&empty)] {
            let v = review_create(&o, "web", &v1(nodes));
            assert_eq!(v.errors.len(), 2, "{}", v.message());
            assert!(v.message().contains("nodeSelectorTerms[1].matchExpressions[0].values: Required value"));
        }
        let a = scheduling_annotation(&o.spec, Generation::V1);
        assert!(a.starts_with("Invalid Cluster Selector : spec.clusterSelector.nodeSelectorTerms[1]"), "{a}");
        assert!(a.ends_with("(and 1 more error)"), "{a}");
    }

    #[test]
    fn v1_selectors_past_the_limits_are_refused_too() {
        let terms: Vec<serde_json::Value> =
            (0..33).map(|_| json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]})).collect();
        let o = obj(sel(json!(terms)));
        assert_eq!(
            errors(&review_create(&o, "web", &v1(None))),
            vec!["spec.clusterSelector.nodeSelectorTerms: Too many: 33: must have at most 32 items"]
        );
        assert!(
            scheduling_annotation(&o.spec, Generation::V1)
                .ends_with("Too many: 33: must have at most 32 items")
        );
    }

    #[test]
    fn v1_matching_skips_broken_terms() {
        let o = obj(sel(json!([
            {"matchExpressions": [{"key": "region", "operator": "Equals", "values": ["us"]}]},
            {"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu"]}]}])));
        let sel = o.spec.cluster_selector.as_ref();
        assert!(selects(Generation::V1, sel, &node("a", "eu")));
        assert!(!selects(Generation::V1, sel, &node("b", "us")));
        assert!(selects(Generation::V1, None, &node("b", "us")));
        // The index agrees; v0.3 reads the broken term as one no node matches.
        let nodes = VirtualNodes::new(vec![node("a", "eu"), node("b", "us")]);
        for g in [Generation::V1, Generation::V0_3] {
            assert_eq!(nodes.selected(g, sel).iter().collect::<Vec<_>>(), vec![0], "{g:?}");
            assert_eq!(nodes.selected(g, None).count(), 2, "{g:?}");
        }
    }

    #[test]
    fn v1_a_fleet_of_unmatched_clusters_is_named_by_its_first_five() {
        let o = obj(sel(json!([
            {"matchExpressions": [{"key": "region", "operator": "Equals", "values": ["eu"]}]},
            {"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu"]}]}])));
        let fleet = VirtualNodes::new(
            (0..1000).map(|i| node(&format!("c{i:04}"), if i % 2 == 0 { "eu" } else { "us" })).collect(),
        );
        let v = review_create(&o, "web", &v1(Some(&fleet)));
        assert_eq!(
            errors(&v)[1],
            "spec.clusterSelector: Forbidden: remote cluster c0001 (node vk-c0001), c0003 (node vk-c0003), c0005 (node vk-c0005), c0007 (node vk-c0007), c0009 (node vk-c0009), and 495 more matches none of the well-formed terms, so Liqo v1.x reports the malformed terms above (Event Invalid) and selects no cluster at all: fix or remove them"
        );
    }
}

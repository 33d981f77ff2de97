//! The Liqo v0.3 custom resources this project judges and maintains (docs/behaviour.md, "The objects").
//!
//! The strategy enums accept any string on the wire (an `Unsupported` variant that the CRD schema
//! does not list): the webhook must be able to read an object with a bad value in order to say what
//! is wrong with it, rather than fail to decode it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NodeSelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use kube::core::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the remote namespace is named.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, Default)]
pub enum NamespaceMappingStrategy {
    // `<local-namespace>-<local-cluster-id>`.
    #[default]
    DefaultName,
    // The local namespace's own name.
    EnforceSameName,
    // `spec.remoteNamespaceName`.
    SelectedName,
    // A value outside the enum, kept so that it can be reported.
    #[serde(untagged)]
    Unsupported(String),
}

impl NamespaceMappingStrategy {
    pub const SUPPORTED: [&'static str; 3] = ["DefaultName", "EnforceSameName", "SelectedName"];

    pub fn as_str(&self) -> &str {
        match self {
            Self::DefaultName => "DefaultName",
            Self::EnforceSameName => "EnforceSameName",
            Self::SelectedName => "SelectedName",
            Self::Unsupported(s) => s,
        }
    }
}

/// Where the pods of an offloaded namespace may run.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, Default)]
pub enum PodOffloadingStrategy {
    // Local and remote clusters.
    #[default]
    LocalAndRemote,
    // Only the local cluster.
    Local,
    // Only remote clusters.
    Remote,
    // A value outside the enum, kept so that it can be reported.
    #[serde(untagged)]
    Unsupported(String),
}

impl PodOffloadingStrategy {
    pub const SUPPORTED: [&'static str; 3] = ["LocalAndRemote", "Local", "Remote"];

    pub fn as_str(&self) -> &str {
        match self {
            Self::LocalAndRemote => "LocalAndRemote",
            Self::Local => "Local",
            Self::Remote => "Remote",
            Self::Unsupported(s) => s,
        }
    }

    /// How many places pods may run: a move to a lower rank is more restrictive.
    pub fn rank(&self) -> Option<u8> {
        match self {
            Self::LocalAndRemote => Some(2),
            Self::Local | Self::Remote => Some(1),
            Self::Unsupported(_) => None,
        }
    }

    /// Whether pods of the namespace may be scheduled on virtual nodes.
    pub fn allows_remote(&self) -> bool {
        matches!(self, Self::LocalAndRemote | Self::Remote)
    }
}

/// Deserialize for a lenient enum: a supported value, or `Unsupported` with the string as sent.
/// Written out because serde's derive for a partly untagged enum buffers each value before trying
/// the variants (an allocation per field, in every review and every cached object).
macro_rules! lenient_enum_deserialize {
    ($ty:ident: $($variant:ident),+) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Lenient;
                impl serde::de::Visitor<'_> for Lenient {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "a string, one of {:?}", <$ty>::SUPPORTED)
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$ty, E> {
                        Ok(match s {
                            $(stringify!($variant) => $ty::$variant,)+
                            other => $ty::Unsupported(other.to_owned()),
                        })
                    }
                }
                d.deserialize_str(Lenient)
            }
        }
    };
}

/// The CRD schema of a lenient enum: a plain string enum of the supported values (the `Unsupported`
/// catch-all exists only on the Rust side).
macro_rules! string_enum_schema {
    ($ty:ty, $name:literal) => {
        string_enum_schema!($ty, $name, "");
    };
    ($ty:ty, $name:literal, $description:literal) => {
        impl JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let mut schema = schemars::json_schema!({ "type": "string", "enum": <$ty>::SUPPORTED });
                if !$description.is_empty() {
                    schema.insert("description".into(), $description.into());
                }
                schema
            }
        }
    };
}
string_enum_schema!(NamespaceMappingStrategy, "NamespaceMappingStrategy");
lenient_enum_deserialize!(NamespaceMappingStrategy: DefaultName, EnforceSameName, SelectedName);
string_enum_schema!(PodOffloadingStrategy, "PodOffloadingStrategy");
lenient_enum_deserialize!(PodOffloadingStrategy: LocalAndRemote, Local, Remote);

/// Desired state of namespace offloading for the namespace the object lives in.
// clippy reads the repeated `type_ = ...` of separate printcolumn(...) groups as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "offloading.liqo.io",
    version = "v1alpha1",
    kind = "NamespaceOffloading",
    plural = "namespaceoffloadings",
    namespaced,
    shortname = "nsof",
    status = "NamespaceOffloadingStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "NamespaceOffloading asks Liqo to extend its namespace to the selected remote clusters.",
    printcolumn(
        name = "NamespaceMappingStrategy",
        type_ = "string",
        json_path = ".spec.namespaceMappingStrategy"
    ),
    printcolumn(name = "PodOffloadingStrategy", type_ = "string", json_path = ".spec.podOffloadingStrategy"),
    printcolumn(name = "OffloadingPhase", type_ = "string", json_path = ".status.offloadingPhase"),
    printcolumn(
        name = "RemoteNamespaceName",
        type_ = "string",
        json_path = ".status.remoteNamespaceName",
        priority = "10"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceOffloadingSpec {
    /// How the remote namespace is named.
    #[serde(default)]
    pub namespace_mapping_strategy: NamespaceMappingStrategy,
    /// The remote namespace's name; required with SelectedName, ignored otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_namespace_name: Option<String>,
    /// Where the namespace's pods may run.
    #[serde(default)]
    pub pod_offloading_strategy: PodOffloadingStrategy,
    /// Which remote clusters (virtual nodes) the namespace is extended to; absent selects all.
    // `{}` and `{nodeSelectorTerms: null}` read as absent: k8s-openapi would read them as an empty
    // list, which means "every cluster" and is what Liqo v1.x accepts, while an absent list is what
    // Liqo v1.x fails on. Every rule treats those two spellings as the absent selector.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "selector_with_terms")]
    pub cluster_selector: Option<NodeSelector>,
}

/// A clusterSelector, `None` when it is absent, null, or has no `nodeSelectorTerms` (or null ones).
fn selector_with_terms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<NodeSelector>, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire {
        #[serde(default)]
        node_selector_terms: Option<Vec<k8s_openapi::api::core::v1::NodeSelectorTerm>>,
    }
    Ok(Option::<Wire>::deserialize(d)?
        .and_then(|w| w.node_selector_terms)
        .map(|terms| NodeSelector { node_selector_terms: terms }))
}

/// Offloading phase of the whole namespace.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub enum OffloadingPhase {
    Ready,
    NoClusterSelected,
    InProgress,
    SomeFailed,
    AllFailed,
    Terminating,
    // Written by someone else (another Liqo version) under a CRD without the enum; kept so that the
    // object still decodes and the reconcile loop can correct it.
    #[serde(untagged)]
    Unsupported(String),
}

impl OffloadingPhase {
    pub const SUPPORTED: [&'static str; 6] =
        ["Ready", "NoClusterSelected", "InProgress", "SomeFailed", "AllFailed", "Terminating"];

    pub fn as_str(&self) -> &str {
        match self {
            Self::Ready => "Ready",
            Self::NoClusterSelected => "NoClusterSelected",
            Self::InProgress => "InProgress",
            Self::SomeFailed => "SomeFailed",
            Self::AllFailed => "AllFailed",
            Self::Terminating => "Terminating",
            Self::Unsupported(s) => s,
        }
    }
}
string_enum_schema!(OffloadingPhase, "OffloadingPhase", "Offloading phase of the whole namespace.");
lenient_enum_deserialize!(OffloadingPhase: Ready, NoClusterSelected, InProgress, SomeFailed, AllFailed, Terminating);

/// A string that thousands of cached objects repeat (a condition's type, status, reason and
/// message; a cluster id): decoded, it is kept once for the process, not once per object.
pub type Shared = Cow<'static, str>;

/// The interning behind [`Shared`]: at most [`shared::MAX`] distinct strings of at most
/// [`shared::MAX_LEN`] bytes are kept for the life of the process; any other is owned as usual, so
/// the table is bounded whatever the API server sends.
pub mod shared {
    use std::collections::{BTreeMap, HashSet, VecDeque};
    use std::sync::{Mutex, OnceLock};

    use serde::{Deserialize, Deserializer};

    use super::Shared;

    pub const MAX: usize = 4096;
    pub const MAX_LEN: usize = 256;

    pub fn intern(s: &str) -> Shared {
        static TABLE: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
        if s.len() > MAX_LEN {
            return Shared::Owned(s.to_owned());
        }
        let Ok(mut table) = TABLE.get_or_init(Default::default).lock() else {
            return Shared::Owned(s.to_owned());
        };
        if let Some(kept) = table.get(s) {
            return Shared::Borrowed(kept);
        }
        if table.len() >= MAX {
            return Shared::Owned(s.to_owned());
        }
        // Leaked on purpose: bounded by MAX * MAX_LEN, and shared by every object for good.
        let kept: &'static str = Box::leak(s.to_owned().into_boxed_str());
        table.insert(kept);
        Shared::Borrowed(kept)
    }

    pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Shared, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(intern(&s))
    }

    pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Shared>, D::Error> {
        let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        Ok(s.map(|s| intern(&s)))
    }

    /// Cluster id -> conditions, the ids interned and equal condition lists shared: the lists of
    /// the last [`RECENT`] distinct values decoded are remembered (lists of at most
    /// [`RECENT_LEN`] conditions), so that the clusters of one object, and objects reconciled in
    /// the same second, keep one copy. At 5 000 namespaces and 10 clusters the cached statuses
    /// were otherwise two thirds of the cache.
    pub fn conditions<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Shared, super::Conditions>, D::Error> {
        let m = <BTreeMap<std::borrow::Cow<'de, str>, Vec<super::RemoteNamespaceCondition>>>::deserialize(d)?;
        Ok(m.into_iter().map(|(k, v)| (intern(&k), recent(v))).collect())
    }

    pub const RECENT: usize = 64;
    pub const RECENT_LEN: usize = 8;

    fn recent(v: Vec<super::RemoteNamespaceCondition>) -> super::Conditions {
        static KEPT: Mutex<VecDeque<super::Conditions>> = Mutex::new(VecDeque::new());
        if v.len() > RECENT_LEN {
            return v.into();
        }
        let Ok(mut kept) = KEPT.lock() else { return v.into() };
        if let Some(same) = kept.iter().rev().find(|k| k[..] == v[..]) {
            return same.clone();
        }
        let new: super::Conditions = v.into();
        if kept.len() >= RECENT {
            kept.pop_front();
        }
        kept.push_back(new.clone());
        new
    }
}

/// The conditions of one remote namespace. Decoded, equal lists share one copy (see
/// [`shared::conditions`]): every cluster of an object usually carries the same ones.
pub type Conditions = std::sync::Arc<[RemoteNamespaceCondition]>;

/// One condition of a remote namespace, shaped like core/v1 NamespaceCondition.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemoteNamespaceCondition {
    /// `Ready` or `OffloadingRequired`.
    #[serde(rename = "type", deserialize_with = "shared::text")]
    pub type_: Shared,
    /// `True`, `False` or `Unknown`.
    #[serde(deserialize_with = "shared::text")]
    pub status: Shared,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, deserialize_with = "shared::opt_text", skip_serializing_if = "Option::is_none")]
    pub reason: Option<Shared>,
    #[serde(default, deserialize_with = "shared::opt_text", skip_serializing_if = "Option::is_none")]
    pub message: Option<Shared>,
}

/// Observed state, written by the reconcile loop.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceOffloadingStatus {
    /// The remote namespace name the strategy derived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_namespace_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offloading_phase: Option<OffloadingPhase>,
    /// Remote cluster id -> conditions of the namespace in that cluster.
    #[serde(default, deserialize_with = "shared::conditions", skip_serializing_if = "BTreeMap::is_empty")]
    pub remote_namespaces_conditions: BTreeMap<Shared, Conditions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The namespaces one remote cluster should hold, kept in that cluster's tenant namespace.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "virtualkubelet.liqo.io",
    version = "v1alpha1",
    kind = "NamespaceMap",
    plural = "namespacemaps",
    namespaced,
    status = "NamespaceMapStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "NamespaceMap lists the namespaces one remote cluster should hold, and their state."
)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceMapSpec {
    /// Local namespace -> remote namespace name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub desired_mapping: BTreeMap<String, String>,
}

/// State of a remote namespace, as Liqo spells it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub enum MappingPhase {
    Accepted,
    CreationLoopBackOff,
    Terminating,
    // Written by a remote side of another Liqo version under a CRD without the enum: one such entry
    // must not make the whole NamespaceMap unreadable. Counts as neither created nor failed.
    #[serde(untagged)]
    Unsupported(String),
}

impl MappingPhase {
    pub const SUPPORTED: [&'static str; 3] = ["Accepted", "CreationLoopBackOff", "Terminating"];

    pub fn as_str(&self) -> &str {
        match self {
            Self::Accepted => "Accepted",
            Self::CreationLoopBackOff => "CreationLoopBackOff",
            Self::Terminating => "Terminating",
            Self::Unsupported(s) => s,
        }
    }
}
string_enum_schema!(MappingPhase, "MappingPhase", "State of a remote namespace, as Liqo spells it.");

/// The remote namespace of one local namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemoteNamespaceStatus {
    pub remote_namespace: String,
    pub phase: MappingPhase,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceMapStatus {
    /// Local namespace -> remote namespace and its phase.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub current_mapping: BTreeMap<String, RemoteNamespaceStatus>,
}

/// Both CRDs as a multi-document YAML stream (what `manifests/crds.yaml` holds).
pub fn crds_yaml() -> Result<String, serde_norway::Error> {
    let mut out = String::from("# Generated by `offloading-webhook crds`; do not edit.\n");
    for crd in [NamespaceOffloading::crd(), NamespaceMap::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_types_are_served_where_liqo_v0_3_serves_them() {
        use kube::api::ApiResource;
        assert_eq!(
            ApiResource::erase::<NamespaceOffloading>(&()),
            crate::liqo::v0_3::OFFLOADINGS.api_resource()
        );
        assert_eq!(ApiResource::erase::<NamespaceMap>(&()), crate::liqo::v0_3::MAPS.api_resource());
    }

    #[test]
    fn lenient_enums_read_supported_values_keep_others_and_explain_a_non_string() {
        let spec = |v: serde_json::Value| serde_json::from_value::<NamespaceOffloadingSpec>(v);
        let s = spec(serde_json::json!({"namespaceMappingStrategy": "EnforceSameName",
            "podOffloadingStrategy": "Remote"}))
        .unwrap();
        assert_eq!(s.namespace_mapping_strategy, NamespaceMappingStrategy::EnforceSameName);
        assert_eq!(s.pod_offloading_strategy, PodOffloadingStrategy::Remote);
        // Case matters, as in Liqo's CRD enum: anything else is kept to be reported.
        let s = spec(serde_json::json!({"namespaceMappingStrategy": "defaultName"})).unwrap();
        assert_eq!(s.namespace_mapping_strategy, NamespaceMappingStrategy::Unsupported("defaultName".into()));
        // Escaped text reads like any other (serde hands the visitor unescaped text).
        let s: NamespaceOffloadingSpec =
            serde_json::from_str(r#"{"podOffloadingStrategy": "Loc\u0061l"}"#).unwrap();
        assert_eq!(s.pod_offloading_strategy, PodOffloadingStrategy::Local);
        let e = spec(serde_json::json!({"podOffloadingStrategy": 5})).unwrap_err().to_string();
        assert_eq!(
            e,
            r#"invalid type: integer `5`, expected a string, one of ["LocalAndRemote", "Local", "Remote"]"#
        );
        // Written back as read.
        let phase: OffloadingPhase = serde_json::from_value(serde_json::json!("Mystery")).unwrap();
        assert_eq!(serde_json::to_value(&phase).unwrap(), serde_json::json!("Mystery"));
        assert_eq!(
            serde_json::from_value::<OffloadingPhase>(serde_json::json!("Ready")).unwrap(),
            OffloadingPhase::Ready
        );
    }

    #[test]
    fn condition_texts_and_cluster_ids_are_kept_once() {
        let status = |id: &str| -> NamespaceOffloadingStatus {
            serde_json::from_value(serde_json::json!({"remoteNamespacesConditions": {id: [
                {"type": "Ready", "status": "True", "reason": "RemoteNamespaceCreated",
                 "message": "The remote namespace is created"}]}}))
            .unwrap()
        };
        let (a, b) = (status("cluster-a"), status("cluster-a"));
        let (ka, ca) = a.remote_namespaces_conditions.iter().next().unwrap();
        let (kb, cb) = b.remote_namespaces_conditions.iter().next().unwrap();
        assert!(matches!((ka, kb), (Shared::Borrowed(x), Shared::Borrowed(y)) if std::ptr::eq(*x, *y)));
        match (&ca[0].message, &cb[0].message) {
            (Some(Shared::Borrowed(x)), Some(Shared::Borrowed(y))) => assert!(std::ptr::eq(*x, *y)),
            other => panic!("not shared: {other:?}"),
        }
        // The same list decoded again is one copy; a different one is not.
        assert!(std::sync::Arc::ptr_eq(ca, cb));
        let other: NamespaceOffloadingStatus = serde_json::from_value(serde_json::json!({
            "remoteNamespacesConditions": {"cluster-a": [{"type": "Ready", "status": "False"}]}}))
        .unwrap();
        assert_ne!(other.remote_namespaces_conditions["cluster-a"], *ca);
        // Round trip unchanged; a long string is owned, not kept.
        assert_eq!(
            serde_json::to_value(&a).unwrap()["remoteNamespacesConditions"]["cluster-a"][0]["type"],
            "Ready"
        );
        let long = "x".repeat(shared::MAX_LEN + 1);
        assert!(matches!(shared::intern(&long), Shared::Owned(s) if s == long));
    }

    #[test]
    fn unknown_strategy_round_trips() {
        let s: NamespaceOffloadingSpec =
            serde_json::from_str(r#"{"namespaceMappingStrategy":"Foo"}"#).unwrap();
        assert_eq!(s.namespace_mapping_strategy, NamespaceMappingStrategy::Unsupported("Foo".into()));
        assert_eq!(s.pod_offloading_strategy, PodOffloadingStrategy::LocalAndRemote);
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back["namespaceMappingStrategy"], "Foo");
    }

    #[test]
    fn a_selector_without_terms_reads_as_absent() {
        let spec = |j: &str| serde_json::from_str::<NamespaceOffloadingSpec>(j).unwrap().cluster_selector;
        assert_eq!(spec("{}"), None);
        assert_eq!(spec(r#"{"clusterSelector":null}"#), None);
        assert_eq!(spec(r#"{"clusterSelector":{}}"#), None);
        assert_eq!(spec(r#"{"clusterSelector":{"nodeSelectorTerms":null}}"#), None);
        assert_eq!(spec(r#"{"clusterSelector":{"nodeSelectorTerms":[]}}"#), Some(NodeSelector::default()));
        let s = spec(r#"{"clusterSelector":{"nodeSelectorTerms":[{}]}}"#).unwrap();
        assert_eq!(s.node_selector_terms.len(), 1);
    }

    #[test]
    fn crd_schema_lists_only_the_supported_strategies() {
        let yaml = crds_yaml().unwrap();
        assert!(yaml.contains("- EnforceSameName"));
        assert!(!yaml.contains("Unsupported"));
        assert!(yaml.contains("nsof"));
    }
}

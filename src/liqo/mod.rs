//! Liqo's vocabulary, in one place: every label, annotation, API group and resource, finalizer,
//! ConfigMap and naming rule that this project reads or writes, and where the two Liqo generations
//! it knows differ ([`Names`], one table per generation). The webhook, the reconcile loop and
//! `diagnose` take Liqo's names from here and from nowhere else.
//!
//! Names only: no IO, no API calls, so that the pure domain (`crate::offloading`) can depend on it.
//!
//! - this module: the [`Generation`], the names both generations share, and the table;
//! - [`v0_3`]: Liqo v0.3's own names (this project's reconcile loop plays its controllers);
//! - [`v1`]: Liqo v1.x's own names (its controller-manager owns maps and status).

pub mod v0_3;
pub mod v1;

use kube::api::{ApiResource, GroupVersionKind};

/// The Liqo generation a cluster runs, chosen once per process (`crate::liqo_api`): where the
/// generations differ, the verdict, the loop and `diagnose` follow it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Generation {
    /// Liqo v0.3, the troubleshooting guide's API; this project's reconcile loop plays its
    /// controllers, with eager selector validation.
    #[default]
    V0_3,
    /// Liqo v1.x: its own controllers, matching lazily (`LazyErrorNodeSelector`).
    V1,
}

impl Generation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_3 => "v0.3",
            Self::V1 => "v1.x",
        }
    }

    /// The names this generation uses where the generations differ.
    pub fn names(self) -> &'static Names {
        match self {
            Self::V0_3 => &v0_3::NAMES,
            Self::V1 => &v1::NAMES,
        }
    }
}

/// An API resource of Liqo's: group, version, kind and plural.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

impl Resource {
    /// `group/version`.
    pub fn group_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// `plural.group`, as RBAC rules and kubectl name the resource.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }

    /// The resource as kube's dynamic APIs take it.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.kind),
            self.plural,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Shared by both generations

/// The API group of NamespaceOffloadings, in both generations.
pub const OFFLOADING_GROUP: &str = "offloading.liqo.io";
/// The resource name of NamespaceOffloadings.
pub const NAMESPACE_OFFLOADINGS: &str = "namespaceoffloadings";
/// The versions NamespaceOffloadings are served in (v0.3's, v1.x's): both are judged alike.
pub const OFFLOADING_VERSIONS: [&str; 2] = [v0_3::OFFLOADINGS.version, v1::OFFLOADINGS.version];
/// The only name a NamespaceOffloading may have (one per namespace): Liqo reads no other.
pub const OFFLOADING_NAME: &str = "offloading";

/// Annotation Liqo v0.3 sets on a NamespaceOffloading (`"true"` or the selector's error), and the
/// label on an offloaded Namespace that lets its pods be scheduled on virtual nodes.
pub const SCHEDULING_ENABLED: &str = "liqo.io/scheduling-enabled";
/// Label on a virtual node, a NamespaceMap (v0.3), a tenant namespace (v1.x) and a kubeconfig
/// Secret, naming the remote cluster.
pub const REMOTE_CLUSTER_ID_LABEL: &str = "liqo.io/remote-cluster-id";
/// Label that marks a Node as a Liqo virtual node.
pub const NODE_TYPE_LABEL: &str = "liqo.io/type";
/// Value of [`NODE_TYPE_LABEL`] on virtual nodes.
pub const VIRTUAL_NODE: &str = "virtual-node";
/// Label Liqo adds to a virtual node's labels: whether the remote cluster offers storage.
pub const STORAGE_AVAILABLE_LABEL: &str = "storage.liqo.io/available";
/// The operator's escape hatch: objects labelled with it are not sent to the webhooks.
pub const WEBHOOK_SKIP_LABEL: &str = "liqo.io/webhook-skip";

/// The ConfigMap in the Liqo namespace that holds the local cluster id (v0.3 finds it by name).
pub const CLUSTER_ID_CONFIGMAP: &str = "liqo-clusterid-configmap";
/// Its key.
pub const CLUSTER_ID_KEY: &str = "CLUSTER_ID";
/// The label Liqo v1.x finds that ConfigMap by (`consts.ClusterIDConfigMapSelector`).
pub const CLUSTER_ID_CONFIGMAP_SELECTOR: &str = "app.kubernetes.io/name=clusterid-configmap";

/// Key of the kubeconfig in a Secret labelled [`REMOTE_CLUSTER_ID_LABEL`] in a tenant namespace.
pub const KUBECONFIG_KEY: &str = "kubeconfig";

/// The tenant namespace of a remote cluster, as both generations name it.
pub fn tenant_namespace(cluster_id: &str) -> String {
    format!("liqo-tenant-{cluster_id}")
}

// ---------------------------------------------------------------------------------------------
// Where the generations differ

/// What a generation calls things where the generations differ, and the rules that go with the
/// names. One per generation: [`v0_3::NAMES`], [`v1::NAMES`] (or [`Generation::names`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    pub generation: Generation,
    pub offloadings: Resource,
    pub maps: Resource,
    /// The labels a NamespaceMap must carry for the generation's controller to read it.
    pub map_selector: &'static str,
    /// The label naming a NamespaceMap's remote cluster.
    pub map_cluster_label: &'static str,
    /// The label (value `true`) that marks a tenant namespace.
    pub tenant_label: &'static str,
    /// The label naming a tenant namespace's remote cluster.
    pub tenant_cluster_label: &'static str,
    /// The annotation on a remote namespace that tells the generation's own from squatters.
    pub owner_annotation: &'static str,
    /// What the owner annotation's value is.
    pub ownership: Ownership,
    /// How the cluster id ConfigMap is found.
    pub cluster_id_configmap: ConfigMapLookup,
    /// The label selector of the Nodes that stand for remote clusters.
    pub virtual_node_selector: &'static str,
    /// Whether the generation's controller looks again at a NamespaceOffloading whose selector it
    /// refused (v1.x does not, until the object changes).
    pub retries_invalid_selector: bool,
}

/// What a remote namespace's owner annotation holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// The id of the local cluster that created it (v0.3).
    ClusterId,
    /// The key, `<namespace>/<name>`, of the provider's copy of the NamespaceMap, which lives in
    /// the provider's tenant namespace for the local cluster (v1.x).
    MapKey,
}

/// How a generation finds the cluster id ConfigMap in the Liqo namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigMapLookup {
    ByName(&'static str),
    ByLabel(&'static str),
}

impl Names {
    /// The selector of the tenant namespaces, one per remote cluster.
    pub fn tenant_selector(&self) -> String {
        format!("{}=true,{}", self.tenant_label, self.tenant_cluster_label)
    }

    /// Whether an owner annotation's `value` says the remote namespace belongs to the local cluster
    /// `local_id`.
    pub fn owned_by(&self, value: &str, local_id: &str) -> bool {
        match self.ownership {
            Ownership::ClusterId => value == local_id,
            Ownership::MapKey => value.starts_with(&format!("{}/", tenant_namespace(local_id))),
        }
    }

    /// The owner annotation's value on a remote namespace that cluster `remote_id` created for the
    /// local cluster `local_id`.
    pub fn owner_value(&self, local_id: &str, remote_id: &str) -> String {
        match self.ownership {
            Ownership::ClusterId => local_id.to_owned(),
            Ownership::MapKey => format!("{}/{remote_id}", tenant_namespace(local_id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generations_own_their_remote_namespaces_by_different_annotations() {
        let (old, new) = (Generation::V0_3.names(), Generation::V1.names());
        assert_eq!(old.owner_annotation, "liqo.io/remote-namespace");
        assert_eq!(new.owner_annotation, "liqo.io/managed-by-namespace-map");
        assert!(old.owned_by("frosty-bird", "frosty-bird"));
        assert!(!old.owned_by("liqo-tenant-frosty-bird/calm-sea", "frosty-bird"));
        assert!(new.owned_by("liqo-tenant-frosty-bird/calm-sea", "frosty-bird"));
        assert!(!new.owned_by("liqo-tenant-other/calm-sea", "frosty-bird"));
        assert!(!new.owned_by("frosty-bird", "frosty-bird"));
        for names in [old, new] {
            let value = names.owner_value("frosty-bird", "calm-sea");
            assert!(names.owned_by(&value, "frosty-bird"), "{value}");
        }
    }

    #[test]
    fn selectors_are_spelled_from_the_labels() {
        assert_eq!(v0_3::NAMES.map_selector, REMOTE_CLUSTER_ID_LABEL);
        assert_eq!(v1::NAMES.map_selector, format!("{}=true,{}", v1::REPLICATION_LABEL, v1::REMOTE_ID_LABEL));
        assert_eq!(v0_3::NAMES.virtual_node_selector, format!("{NODE_TYPE_LABEL}={VIRTUAL_NODE}"));
        assert_eq!(
            v0_3::NAMES.tenant_selector(),
            "discovery.liqo.io/tenant-namespace=true,discovery.liqo.io/cluster-id"
        );
        assert_eq!(v1::NAMES.tenant_selector(), "liqo.io/tenant-namespace=true,liqo.io/remote-cluster-id");
    }

    #[test]
    fn resources_read_as_kube_reads_them() {
        let ar = v1::MAPS.api_resource();
        assert_eq!(
            (ar.api_version.as_str(), ar.plural.as_str()),
            ("offloading.liqo.io/v1beta1", "namespacemaps")
        );
        assert_eq!(v0_3::MAPS.group_version(), "virtualkubelet.liqo.io/v1alpha1");
        assert_eq!(v1::VIRTUAL_NODES.qualified(), "virtualnodes.offloading.liqo.io");
        assert_eq!(OFFLOADING_VERSIONS, ["v1alpha1", "v1beta1"]);
        for names in [&v0_3::NAMES, &v1::NAMES] {
            assert_eq!(names.offloadings.group, OFFLOADING_GROUP);
            assert_eq!(names.offloadings.plural, NAMESPACE_OFFLOADINGS);
        }
    }
}

//! Liqo v1.x's own names: everything in `offloading.liqo.io/v1beta1`, NamespaceMaps named after
//! the remote cluster and labelled for replication, VirtualNodes, tenant namespaces labelled
//! `liqo.io/tenant-namespace`, remote namespaces annotated with the NamespaceMap that manages them.

use super::{
    CLUSTER_ID_CONFIGMAP_SELECTOR, ConfigMapLookup, Generation, NAMESPACE_OFFLOADINGS, Names,
    OFFLOADING_GROUP, Ownership, REMOTE_CLUSTER_ID_LABEL, Resource,
};

pub const OFFLOADINGS: Resource = Resource {
    group: OFFLOADING_GROUP,
    version: "v1beta1",
    kind: "NamespaceOffloading",
    plural: NAMESPACE_OFFLOADINGS,
};
pub const MAPS: Resource =
    Resource { group: OFFLOADING_GROUP, version: "v1beta1", kind: "NamespaceMap", plural: "namespacemaps" };
/// A remote cluster as v1.x describes it; only `spec.clusterID`, `spec.labels` and
/// `spec.storageClasses` matter here.
pub const VIRTUAL_NODES: Resource =
    Resource { group: OFFLOADING_GROUP, version: "v1beta1", kind: "VirtualNode", plural: "virtualnodes" };

/// The annotation v1.x puts on the remote namespaces it creates: the key (`<namespace>/<name>`) of
/// the provider's copy of the NamespaceMap, in the tenant namespace of the consumer.
pub const MANAGED_BY_ANNOTATION: &str = "liqo.io/managed-by-namespace-map";
/// Labels of the NamespaceMaps v1.x's NamespaceOffloading controller reads.
pub const REPLICATION_LABEL: &str = "liqo.io/replication";
pub const REMOTE_ID_LABEL: &str = "liqo.io/remoteID";
/// The label (value `true`) of a tenant namespace, with [`REMOTE_CLUSTER_ID_LABEL`].
pub const TENANT_NAMESPACE_LABEL: &str = "liqo.io/tenant-namespace";

/// The name of the NamespaceMap v1.x's VirtualNode controller makes for a remote cluster.
pub fn namespace_map_name(cluster_id: &str) -> String {
    cluster_id.to_owned()
}

/// [`VIRTUAL_NODES`] as kube's dynamic APIs take it.
pub fn virtual_node_resource() -> kube::api::ApiResource {
    VIRTUAL_NODES.api_resource()
}

pub const NAMES: Names = Names {
    generation: Generation::V1,
    offloadings: OFFLOADINGS,
    maps: MAPS,
    // `REPLICATION_LABEL=true,REMOTE_ID_LABEL`, spelled out because a const cannot format (tested).
    map_selector: "liqo.io/replication=true,liqo.io/remoteID",
    map_cluster_label: REMOTE_ID_LABEL,
    tenant_label: TENANT_NAMESPACE_LABEL,
    tenant_cluster_label: REMOTE_CLUSTER_ID_LABEL,
    owner_annotation: MANAGED_BY_ANNOTATION,
    ownership: Ownership::MapKey,
    cluster_id_configmap: ConfigMapLookup::ByLabel(CLUSTER_ID_CONFIGMAP_SELECTOR),
    // v1.x finds a VirtualNode's Node by its cluster id label alone.
    virtual_node_selector: REMOTE_CLUSTER_ID_LABEL,
    retries_invalid_selector: false,
};

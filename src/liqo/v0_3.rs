//! Liqo v0.3's own names: NamespaceMaps in `virtualkubelet.liqo.io`, tenant namespaces labelled
//! `discovery.liqo.io/*`, remote namespaces annotated with the local cluster id. This project's
//! reconcile loop plays v0.3's controllers, so it writes these names too.

use super::{
    CLUSTER_ID_CONFIGMAP, ConfigMapLookup, Generation, NAMESPACE_OFFLOADINGS, Names, OFFLOADING_GROUP,
    Ownership, REMOTE_CLUSTER_ID_LABEL, Resource,
};

pub const OFFLOADINGS: Resource = Resource {
    group: OFFLOADING_GROUP,
    version: "v1alpha1",
    kind: "NamespaceOffloading",
    plural: NAMESPACE_OFFLOADINGS,
};
pub const MAPS: Resource = Resource {
    group: "virtualkubelet.liqo.io",
    version: "v1alpha1",
    kind: "NamespaceMap",
    plural: "namespacemaps",
};

/// The finalizer of the NamespaceOffloading controller.
pub const OFFLOADING_FINALIZER: &str = "namespaceoffloading-controller.liqo.io/finalizer";
/// The finalizer of the NamespaceMap controller (the remote side).
pub const MAP_FINALIZER: &str = "namespacemap-controller.liqo.io/finalizer";

/// Annotation on a remote namespace: the local cluster id that created it.
pub const REMOTE_NAMESPACE_ANNOTATION: &str = "liqo.io/remote-namespace";
/// Label of a tenant namespace naming its remote cluster.
pub const TENANT_CLUSTER_ID_LABEL: &str = "discovery.liqo.io/cluster-id";
/// Label (value `true`) that marks a tenant namespace.
pub const TENANT_NAMESPACE_LABEL: &str = "discovery.liqo.io/tenant-namespace";

/// The name given to a NamespaceMap the reconcile loop creates (Liqo's begin with `<id>-` too);
/// the map is found again by its [`REMOTE_CLUSTER_ID_LABEL`], never by name.
pub fn namespace_map_name(cluster_id: &str) -> String {
    format!("{cluster_id}-local")
}

pub const NAMES: Names = Names {
    generation: Generation::V0_3,
    offloadings: OFFLOADINGS,
    maps: MAPS,
    map_selector: REMOTE_CLUSTER_ID_LABEL,
    map_cluster_label: REMOTE_CLUSTER_ID_LABEL,
    tenant_label: TENANT_NAMESPACE_LABEL,
    tenant_cluster_label: TENANT_CLUSTER_ID_LABEL,
    owner_annotation: REMOTE_NAMESPACE_ANNOTATION,
    ownership: Ownership::ClusterId,
    cluster_id_configmap: ConfigMapLookup::ByName(CLUSTER_ID_CONFIGMAP),
    // `NODE_TYPE_LABEL=VIRTUAL_NODE`, spelled out because a const cannot format (tested).
    virtual_node_selector: "liqo.io/type=virtual-node",
    retries_invalid_selector: true,
};

//! Per remote cluster, as soon as its virtual node exists (as Liqo's virtual-node controller does):
//! the tenant namespace `liqo-tenant-<id>` and one NamespaceMap in it, found again by label and
//! created with a fixed name, so that two writers can never make two.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use tracing::info;

use super::Error;
use crate::crd::NamespaceMap;
use crate::liqo::v0_3::{TENANT_CLUSTER_ID_LABEL, TENANT_NAMESPACE_LABEL, namespace_map_name};
use crate::liqo::{REMOTE_CLUSTER_ID_LABEL, tenant_namespace};
use crate::metrics::Metrics;

/// Makes sure the tenant namespace and NamespaceMap of the node's cluster exist.
pub async fn reconcile(node: Arc<Node>, client: Client, metrics: Arc<Metrics>) -> Result<Action, Error> {
    let Some(id) = node.labels().get(REMOTE_CLUSTER_ID_LABEL).cloned() else {
        return Ok(Action::await_change());
    };
    let ns_name = tenant_namespace(&id);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(&ns_name).await?.is_none() {
        let labels = BTreeMap::from([
            (TENANT_CLUSTER_ID_LABEL.to_owned(), id.clone()),
            (TENANT_NAMESPACE_LABEL.to_owned(), "true".to_owned()),
        ]);
        let ns = Namespace {
            metadata: ObjectMeta { name: Some(ns_name.clone()), labels: Some(labels), ..Default::default() },
            ..Default::default()
        };
        metrics.wrote("namespaces");
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => info!(cluster_id = %id, namespace = %ns_name, "created the tenant namespace"),
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let maps: Api<NamespaceMap> = Api::namespaced(client, &ns_name);
    // Metadata only: a map that does not decode still exists, and must not get a twin.
    let existing =
        maps.list_metadata(&ListParams::default().labels(&format!("{REMOTE_CLUSTER_ID_LABEL}={id}"))).await?;
    if existing.items.is_empty() {
        let map = NamespaceMap {
            metadata: ObjectMeta {
                name: Some(namespace_map_name(&id)),
                labels: Some(BTreeMap::from([(REMOTE_CLUSTER_ID_LABEL.to_owned(), id.clone())])),
                ..Default::default()
            },
            ..Default::default()
        };
        metrics.wrote("namespacemaps");
        match maps.create(&PostParams::default(), &map).await {
            Ok(_) => info!(cluster_id = %id, namespace = %ns_name, "created the NamespaceMap"),
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Re-checked now and then, in case someone deletes them.
    Ok(Action::requeue(Duration::from_secs(300)))
}

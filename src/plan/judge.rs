//! What applying one NamespaceOffloading would do, from the facts: the webhook's verdict (the same
//! pure code it runs), which remote clusters the selector picks and, for each other one, the
//! requirement that failed with the node's actual value (as `diagnose` explains NoClusterSelected),
//! the remote namespace name against the limit of 63, what each reachable remote cluster holds under
//! that name, and what changes against the stored object. Pure: no IO.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::crd::NamespaceOffloading;
use crate::diagnose::checks::selector::why_not;
use crate::diagnose::facts::{ClusterFacts, RemoteFact};
use crate::liqo::WEBHOOK_SKIP_LABEL;
use crate::offloading::names::RemoteNameError;
use crate::offloading::rules::{derived_name, judge_selector};
use crate::offloading::{Context, review_create, review_update};

/// The longest namespace name Kubernetes accepts (an RFC 1123 label).
pub const NAME_LIMIT: usize = 63;

/// What is known about one object of the input, and about the cluster it would be applied to.
#[derive(Debug, Clone, Default)]
pub struct ObjectFacts {
    /// Where it was read.
    pub source: String,
    /// The namespace it would be applied in.
    pub namespace: String,
    pub name: String,
    pub api_version: String,
    /// The object, or why it does not decode (the field and the problem).
    pub object: Option<Result<NamespaceOffloading, String>>,
    /// The object stored under that name, when there is one (the apply is then an update).
    pub stored: Option<NamespaceOffloading>,
    /// Whether the namespace exists, or the same input creates it.
    pub namespace_exists: bool,
    /// `-n` named another namespace than the object's own.
    pub namespace_flag_conflict: Option<String>,
    /// What each reachable remote cluster holds under the remote namespace name, by cluster id.
    pub remotes: BTreeMap<String, RemoteFact>,
    /// Why a remote cluster's kubeconfig could not be used, one sentence each.
    pub unusable_kubeconfigs: Vec<String>,
    /// Worth saying about how the facts were read.
    pub notes: Vec<String>,
}

/// How the apply would end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Admitted, and the remote namespaces can be created in every selected cluster (as far as
    /// the clusters that could be asked say): phase Ready.
    Succeeds,
    /// kubectl apply fails: the webhook's rules, or the API server itself, refuse it.
    Refused,
    /// Admitted, selecting no remote cluster: phase NoClusterSelected.
    SelectsNothing,
    /// Admitted, and the remote namespace cannot be created in some selected cluster.
    FailsLater,
}

/// What `plan` says of one object.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectPlan {
    pub source: String,
    pub namespace: String,
    pub name: String,
    /// `create`, or `update` of the stored object.
    pub operation: &'static str,
    pub outcome: Outcome,
    /// The outcome in one sentence.
    pub summary: String,
    /// Every reason kubectl apply would fail: the webhook's errors (as kubectl prints them) and the
    /// API server's own.
    pub refusals: Vec<String>,
    /// The webhook's warnings (kubectl prints them as `Warning: ...`).
    pub warnings: Vec<String>,
    pub remote_namespace: Option<RemoteName>,
    pub clusters: Vec<ClusterPlan>,
    /// Against the stored object, on an update.
    pub changes: Option<Changes>,
    pub notes: Vec<String>,
}

/// The remote namespace name the strategy derives, and its length against the limit.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RemoteName {
    pub name: String,
    pub length: usize,
    pub limit: usize,
}

/// One remote cluster, as a virtual node shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPlan {
    pub cluster_id: String,
    pub node: String,
    pub selected: bool,
    /// Not selected: per term, the requirement that failed and the node's actual value.
    pub why_not: Vec<String>,
    /// Selected: what the remote cluster holds under the remote namespace name.
    pub remote: Option<RemoteState>,
    /// What `remote` rests on, in words.
    pub remote_detail: Option<String>,
}

/// The remote namespace name in one remote cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RemoteState {
    /// No namespace of that name: it can be created.
    Free,
    /// It exists, made by Liqo for this cluster (an earlier apply).
    Ours,
    /// It exists and is not ours: creating it fails (CreationLoopBackOff).
    Taken,
    /// The remote cluster did not answer.
    Unreachable,
    /// Nothing says how to reach the remote cluster.
    NotChecked,
}

/// What an update changes.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Changes {
    /// Remote clusters selected after the update and not before.
    pub gained: Vec<String>,
    /// Remote clusters selected before and not after: their remote namespaces are deleted.
    pub lost: Vec<String>,
    /// Immutable fields the update changes, `path: old -> new`.
    pub immutable: Vec<String>,
}

impl ObjectPlan {
    /// 0 when the apply would succeed, 1 when it would be refused or fail later.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.outcome != Outcome::Succeeds)
    }
}

/// The positions of the virtual nodes the generation's controller selects with `obj`'s selector
/// (none when the selector is one the webhook refuses).
pub fn selection(cluster: &ClusterFacts, obj: &NamespaceOffloading) -> Vec<usize> {
    let ctx = context(cluster);
    if !judge_selector(&obj.spec, &ctx).allowed() {
        return Vec::new();
    }
    cluster.nodes.selected(cluster.generation, obj.spec.cluster_selector.as_ref()).iter().collect()
}

fn context(cluster: &ClusterFacts) -> Context<'_> {
    Context {
        cluster_id: cluster.local_cluster_id.as_deref(),
        virtual_nodes: Some(&cluster.nodes),
        generation: cluster.generation,
    }
}

/// Judges one object against the cluster's facts.
pub fn judge(cluster: &ClusterFacts, f: &ObjectFacts) -> ObjectPlan {
    let mut p = ObjectPlan {
        source: f.source.clone(),
        namespace: f.namespace.clone(),
        name: f.name.clone(),
        operation: if f.stored.is_some() { "update" } else { "create" },
        outcome: Outcome::Refused,
        summary: String::new(),
        refusals: Vec::new(),
        warnings: Vec::new(),
        remote_namespace: None,
        clusters: Vec::new(),
        changes: None,
        notes: f.notes.clone(),
    };
    p.refusals.extend(api_server_refusals(cluster, f));
    let Some(Ok(obj)) = &f.object else {
        p.summary = summary(&p, cluster);
        return p;
    };
    let ctx = context(cluster);
    let verdict = match &f.stored {
        Some(old) => review_update(old, obj, &f.namespace, &ctx),
        None => review_create(obj, &f.namespace, &ctx),
    };
    p.refusals.extend(verdict.errors.iter().map(ToString::to_string));
    p.warnings = verdict.warnings;
    if obj.metadata.labels.as_ref().and_then(|l| l.get(WEBHOOK_SKIP_LABEL)).map(String::as_str)
        == Some("true")
    {
        p.notes.push(format!(
            "labelled {WEBHOOK_SKIP_LABEL}=true: the webhook is not asked, so kubectl apply stores what its rules refuse, and Liqo fails on it"
        ));
    }
    let local_id = cluster.local_cluster_id.as_deref();
    match derived_name(&obj.spec, &f.namespace, local_id) {
        Ok(name) => p.remote_namespace = Some(RemoteName { length: name.len(), name, limit: NAME_LIMIT }),
        Err(RemoteNameError::UnknownClusterId) => p.notes.push(
            "the local cluster id is unknown (give --cluster-id): the DefaultName remote name was not derived".into(),
        ),
        // Said in the refusals.
        Err(_) => {}
    }
    let chosen = selection(cluster, obj);
    let selector_ok = judge_selector(&obj.spec, &ctx).allowed();
    let wanted = obj.spec.cluster_selector.as_ref();
    let names = cluster.generation.names();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let selected = chosen.contains(&i);
        let why_not = match (selected, selector_ok) {
            (true, _) => Vec::new(),
            (false, false) => {
                vec!["the clusterSelector is refused (see the refusals): no cluster is selected".into()]
            }
            (false, true) => why_not(wanted, node),
        };
        let (remote, remote_detail) = if selected {
            let (state, detail) = remote_state(f.remotes.get(&node.cluster_id), names, local_id);
            (Some(state), Some(detail))
        } else {
            (None, None)
        };
        p.clusters.push(ClusterPlan {
            cluster_id: node.cluster_id.clone(),
            node: node.name.clone(),
            selected,
            why_not,
            remote,
            remote_detail,
        });
    }
    p.notes.extend(f.unusable_kubeconfigs.iter().cloned());
    if let Some(old) = &f.stored {
        p.changes = Some(changes(cluster, old, obj, &chosen));
    }
    p.outcome = if !p.refusals.is_empty() {
        Outcome::Refused
    } else if chosen.is_empty() {
        Outcome::SelectsNothing
    } else if p
        .clusters
        .iter()
        .any(|c| matches!(c.remote, Some(RemoteState::Taken | RemoteState::Unreachable)))
    {
        Outcome::FailsLater
    } else {
        Outcome::Succeeds
    };
    p.summary = summary(&p, cluster);
    p
}

/// What the API server itself would refuse before any webhook: a version it does not serve, an
/// object its schema does not take, a namespace that does not exist.
fn api_server_refusals(cluster: &ClusterFacts, f: &ObjectFacts) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(flag) = &f.namespace_flag_conflict {
        out.push(format!(
            "the namespace from the provided object {:?} does not match the namespace {flag:?}: give --namespace={} or none",
            f.namespace, f.namespace
        ));
    }
    let served = cluster.generation.names().offloadings.group_version();
    if f.api_version != served {
        out.push(format!(
            "no matches for kind \"NamespaceOffloading\" in version {:?}: this cluster runs Liqo {}, which serves NamespaceOffloadings in {served}; set apiVersion: {served}",
            f.api_version,
            cluster.generation.as_str()
        ));
    }
    if let Some(Err(e)) = &f.object {
        out.push(format!("the object does not decode as a NamespaceOffloading: {e}"));
    }
    if !f.namespace_exists {
        out.push(format!(
            "namespaces {:?} not found: create the namespace first (or put it in the same input, before the NamespaceOffloading)",
            f.namespace
        ));
    }
    out
}

/// The remote namespace in one selected cluster, and why.
fn remote_state(
    fact: Option<&RemoteFact>,
    names: &crate::liqo::Names,
    local_id: Option<&str>,
) -> (RemoteState, String) {
    let key = names.owner_annotation;
    match fact {
        Some(RemoteFact::Missing { name }) => (RemoteState::Free, format!("no namespace {name} there yet")),
        Some(RemoteFact::Exists { name, owner: Some(owner) })
            if local_id.is_some_and(|id| names.owned_by(owner, id)) =>
        {
            (RemoteState::Ours, format!("namespace {name} exists, made by Liqo for this cluster ({key}={owner})"))
        }
        Some(RemoteFact::Exists { name, owner: Some(owner) }) => (
            RemoteState::Taken,
            format!("namespace {name} exists and is not this cluster's ({key}={owner}): it cannot be created (CreationLoopBackOff)"),
        ),
        Some(RemoteFact::Exists { name, owner: None }) => (
            RemoteState::Taken,
            format!("namespace {name} exists without {key}, so Liqo did not create it: it cannot be created (CreationLoopBackOff)"),
        ),
        Some(RemoteFact::Unreachable(e)) => (RemoteState::Unreachable, format!("the remote cluster does not answer: {e}")),
        Some(RemoteFact::Reachable) | None => (
            RemoteState::NotChecked,
            "nothing says how to reach this cluster (--remote-kubeconfig ID=PATH, or a Secret with a kubeconfig in its tenant namespace)".into(),
        ),
    }
}

/// Clusters gained and lost, and the immutable fields changed, from `old` to `new`.
fn changes(
    cluster: &ClusterFacts,
    old: &NamespaceOffloading,
    new: &NamespaceOffloading,
    now: &[usize],
) -> Changes {
    let before = selection(cluster, old);
    let id = |i: &usize| cluster.nodes[*i].cluster_id.clone();
    let mut c = Changes {
        gained: now.iter().filter(|i| !before.contains(i)).map(id).collect(),
        lost: before.iter().filter(|i| !now.contains(i)).map(id).collect(),
        immutable: Vec::new(),
    };
    let (o, n) = (&old.spec, &new.spec);
    if o.namespace_mapping_strategy != n.namespace_mapping_strategy {
        c.immutable.push(format!(
            "spec.namespaceMappingStrategy: {} -> {}",
            o.namespace_mapping_strategy.as_str(),
            n.namespace_mapping_strategy.as_str()
        ));
    }
    if o.remote_namespace_name != n.remote_namespace_name {
        let shown = |v: &Option<String>| v.clone().map_or_else(|| "(none)".to_owned(), |s| format!("{s:?}"));
        c.immutable.push(format!(
            "spec.remoteNamespaceName: {} -> {}",
            shown(&o.remote_namespace_name),
            shown(&n.remote_namespace_name)
        ));
    }
    c
}

/// The outcome in one sentence, with the phase the controller would reach.
fn summary(p: &ObjectPlan, cluster: &ClusterFacts) -> String {
    let selected: Vec<&ClusterPlan> = p.clusters.iter().filter(|c| c.selected).collect();
    let ids = |cs: &[&ClusterPlan]| cs.iter().map(|c| c.cluster_id.as_str()).collect::<Vec<_>>().join(", ");
    match p.outcome {
        Outcome::Refused => {
            let n = p.refusals.len();
            format!("kubectl apply would be refused ({n} reason{})", if n == 1 { "" } else { "s" })
        }
        Outcome::SelectsNothing if cluster.nodes.is_empty() => {
            "would select no remote cluster: no virtual node is known (phase NoClusterSelected)".into()
        }
        Outcome::SelectsNothing => format!(
            "would select none of the {} remote clusters (phase NoClusterSelected)",
            cluster.nodes.len()
        ),
        Outcome::FailsLater => {
            let failing: Vec<&ClusterPlan> = selected
                .iter()
                .copied()
                .filter(|c| matches!(c.remote, Some(RemoteState::Taken | RemoteState::Unreachable)))
                .collect();
            let phase = if failing.len() == selected.len() { "AllFailed" } else { "SomeFailed" };
            format!(
                "would select {} but the remote namespace cannot be created in {} (phase {phase})",
                ids(&selected),
                ids(&failing)
            )
        }
        Outcome::Succeeds => {
            let name =
                p.remote_namespace.as_ref().map(|r| format!(" as namespace {}", r.name)).unwrap_or_default();
            let unchecked: Vec<&ClusterPlan> =
                selected.iter().copied().filter(|c| c.remote == Some(RemoteState::NotChecked)).collect();
            let caveat = if unchecked.is_empty() {
                String::new()
            } else {
                format!("; not checked in {}", ids(&unchecked))
            };
            format!("would offload to {}{name} (phase Ready){caveat}", ids(&selected))
        }
    }
}

#[cfg(test)]
mod tests;

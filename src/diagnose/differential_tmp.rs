//! TEMPORARY: the split judge against the old one, on many generated facts.
#![allow(clippy::all)]

use serde_json::json;

use super::facts::*;
use super::old_judge;
use crate::crd::{NamespaceMap, NamespaceOffloading};
use crate::liqo::Generation;
use crate::offloading::VirtualNode;
use crate::reconcile::installs::Seniority;
use k8s_openapi::jiff::Timestamp;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() as usize) % xs.len()]
    }
    fn bit(&mut self) -> bool {
        self.next() % 2 == 0
    }
}

const LOCAL: &str = "frosty-bird";
const IDS: [&str; 4] = ["calm", "calm-sea", "zed", "a"];

fn gen_facts(r: &mut Rng) -> Facts {
    let g = *r.pick(&[Generation::V0_3, Generation::V1]);
    let ns = r.pick(&["web", "a-namespace-much-longer-than-fits-with-any-cluster-id-x"]).to_string();
    let mut f = Facts::default();
    f.cluster.generation = g;
    f.cluster.liqo_namespace = "liqo".into();
    f.namespace.name = ns.clone();
    if r.next() % 5 == 0 {
        f.namespace.undecodable.push(Undecodable {
            kind: "NamespaceOffloading".into(),
            plural: "namespaceoffloadings".into(),
            namespace: ns.clone(),
            name: "offloading".into(),
            path: "spec.clusterSelector".into(),
            message: "invalid type".into(),
        });
    }
    if r.next() % 4 == 0 {
        f.namespace.other_names.push("other".into());
    }
    if r.next() % 6 == 0 {
        return f;
    }
    // The offloading.
    let selector = r
        .pick(&[
            json!({"clusterSelector": {"nodeSelectorTerms": []}}),
            json!({}),
            json!({"clusterSelector": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu"]}]}]}}),
            json!({"clusterSelector": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "region", "operator": "In", "values": ["us"]}]}]}}),
            json!({"clusterSelector": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "region", "operator": "Equals", "values": ["eu"]}]}]}}),
            json!({"clusterSelector": {"nodeSelectorTerms": [{}]}}),
            json!({"clusterSelector": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu"]}]},
                {"matchExpressions": [{"key": "Bad Key!", "operator": "In", "values": ["x"]}]}]}}),
        ])
        .clone();
    let strategy = r
        .pick(&[
            json!({}),
            json!({"namespaceMappingStrategy": "EnforceSameName"}),
            json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "chosen"}),
            json!({"namespaceMappingStrategy": "SelectedName"}),
            json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "kube-system"}),
        ])
        .clone();
    let mut spec = selector;
    for (k, v) in strategy.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let mut status = serde_json::Map::new();
    if let Some(p) = r.pick(&[
        None,
        Some("Ready"),
        Some("NoClusterSelected"),
        Some("InProgress"),
        Some("SomeFailed"),
        Some("AllFailed"),
    ]) {
        status.insert("offloadingPhase".into(), json!(p));
    }
    if r.bit() {
        status.insert("observedGeneration".into(), json!(*r.pick(&[0, 1])));
    }
    if r.bit() {
        status.insert("remoteNamespaceName".into(), json!(format!("{ns}-{LOCAL}")));
    }
    let mut ids: Vec<&str> = IDS.iter().copied().filter(|_| r.next() % 3 != 0).collect();
    ids.sort();
    let mut conditions = serde_json::Map::new();
    for id in &ids {
        if r.bit() {
            conditions.insert(
                (*id).into(),
                json!([{"type": "Ready", "status": *r.pick(&["True", "False"]), "reason": "X"}]),
            );
        }
    }
    if !conditions.is_empty() {
        status.insert("remoteNamespacesConditions".into(), serde_json::Value::Object(conditions));
    }
    let mut meta = json!({"name": "offloading", "namespace": ns, "generation": 1});
    if let Some(a) = r.pick(&[None, Some("true"), Some("Invalid Cluster Selector : something")]) {
        meta["annotations"] = json!({"liqo.io/scheduling-enabled": a});
    }
    if r.next() % 8 == 0 {
        meta["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    }
    let obj: NamespaceOffloading = serde_json::from_value(json!({
        "apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
        "metadata": meta, "spec": spec,
        "status": if status.is_empty() && r.bit() { serde_json::Value::Null } else { serde_json::Value::Object(status) }
    }))
    .unwrap();
    f.namespace.offloading = Some(obj);
    if r.next() % 5 != 0 {
        f.cluster.local_cluster_id = Some(LOCAL.into());
    }
    let remote_name = format!("{ns}-{LOCAL}");
    let mut nodes = Vec::new();
    for id in &ids {
        if r.next() % 4 != 0 {
            nodes.push(VirtualNode {
                name: format!("vk-{id}"),
                cluster_id: (*id).into(),
                labels: [
                    ("liqo.io/remote-cluster-id".to_string(), id.to_string()),
                    ("region".to_string(), r.pick(&["eu", "us"]).to_string()),
                ]
                .into(),
            });
        }
        if r.next() % 4 != 0 {
            f.cluster.tenants.insert((*id).into(), format!("liqo-tenant-{id}"));
        }
        if r.next() % 4 != 0 {
            let mut m: NamespaceMap = serde_json::from_value(json!({
                "apiVersion": "virtualkubelet.liqo.io/v1alpha1", "kind": "NamespaceMap",
                "metadata": {"name": id, "namespace": format!("liqo-tenant-{id}")}, "spec": {}
            }))
            .unwrap();
            if r.bit() {
                m.spec.desired_mapping.insert(ns.clone(), remote_name.clone());
            }
            if let Some(phase) =
                r.pick(&[None, Some("Accepted"), Some("CreationLoopBackOff"), Some("Terminating")])
            {
                m.status = Some(
                    serde_json::from_value(json!({"currentMapping": {ns.clone(): {"remoteNamespace": remote_name, "phase": phase}}}))
                        .unwrap(),
                );
            }
            f.cluster.maps.insert((*id).into(), m);
        } else if r.next() % 3 == 0 {
            f.cluster.undecodable.push(Undecodable {
                kind: "NamespaceMap".into(),
                plural: "namespacemaps".into(),
                namespace: format!("liqo-tenant-{id}"),
                name: (*id).into(),
                path: "status.currentMapping".into(),
                message: "bad".into(),
            });
        }
        let owners = [
            None,
            Some(LOCAL.to_string()),
            Some(format!("liqo-tenant-{LOCAL}/{id}")),
            Some("liqo-tenant-other/x".to_string()),
        ];
        let fact = match r.next() % 6 {
            0 => None,
            1 => Some(RemoteFact::Reachable),
            2 => Some(RemoteFact::Missing { name: remote_name.clone() }),
            3 | 4 => Some(RemoteFact::Exists { name: remote_name.clone(), owner: r.pick(&owners).clone() }),
            _ => Some(RemoteFact::Unreachable("connection refused".into())),
        };
        if let Some(fact) = fact {
            f.namespace.remotes.insert((*id).into(), fact);
        }
    }
    f.cluster.nodes = nodes.into();
    if r.bit() {
        f.namespace.events.push(EventFact {
            type_: "Warning".into(),
            reason: "Invalid".into(),
            note: "Invalid ClusterSelector: x".into(),
        });
    }
    if r.next() % 5 == 0 {
        f.namespace
            .unusable_kubeconfigs
            .push("the kubeconfig of remote cluster zed (f) cannot be used: no".into());
    }
    if r.bit() {
        let now = Timestamp::from_second(1_700_000_100).unwrap();
        f.cluster.looked_at = Some(now);
        for (i, (ns, ago)) in [("a", 2), ("b", 1), ("c", 90)].into_iter().enumerate() {
            if r.bit() {
                f.cluster.leases.push(LeaseFact {
                    seniority: Seniority {
                        created: Some(Timestamp::from_second(1_700_000_000 + i as i64).unwrap()),
                        namespace: ns.into(),
                        name: "offloading-webhook-reconciler".into(),
                    },
                    holder: r.pick(&[None, Some("h".to_string())]).clone(),
                    renew_time: Some(Timestamp::from_second(1_700_000_100 - ago).unwrap()),
                    duration_seconds: Some(15),
                });
            }
        }
    }
    f
}

fn to_old(f: &Facts) -> old_judge::Facts {
    old_judge::Facts {
        generation: f.cluster.generation,
        namespace: f.namespace.name.clone(),
        liqo_namespace: f.cluster.liqo_namespace.clone(),
        offloading: f.namespace.offloading.clone(),
        other_names: f.namespace.other_names.clone(),
        undecodable: f.namespace.undecodable.iter().chain(&f.cluster.undecodable).cloned().collect(),
        local_cluster_id: f.cluster.local_cluster_id.clone(),
        events: f.namespace.events.clone(),
        tenants: f.cluster.tenants.clone(),
        nodes: f.cluster.nodes.clone(),
        maps: f.cluster.maps.clone(),
        remotes: f.namespace.remotes.clone(),
        notes: f.namespace.unusable_kubeconfigs.clone(),
        leases: f.cluster.leases.clone(),
        looked_at: f.cluster.looked_at,
    }
}

#[test]
fn the_split_judge_says_what_the_old_one_said() {
    let mut r = Rng(7);
    let (mut problems, mut healthy, mut prose_hidden) = (0, 0, 0);
    for i in 0..40_000 {
        let f = gen_facts(&mut r);
        let mut new = super::judge(&f.cluster, &f.namespace);
        // The old judge found a cluster's problems by matching "cluster <id>" in any cause: a
        // cause about something else that happens to read so hid the CreationLoopBackOff hint.
        let mut kept: Vec<super::Problem> = Vec::new();
        for p in std::mem::take(&mut new.problems) {
            let hidden = p.check == "creation-explained"
                && kept.iter().any(|q| {
                    q.cluster != p.cluster
                        && q.cause.contains(&format!("cluster {}", p.cluster.as_deref().unwrap()))
                });
            if hidden {
                prose_hidden += 1;
            } else {
                kept.push(p);
            }
        }
        new.problems = kept;
        new.healthy = new.problems.is_empty();
        let old = old_judge::judge(&to_old(&f));
        let (nt, ot) = (super::render::text(&new), old_judge::render(&old));
        assert_eq!(nt, ot, "case {i}: {f:#?}");
        let oj = serde_json::to_string_pretty(&old).unwrap();
        assert_eq!(super::render::json(&new), oj, "case {i}");
        problems += new.problems.len();
        healthy += usize::from(new.healthy);
    }
    eprintln!("40000 cases, {problems} problems, {healthy} healthy, {prose_hidden} hints the old judge hid");
}

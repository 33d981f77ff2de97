//! Handler cost of one review, against a baseline measured in the same run: parsing the same body
//! as JSON and echoing its uid (the least any webhook must do). Reported as a ratio, not asserted.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Node;
use offloading_webhook::admission::review::{Endpoint, Enforcement, answer};
use offloading_webhook::cluster::ClusterView;
use offloading_webhook::offloading::Context;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The baseline: parse, take the uid, answer allowed.
fn echo_uid(body: &[u8]) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    let uid = v["request"]["uid"].clone();
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true}
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let ctx = Context {
        cluster_id: Some("b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a"),
        virtual_nodes: None,
        ..Default::default()
    };
    let mut g = c.benchmark_group("review");
    for name in ["create-valid.json", "create-bad-selector.json"] {
        let body = fixture(name);
        g.bench_function(format!("baseline-echo-uid/{name}"), |b| b.iter(|| echo_uid(black_box(&body))));
        for (endpoint, label) in [(Endpoint::Validate, "validate"), (Endpoint::Mutate, "mutate")] {
            g.bench_function(format!("{label}/{name}"), |b| {
                b.iter(|| {
                    let a = answer(black_box(&body), endpoint, &ctx, Enforcement::Deny).unwrap();
                    serde_json::to_vec(&a.review).unwrap()
                })
            });
        }
    }
    g.finish();

    // Per-review cost against the number of clusters: the handler's own path, the virtual nodes
    // taken from the cluster view (as `admission::http` does) and the selector judged against
    // them. The selector matches the last node, the worst case for a match.
    let mut g = c.benchmark_group("review-with-virtual-nodes");
    let body = fixture("create-valid.json");
    for count in [1usize, 10, 100, 1000] {
        let nodes: Vec<Node> = (0..count)
            .map(|i| {
                serde_json::from_value(
                    serde_json::json!({"metadata": {"name": format!("liqo-c{i}"), "labels": {
                    "liqo.io/type": "virtual-node", "liqo.io/remote-cluster-id": format!("c{i}"),
                    "topology.liqo.io/region": if i + 1 == count { "eu-west" } else { "us-east" }}}}),
                )
                .unwrap()
            })
            .collect();
        let view = ClusterView::with_nodes(Some("b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a".into()), &nodes);
        g.bench_function(format!("validate/{count}-nodes"), |b| {
            b.iter(|| {
                let nodes = view.virtual_nodes();
                let id = view.cluster_id();
                let ctx = Context {
                    cluster_id: id.as_deref(),
                    virtual_nodes: nodes.as_deref(),
                    generation: Default::default(),
                };
                let a = answer(black_box(&body), Endpoint::Validate, &ctx, Enforcement::Deny).unwrap();
                serde_json::to_vec(&a.review).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

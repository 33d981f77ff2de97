//! Handler cost of one review, against a baseline measured in the same run: parsing the same body
//! as JSON and echoing its uid (the least any webhook must do). Reported as a ratio, not asserted.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use offloading_webhook::admission::review::{Endpoint, Enforcement, answer};
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
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The fuzz targets of tests/fuzzing, briefly: a fixed seed and a fixed count, so every run feeds
//! the same inputs. `scripts/fuzz.sh` runs them at length.

mod fuzzing;

use fuzzing::{Config, ReviewInput, ReviewTarget, Target, Via, check};
use offloading_webhook::admission::review::Endpoint;
use serde_json::json;

fn brief(target: Target, inputs: u64) {
    let cfg = Config {
        target,
        inputs,
        seed: 1,
        threads: 1,
        save_dir: Some(concat!(env!("CARGO_TARGET_TMPDIR"), "/fuzz-failures").into()),
        progress: None,
        time_limit: None,
    };
    let summary = fuzzing::run(&cfg);
    println!("{summary}");
    assert!(
        summary.clean(),
        "{summary}replay one with: cargo run --profile fuzz --example fuzz -- --target {} --replay FILE",
        target.name()
    );
}

#[test]
fn review_path_brief() {
    brief(Target::Review, 2_000);
}

#[test]
fn selector_and_name_rules_brief() {
    brief(Target::SelectorAndNames, 10_000);
}

/// The hostile review that the generator makes only rarely: one `In` with thousands of
/// invalid values. Its answers, denial and patch, must stay small.
#[test]
fn a_hostile_review_gets_a_bounded_answer() {
    let fixture =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/create-valid.json")).unwrap();
    let mut review: serde_json::Value = serde_json::from_slice(&fixture).unwrap();
    review["request"]["object"]["spec"]["clusterSelector"] = json!({ "nodeSelectorTerms": [{ "matchExpressions": [
        { "key": "topology.liqo.io/region", "operator": "In", "values": vec!["eu west"; 5_000] }
    ]}]});
    let body = serde_json::to_vec(&review).unwrap();
    let target = ReviewTarget::new();
    let mut failures = Vec::new();
    for (endpoint, via) in [
        (Endpoint::Validate, Via::Router(0)),
        (Endpoint::Validate, Via::Router(1)),
        (Endpoint::Mutate, Via::Router(0)),
    ] {
        let outcome = target.run(&ReviewInput { body: body.clone(), endpoint, via: via.clone() });
        failures.extend(
            outcome.failures.into_iter().map(|f| format!("{endpoint:?} {via:?}: {}: {}", f.kind, f.detail)),
        );
    }
    assert!(failures.is_empty(), "limit {} bytes:\n{}", check::MAX_ANSWER_BYTES, failures.join("\n"));
}

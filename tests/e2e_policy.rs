//! The proof that `offloading-webhook policy` refuses what the webhook refuses, on the real API
//! server: the same objects (the webhook's e2e corpus, the corpus of the differential test against
//! Liqo v1.2, the review fixtures, the largest selectors the webhook accepts, and a few thousand
//! NamespaceOffloadings from the fuzzing generators) are sent as server-side dry runs, once with
//! only the webhook registered and once with only the policy applied (`policy | kubectl apply`).
//! Every verdict must be the same, but for the one rule CEL cannot check (on Liqo v1.x, a broken
//! term beside well-formed ones that a virtual node matches none of: the webhook denies, the
//! policy, which cannot see virtual nodes, allows). The messages are compared with what the
//! policy is built to say: the webhook's own verdict, computed in this process by the library
//! with the same facts, its errors kept or dropped by their rule ids as the policy's bindings
//! check them. Those that differ from the webhook's are written to a report (printed, and kept
//! under target/) with the reason. Then `tests/go/celcost` (the API server's CEL code) measures the
//! policy's cost on the largest objects.
//!
//! One test per Liqo generation: v0.3 (this project's CRD, `v1alpha1`) and v1.x (Liqo v1.2's own
//! CRDs, `v1beta1`), each with the generation's policy and `serve --liqo-api`.

mod support;

#[path = "fuzzing/make.rs"]
#[allow(dead_code)]
mod make;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use offloading_webhook::crd::NamespaceOffloading;
use offloading_webhook::offloading::field::FieldError;
use offloading_webhook::offloading::{
    Context, Generation, Verdict, VirtualNode, VirtualNodes, aggregate, review_create, review_update,
};
use offloading_webhook::policy::FALLBACK_MESSAGE;
use offloading_webhook::policy::table::{self, Check, Scope};
use offloading_webhook::webhook_config::VALIDATE_NAME;
use serde_json::{Value, json};
use support::{CLUSTER_ID, ControlPlane, Webhook, certs_for_loopback};

const WEBHOOK_DENIED: &str = "admission webhook \"validate.offloading-webhook.io\" denied the request: ";
const POLICY: &str = "offloading-webhook";
/// Fuzzed objects per generation.
const FUZZED: usize = 2500;
/// Fuzzed updates per generation (each needs a namespace with a stored object).
const FUZZED_UPDATES: usize = 150;
/// Requests in flight at once.
const CONCURRENCY: usize = 16;
/// The one remote cluster, seen as a virtual node in this region.
const REMOTE_ID: &str = "frosty-bird";
const REGION: &str = "eu-west";
/// The longest message a policy may give (`MaxEvaluatedMessageExpressionSizeBytes`); past it the
/// API server shows the validation's fixed message.
const MAX_POLICY_MESSAGE: usize = 5 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Gen {
    V0_3,
    V1,
}

impl Gen {
    fn api(self) -> &'static str {
        match self {
            Gen::V0_3 => "v0.3",
            Gen::V1 => "v1",
        }
    }
    fn generation(self) -> Generation {
        match self {
            Gen::V0_3 => Generation::V0_3,
            Gen::V1 => Generation::V1,
        }
    }
    fn version(self) -> &'static str {
        match self {
            Gen::V0_3 => "v1alpha1",
            Gen::V1 => "v1beta1",
        }
    }
}

/// Namespaces the created objects live in: around the 26/27 characters a 36-character cluster id
/// leaves for DefaultName, one every cluster has, and kube-system (left alone by both).
fn namespaces() -> Vec<String> {
    vec![
        "web".into(),
        "default".into(),
        "kube-public".into(),
        "kube-system".into(),
        "a".into(),
        "vk-a".into(),
        "payments-processing-europe-1".into(),
        "a".repeat(26),
        "a".repeat(27),
        "n".repeat(63),
    ]
}

/// One object to send: created (dry run), or, with `old`, an update of `old` (stored beforehand,
/// before any admission was registered, as an object admitted before the webhook existed).
#[derive(Clone, Debug)]
struct Case {
    what: String,
    object: Value,
    old: Option<Value>,
}

fn object(g: Gen, ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": format!("offloading.liqo.io/{}", g.version()),
        "kind": "NamespaceOffloading",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
}

fn case(what: impl Into<String>, object: Value) -> Case {
    Case { what: what.into(), object, old: None }
}

fn every() -> Value {
    json!({"nodeSelectorTerms": []})
}

fn expr(key: &str, op: &str, values: Option<Vec<&str>>) -> Value {
    let mut e = json!({"key": key, "operator": op});
    if let Some(v) = values {
        e["values"] = json!(v);
    }
    json!({"nodeSelectorTerms": [{"matchExpressions": [e]}]})
}

fn field(key: &str, op: &str, values: Option<Vec<&str>>) -> Value {
    let mut e = json!({"key": key, "operator": op});
    if let Some(v) = values {
        e["values"] = json!(v);
    }
    json!({"nodeSelectorTerms": [{"matchFields": [e]}]})
}

/// A broken term beside a well-formed one that the virtual node (region eu-west) does not match.
fn unmatched() -> Value {
    json!({"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "topology.liqo.io/region", "operator": "Equals", "values": ["eu-west"]}]},
        {"matchExpressions": [{"key": "topology.liqo.io/region", "operator": "In", "values": ["us-east"]}]}]})
}

fn sel(selector: Value) -> Value {
    json!({"clusterSelector": selector})
}

/// The hand-written corpus: the classes of tests/e2e_webhook.rs, of the differential corpus of
/// tests/e2e_liqo_differential.rs, every rule of the table at its edges, and the limits.
fn corpus(g: Gen) -> Vec<Case> {
    let o = |ns: &str, spec: Value| object(g, ns, "offloading", spec);
    let mut c = vec![
        // tests/e2e_webhook.rs
        case(
            "bad operator beside a good one",
            o(
                "web",
                sel(json!({"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "topology.liqo.io/region", "operator": "In", "values": ["eu-west"]},
            {"key": "topology.liqo.io/region", "operator": "Equals", "values": ["eu"]}]}]})),
            ),
        ),
        case("In without values", o("web", sel(expr("region", "In", None)))),
        case("matchFields metadata.labels", o("web", sel(field("metadata.labels", "In", Some(vec!["a"]))))),
        case(
            "wrong name",
            object(
                g,
                "web",
                "my-offloading",
                json!({"podOffloadingStrategy": "Local", "clusterSelector": every()}),
            ),
        ),
        case(
            "SelectedName without a name",
            o("web", json!({"namespaceMappingStrategy": "SelectedName", "clusterSelector": every()})),
        ),
        case(
            "DefaultName too long",
            o(
                "payments-processing-europe-1",
                json!({"podOffloadingStrategy": "LocalAndRemote", "clusterSelector": every()}),
            ),
        ),
        case(
            "wrong name and bad operator",
            object(g, "web", "wrong", sel(expr("region", "Equals", Some(vec!["eu"])))),
        ),
        case(
            "strategy outside the enum",
            o("web", json!({"namespaceMappingStrategy": "Same", "clusterSelector": every()})),
        ),
        case("a good selector", o("web", sel(expr("topology.liqo.io/region", "In", Some(vec!["eu-west"]))))),
        // tests/e2e_liqo_differential.rs
        case("nodeSelectorTerms: []", o("web", sel(every()))),
        case("NotIn", o("web", sel(expr("topology.liqo.io/region", "NotIn", Some(vec!["us-east"]))))),
        case("Exists", o("web", sel(expr("liqo.io/provider", "Exists", None)))),
        case("DoesNotExist", o("web", sel(expr("example.com/absent", "DoesNotExist", None)))),
        case("Gt 8", o("web", sel(expr("capacity.example.com/cpus", "Gt", Some(vec!["8"]))))),
        case("Lt 32", o("web", sel(expr("capacity.example.com/cpus", "Lt", Some(vec!["32"]))))),
        case(
            "two good terms",
            o(
                "web",
                sel(json!({"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "topology.liqo.io/region", "operator": "In", "values": ["us-east"]}]},
            {"matchExpressions": [{"key": "topology.liqo.io/region", "operator": "In", "values": ["eu-west"]}]}]})),
            ),
        ),
        case(
            "fields metadata.name In",
            o("web", sel(field("metadata.name", "In", Some(vec!["frosty-bird"])))),
        ),
        case(
            "fields metadata.name NotIn",
            o("web", sel(field("metadata.name", "NotIn", Some(vec!["other-node"])))),
        ),
        case("a term {}", o("web", sel(json!({"nodeSelectorTerms": [{}]})))),
        case("pod Local", o("web", json!({"podOffloadingStrategy": "Local", "clusterSelector": every()}))),
        case("pod Remote", o("web", json!({"podOffloadingStrategy": "Remote", "clusterSelector": every()}))),
        case(
            "EnforceSameName",
            o("web", json!({"namespaceMappingStrategy": "EnforceSameName", "clusterSelector": every()})),
        ),
        case(
            "SelectedName",
            o(
                "web",
                json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "chosen-remote", "clusterSelector": every()}),
            ),
        ),
        case(
            "operator in (lower case)",
            o("web", sel(expr("topology.liqo.io/region", "in", Some(vec!["eu-west"])))),
        ),
        case("NotIn []", o("web", sel(expr("topology.liqo.io/region", "NotIn", Some(vec![]))))),
        case("Exists with values", o("web", sel(expr("liqo.io/provider", "Exists", Some(vec!["frosty"]))))),
        case(
            "DoesNotExist with values",
            o("web", sel(expr("example.com/absent", "DoesNotExist", Some(vec!["x"])))),
        ),
        case("Gt abc", o("web", sel(expr("capacity.example.com/cpus", "Gt", Some(vec!["abc"]))))),
        case("Gt two values", o("web", sel(expr("capacity.example.com/cpus", "Gt", Some(vec!["1", "2"]))))),
        case("Lt without values", o("web", sel(expr("capacity.example.com/cpus", "Lt", None)))),
        case("key with a space", o("web", sel(expr("bad key", "Exists", None)))),
        case("key name of 64", o("web", sel(expr(&"k".repeat(64), "Exists", None)))),
        case("key prefix Bad_Prefix/", o("web", sel(expr("Bad_Prefix/region", "Exists", None)))),
        case("value eu west!", o("web", sel(expr("topology.liqo.io/region", "In", Some(vec!["eu west!"]))))),
        case(
            "value of 64",
            o("web", sel(expr("topology.liqo.io/region", "In", Some(vec![&"v".repeat(64)])))),
        ),
        case("fields two values", o("web", sel(field("metadata.name", "In", Some(vec!["a", "b"]))))),
        case("fields Exists", o("web", sel(field("metadata.name", "Exists", None)))),
        case("fields metadata.namespace", o("web", sel(field("metadata.namespace", "In", Some(vec!["x"]))))),
        case(
            "fields spec.unschedulable NotIn",
            o("web", sel(field("spec.unschedulable", "NotIn", Some(vec!["true"])))),
        ),
        case(
            "fields NotIn Not_A_Node",
            o("web", sel(field("metadata.name", "NotIn", Some(vec!["Not_A_Node"])))),
        ),
        case(
            "Equals beside a good term",
            o(
                "web",
                sel(json!({"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "topology.liqo.io/region", "operator": "Equals", "values": ["eu-west"]}]},
            {"matchExpressions": [{"key": "topology.liqo.io/region", "operator": "In", "values": ["eu-west"]}]}]})),
            ),
        ),
        // On Liqo v1.x the webhook denies these (the virtual node matches no well-formed term):
        // the policy cannot see virtual nodes, and allows the selector.
        case("Equals beside a term the virtual node does not match", o("web", sel(unmatched()))),
        case(
            "wrong name, and Equals beside a term the virtual node does not match",
            object(g, "web", "wrong", sel(unmatched())),
        ),
        case("no clusterSelector", o("web", json!({"namespaceMappingStrategy": "DefaultName"}))),
        case("clusterSelector: {}", o("web", json!({"clusterSelector": {}}))),
        case("clusterSelector: null", o("web", json!({"clusterSelector": null}))),
        case("DefaultName of 26", o(&"a".repeat(26), sel(every()))),
        case("DefaultName of 27", o(&"a".repeat(27), sel(every()))),
        case(
            "SelectedName of 63",
            o(
                "web",
                json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "r".repeat(63), "clusterSelector": every()}),
            ),
        ),
        case(
            "SelectedName of 64",
            o(
                "web",
                json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "r".repeat(64), "clusterSelector": every()}),
            ),
        ),
        case(
            "SelectedName of 300",
            o(
                "web",
                json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "R".repeat(300), "clusterSelector": every()}),
            ),
        ),
        case(
            "SelectedName Bad_Name",
            o(
                "web",
                json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "Bad_Name", "clusterSelector": every()}),
            ),
        ),
        case(
            "SelectedName kube-system",
            o(
                "web",
                json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "kube-system", "clusterSelector": every()}),
            ),
        ),
        case(
            "SelectedName default",
            o(
                "web",
                json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "default", "clusterSelector": every()}),
            ),
        ),
        case(
            "SelectedName empty",
            o(
                "web",
                json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "", "clusterSelector": every()}),
            ),
        ),
        case(
            "SelectedName null",
            o(
                "web",
                json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": null, "clusterSelector": every()}),
            ),
        ),
        case(
            "remoteNamespaceName ignored",
            o("web", json!({"remoteNamespaceName": "Ignored_Name", "clusterSelector": every()})),
        ),
        // The rules at their edges.
        case(
            "EnforceSameName in default",
            o("default", json!({"namespaceMappingStrategy": "EnforceSameName", "clusterSelector": every()})),
        ),
        case(
            "EnforceSameName in kube-public",
            o(
                "kube-public",
                json!({"namespaceMappingStrategy": "EnforceSameName", "clusterSelector": every()}),
            ),
        ),
        case("DefaultName in default", o("default", sel(every()))),
        case(
            "EnforceSameName, namespace of 63",
            o(
                &"n".repeat(63),
                json!({"namespaceMappingStrategy": "EnforceSameName", "clusterSelector": every()}),
            ),
        ),
        case("kube-system is left alone", o("kube-system", sel(expr("k", "Equals", None)))),
        case("Gt i64::MAX", o("web", sel(expr("n", "Gt", Some(vec!["9223372036854775807"]))))),
        case("Gt i64::MAX + 1", o("web", sel(expr("n", "Gt", Some(vec!["9223372036854775808"]))))),
        case("Lt i64::MIN", o("web", sel(expr("n", "Lt", Some(vec!["-9223372036854775808"]))))),
        case("Lt i64::MIN - 1", o("web", sel(expr("n", "Lt", Some(vec!["-9223372036854775809"]))))),
        case("Gt +5", o("web", sel(expr("n", "Gt", Some(vec!["+5"]))))),
        case("Gt -0", o("web", sel(expr("n", "Gt", Some(vec!["-0"]))))),
        case("Gt 0x10", o("web", sel(expr("n", "Gt", Some(vec!["0x10"]))))),
        case("Gt 1e3", o("web", sel(expr("n", "Gt", Some(vec!["1e3"]))))),
        case("Gt leading zeros", o("web", sel(expr("n", "Gt", Some(vec!["000000000000000000000000001"]))))),
        case("Gt empty", o("web", sel(expr("n", "Gt", Some(vec![""]))))),
        case("Gt -", o("web", sel(expr("n", "Gt", Some(vec!["-"]))))),
        case("key prefix of 253", o("web", sel(expr(&format!("{}/k", "p".repeat(253)), "Exists", None)))),
        case("key prefix of 254", o("web", sel(expr(&format!("{}/k", "p".repeat(254)), "Exists", None)))),
        case(
            "key prefix label of 64",
            o("web", sel(expr(&format!("{}.io/k", "p".repeat(64)), "Exists", None))),
        ),
        case("key a/b/c", o("web", sel(expr("a/b/c", "Exists", None)))),
        case("key /a", o("web", sel(expr("/a", "Exists", None)))),
        case("key a/", o("web", sel(expr("a/", "Exists", None)))),
        case("key empty", o("web", sel(expr("", "Exists", None)))),
        case("key é", o("web", sel(expr("é", "Exists", None)))),
        case("key of 64 é", o("web", sel(expr(&"é".repeat(40), "Exists", None)))),
        case("key Ex.ample/x", o("web", sel(expr("Ex.ample/x", "Exists", None)))),
        case("value empty", o("web", sel(expr("k", "In", Some(vec![""]))))),
        case("value with a quote and a backslash", o("web", sel(expr("k", "In", Some(vec!["a\"b\\c"]))))),
        case(
            "value with a newline and a NUL",
            o("web", sel(expr("k", "In", Some(vec!["a\nb\u{0}c\u{1b}"])))),
        ),
        case(
            "value with U+0085 and U+00A0",
            o("web", sel(expr("k", "In", Some(vec!["a\u{85}b\u{a0}c\u{ad}"])))),
        ),
        case("value with U+202E", o("web", sel(expr("k", "In", Some(vec!["a\u{202e}b"]))))),
        case("value of 200 characters", o("web", sel(expr("k", "In", Some(vec![&"x ".repeat(100)]))))),
        case("value of 200 é", o("web", sel(expr("k", "In", Some(vec![&"é".repeat(200)]))))),
        case(
            "fields value of 254",
            o("web", sel(field("metadata.name", "In", Some(vec![&"a".repeat(254)])))),
        ),
        case("fields value a..b", o("web", sel(field("metadata.name", "In", Some(vec!["a..b"]))))),
        case("fields value empty", o("web", sel(field("metadata.name", "In", Some(vec![""]))))),
        case("fields Gt", o("web", sel(field("metadata.name", "Gt", Some(vec!["1"]))))),
        case(
            "eleven errors",
            o(
                "web",
                sel(json!({"nodeSelectorTerms": [{"matchExpressions":
            (0..11).map(|i| json!({"key": format!("bad key {i}"), "operator": "Exists"})).collect::<Vec<_>>()}]})),
            ),
        ),
        case(
            "twelve errors",
            o(
                "web",
                sel(json!({"nodeSelectorTerms": [{"matchExpressions":
            (0..12).map(|i| json!({"key": format!("bad key {i}"), "operator": "Exists"})).collect::<Vec<_>>()}]})),
            ),
        ),
        case(
            "all terms broken",
            o(
                "web",
                sel(json!({"nodeSelectorTerms": [
            {}, {"matchExpressions": [{"key": "region", "operator": "In"}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]}]})),
            ),
        ),
        case(
            "a broken term and an empty one",
            o(
                "web",
                sel(json!({"nodeSelectorTerms": [
            {}, {"matchExpressions": [{"key": "region", "operator": "Equals"}]}]})),
            ),
        ),
        case(
            "matchExpressions: [] beside a broken term",
            o(
                "web",
                sel(json!({"nodeSelectorTerms": [
            {"matchExpressions": []}, {"matchExpressions": [{"key": "region", "operator": "Equals"}]}]})),
            ),
        ),
        case("skip label", {
            let mut v = o("web", sel(expr("k", "Equals", None)));
            v["metadata"]["labels"] = json!({"liqo.io/webhook-skip": "true"});
            v
        }),
        case("skip label false", {
            let mut v = o("web", sel(expr("k", "Equals", None)));
            v["metadata"]["labels"] = json!({"liqo.io/webhook-skip": "false"});
            v
        }),
    ];
    // The limits (`Too many`) and the largest selectors the webhook accepts.
    let long_key = format!("{}/{}", "p".repeat(253), "k".repeat(63));
    let node = "n".repeat(253);
    let value = "v".repeat(63);
    let heavy_keys = |fields: bool| {
        let terms: Vec<Value> = (0..32)
            .map(|_| {
                let exprs: Vec<Value> =
                    (0..32).map(|_| json!({"key": long_key, "operator": "Exists"})).collect();
                let mut t = json!({"matchExpressions": exprs});
                if fields {
                    let f: Vec<Value> = (0..32)
                        .map(|_| json!({"key": "metadata.name", "operator": "In", "values": [node]}))
                        .collect();
                    t["matchFields"] = json!(f);
                }
                t
            })
            .collect();
        json!({"nodeSelectorTerms": terms})
    };
    let values = |n: usize| -> Vec<String> { (0..n).map(|i| format!("{}{i:04}", "v".repeat(59))).collect() };
    // Within the limits, every requirement broken: 2 048 errors, of which the message lists 10.
    let broken_key = format!("{}/{}", "P".repeat(253), "k".repeat(63));
    let broken_node = "N".repeat(253);
    let heaviest_denial = json!({"nodeSelectorTerms": (0..32).map(|_| json!({
        "matchExpressions": vec![json!({"key": broken_key, "operator": "Exists"}); 32],
        "matchFields": vec![json!({"key": "metadata.name", "operator": "In", "values": [broken_node]}); 32]})).collect::<Vec<_>>()});
    c.extend([
        case("heaviest denial: 32 terms x 32 broken long keys x 32 broken node names", o("web", sel(heaviest_denial))),
        case("largest: 32 terms x 32 long keys x 32 node names", o("web", sel(heavy_keys(true)))),
        case("largest: 32 terms x 32 long keys", o("web", sel(heavy_keys(false)))),
        case("largest: 4 x 256 values of 63", o("web", sel(json!({"nodeSelectorTerms": (0..4).map(|_| json!({"matchExpressions": [
            {"key": long_key, "operator": "In", "values": values(256)}]})).collect::<Vec<_>>()})))),
        case("largest: 32 x 32 requirements of one value", o("web", sel(json!({"nodeSelectorTerms": (0..32).map(|_| json!({"matchExpressions":
            (0..32).map(|_| json!({"key": long_key, "operator": "NotIn", "values": [value]})).collect::<Vec<_>>()})).collect::<Vec<_>>()})))),
        case("too many: 33 terms", o("web", sel(json!({"nodeSelectorTerms": (0..33).map(|_| json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]})).collect::<Vec<_>>()})))),
        case("too many: 33 requirements", o("web", sel(json!({"nodeSelectorTerms": [{"matchExpressions": (0..33).map(|_| json!({"key": "a", "operator": "Exists"})).collect::<Vec<_>>(),
            "matchFields": (0..40).map(|_| json!({"key": "metadata.name", "operator": "In", "values": ["a"]})).collect::<Vec<_>>()}]})))),
        case("too many: 257 values", o("web", sel(expr("a", "In", Some(values(257).iter().map(String::as_str).collect()))))),
        case("too many: 1025 values in all", o("web", sel(json!({"nodeSelectorTerms": (0..5).map(|i| json!({"matchExpressions": [
            {"key": "a", "operator": "In", "values": values(if i == 4 { 1 } else { 256 })}]})).collect::<Vec<_>>()})))),
        case("too many: 1025 bad values in all", o("web", sel(json!({"nodeSelectorTerms": (0..5).map(|i| json!({"matchExpressions": [
            {"key": "a", "operator": "In", "values": vec!["a b"; if i == 4 { 1 } else { 256 }]}]})).collect::<Vec<_>>()})))),
        case("too many: 100 000 bad values", o("web", sel(expr("region", "In", Some(vec!["bad value"; 100_000]))))),
        case("1024 bad values within the limits", o("web", sel(json!({"nodeSelectorTerms": (0..4).map(|_| json!({"matchExpressions": [
            {"key": "a", "operator": "In", "values": vec!["a b\u{1}"; 256]}]})).collect::<Vec<_>>()})))),
    ]);
    if g == Gen::V1 {
        // Liqo v1.x's CRD does not require spec (ours does).
        let mut no_spec = o("web", json!({}));
        no_spec.as_object_mut().unwrap().remove("spec");
        c.push(case("no spec", no_spec));
    }
    // Updates.
    let upd = |what: &str, old: Value, new: Value| Case {
        what: what.into(),
        object: o("web", new),
        old: Some(o("web", old)),
    };
    let bad = sel(expr("region", "Equals", Some(vec!["eu"])));
    c.extend([
        upd("update: mapping strategy changed", sel(every()), json!({"namespaceMappingStrategy": "EnforceSameName", "podOffloadingStrategy": "Local", "clusterSelector": every()})),
        upd("update: remote name changed", json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "a", "clusterSelector": every()}),
            json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "b\"\n", "clusterSelector": every()})),
        upd("update: remote name set to empty", json!({"clusterSelector": every()}), json!({"remoteNamespaceName": "", "clusterSelector": every()})),
        upd("update: both changed and a bad selector", sel(every()),
            json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": "x", "clusterSelector": expr("k", "Equals", None)})),
        upd("update: pod strategy only", sel(every()), json!({"podOffloadingStrategy": "Remote", "clusterSelector": every()})),
        upd("update: selector made bad", sel(every()), bad.clone()),
        upd("update: unchanged bad spec", bad.clone(), bad.clone()),
        upd("update: default written out", sel(every()), json!({"namespaceMappingStrategy": "DefaultName", "podOffloadingStrategy": "LocalAndRemote", "clusterSelector": every()})),
        upd("update: bad selector fixed", bad, sel(every())),
    ]);
    if g == Gen::V1 {
        c.push(upd("update: selector removed", sel(every()), json!({"podOffloadingStrategy": "Local"})));
    } else {
        c.push(upd("update: selector removed", sel(every()), json!({"podOffloadingStrategy": "Local"})));
        c.push(upd("update: selector null", sel(every()), json!({"clusterSelector": null})));
    }
    let heavy = heavy_keys(true);
    c.push(upd(
        "largest: an update of 32 terms x 32 long keys x 32 node names",
        sel(heavy.clone()),
        json!({"podOffloadingStrategy": "Remote", "clusterSelector": heavy}),
    ));
    c
}

/// The review fixtures' objects (tests/fixtures), as the API server would send them.
fn fixtures(g: Gen) -> Vec<Case> {
    let dir = format!("{}/tests/fixtures", support::ROOT);
    let mut names: Vec<_> =
        std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    let clean = |v: &Value| -> Option<Value> {
        let mut v = v.clone();
        let meta = v.get_mut("metadata")?.as_object_mut()?;
        for k in ["uid", "resourceVersion", "managedFields", "creationTimestamp", "generation", "finalizers"]
        {
            meta.remove(k);
        }
        meta.insert("namespace".into(), json!("web"));
        v["apiVersion"] = json!(format!("offloading.liqo.io/{}", g.version()));
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        Some(v)
    };
    let mut out = Vec::new();
    for path in names.iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let Ok(review) = serde_json::from_slice::<Value>(&std::fs::read(path).unwrap()) else { continue };
        let req = &review["request"];
        if req["resource"]["resource"] != "namespaceoffloadings" || req.get("subResource").is_some() {
            continue;
        }
        let Some(object) = clean(&req["object"]) else { continue };
        let what = format!("fixture {}", path.file_name().unwrap().to_string_lossy());
        match req["operation"].as_str() {
            Some("CREATE") => out.push(case(what, object)),
            Some("UPDATE") => out.push(Case { what, object, old: req.get("oldObject").and_then(clean) }),
            _ => {}
        }
    }
    out
}

/// Bytes for input `i` of a run (splitmix64 of the seed and the index).
fn bytes(i: u64, n: usize) -> Vec<u8> {
    let mut x = 0x5eed_u64 ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

/// A fuzzed spec, from the generators of tests/fuzzing/make.rs.
fn fuzz_spec(u: &mut Unstructured<'_>, g: Gen) -> arbitrary::Result<Value> {
    let mut spec = serde_json::Map::new();
    // Mostly values of the enums: anything else the CRD schema refuses before admission.
    let strategies = ["DefaultName", "EnforceSameName", "SelectedName", "SelectedName"];
    if u.ratio(3u8, 4)? {
        let s = if u.ratio(9u8, 10)? {
            (*u.choose(&strategies)?).to_owned()
        } else {
            make::string(u, &strategies)?
        };
        spec.insert("namespaceMappingStrategy".into(), s.into());
    }
    let pods = ["LocalAndRemote", "Local", "Remote"];
    if u.ratio(1u8, 2)? {
        let s = if u.ratio(9u8, 10)? { (*u.choose(&pods)?).to_owned() } else { make::string(u, &pods)? };
        spec.insert("podOffloadingStrategy".into(), s.into());
    }
    if u.ratio(1u8, 3)? {
        spec.insert("remoteNamespaceName".into(), make::string(u, make::NAMES)?.into());
    }
    let selector = match u.int_in_range(0u8..=9)? {
        0 => None,
        1 if g == Gen::V0_3 => Some(Value::Null),
        _ => Some(make::selector(u, 3)?),
    };
    if let Some(s) = selector {
        spec.insert("clusterSelector".into(), s);
    }
    Ok(Value::Object(spec))
}

fn fuzzed(g: Gen) -> Vec<Case> {
    let nss = namespaces();
    (0..FUZZED as u64)
        .filter_map(|i| {
            let data = bytes(i, 2048);
            let mut u = Unstructured::new(&data);
            let ns = u.choose(&nss).ok()?.clone();
            let name = if u.ratio(4u8, 5).ok()? {
                "offloading".to_owned()
            } else {
                make::string(&mut u, make::NAMES).ok()?
            };
            let mut o = object(g, &ns, &name, fuzz_spec(&mut u, g).ok()?);
            if u.ratio(1u8, 30).ok()? {
                o["metadata"]["labels"] = json!({"liqo.io/webhook-skip": "true"});
            }
            Some(case(format!("fuzzed #{i}"), o))
        })
        .collect()
}

fn fuzzed_updates(g: Gen) -> Vec<Case> {
    (0..FUZZED_UPDATES as u64)
        .filter_map(|i| {
            let data = bytes(1_000_000 + i, 2048);
            let mut u = Unstructured::new(&data);
            let old = fuzz_spec(&mut u, g).ok()?;
            let mut new = old.clone();
            match u.int_in_range(0u8..=5).ok()? {
                0 => {}
                1 => {
                    new["namespaceMappingStrategy"] =
                        json!(*u.choose(&["DefaultName", "EnforceSameName", "SelectedName"]).ok()?)
                }
                2 => new["remoteNamespaceName"] = json!(make::string(&mut u, make::NAMES).ok()?),
                3 => {
                    new["podOffloadingStrategy"] =
                        json!(*u.choose(&["LocalAndRemote", "Local", "Remote"]).ok()?)
                }
                _ => new = fuzz_spec(&mut u, g).ok()?,
            }
            Some(Case {
                what: format!("fuzzed update #{i}"),
                object: object(g, "web", "offloading", new),
                old: Some(object(g, "web", "offloading", old)),
            })
        })
        .collect()
}

/// What the API server answered.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Allowed,
    /// Refused by the webhook or the policy: what they said, without the API server's prefix.
    Denied {
        binding: Option<String>,
        message: String,
    },
    /// Refused before admission, or not at all sent: the API server's whole message.
    Other(String),
}

impl Answer {
    fn allowed(&self) -> bool {
        *self == Answer::Allowed
    }

    fn from_error(message: &str) -> Self {
        if let Some((_, m)) = message.split_once(WEBHOOK_DENIED) {
            return Answer::Denied { binding: None, message: m.to_owned() };
        }
        let marker = format!("ValidatingAdmissionPolicy '{POLICY}' with binding '");
        if let Some((_, rest)) = message.split_once(&marker)
            && let Some((binding, m)) = rest.split_once("' denied request: ")
        {
            return Answer::Denied { binding: Some(binding.to_owned()), message: m.to_owned() };
        }
        Answer::Other(message.to_owned())
    }
}

fn resource(g: Gen) -> ApiResource {
    ApiResource {
        group: "offloading.liqo.io".into(),
        version: g.version().into(),
        api_version: format!("offloading.liqo.io/{}", g.version()),
        kind: "NamespaceOffloading".into(),
        plural: "namespaceoffloadings".into(),
    }
}

/// The stored objects of the update cases, by case index: each in a namespace of its own.
async fn store_old_objects(client: &kube::Client, g: Gen, cases: &mut [Case]) {
    use k8s_openapi::api::core::v1::Namespace;
    let ar = resource(g);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let jobs = cases.iter_mut().enumerate().filter(|(_, c)| c.old.is_some()).map(|(i, c)| {
        let ar = ar.clone();
        let namespaces = namespaces.clone();
        async move {
            let ns = format!("upd-{i}");
            let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
            namespaces.create(&PostParams::default(), &n).await.unwrap();
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
            let old = c.old.as_mut().unwrap();
            old["metadata"]["namespace"] = json!(ns);
            c.object["metadata"]["namespace"] = json!(ns);
            c.object["metadata"]["name"] = old["metadata"]["name"].clone();
            let stored: Result<DynamicObject, _> =
                api.create(&PostParams::default(), &serde_json::from_value(old.clone()).unwrap()).await;
            match stored {
                Ok(s) => c.object["metadata"]["resourceVersion"] = json!(s.metadata.resource_version),
                // The API server refuses the old object itself (its schema): nothing to update.
                Err(_) => c.old = None,
            }
        }
    });
    futures::stream::iter(jobs).buffer_unordered(CONCURRENCY).collect::<Vec<()>>().await;
    // A case whose old object could not be stored is not an update: drop it.
}

/// Sends every case as a dry run; the answers in the cases' order.
async fn send_all(client: &kube::Client, g: Gen, cases: &[Case]) -> Vec<Answer> {
    let ar = resource(g);
    let dry = PostParams { dry_run: true, field_manager: None };
    let jobs = cases.iter().map(|c| {
        let (ar, dry) = (ar.clone(), dry.clone());
        async move {
            let ns = c.object["metadata"]["namespace"].as_str().unwrap_or("web").to_owned();
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
            let obj: DynamicObject = match serde_json::from_value(c.object.clone()) {
                Ok(o) => o,
                Err(e) => return Answer::Other(format!("not an object: {e}")),
            };
            let res = match &c.old {
                None => api.create(&dry, &obj).await,
                Some(_) => {
                    let name = obj.metadata.name.clone().unwrap_or_default();
                    api.replace(&name, &dry, &obj).await
                }
            };
            match res {
                Ok(_) => Answer::Allowed,
                Err(kube::Error::Api(s)) => Answer::from_error(&s.message),
                Err(e) => Answer::Other(format!("request failed: {e}")),
            }
        }
    });
    futures::stream::iter(jobs).buffered(CONCURRENCY).collect().await
}

/// Sends one object as a dry run (for the probes that wait for a registration to take effect).
async fn probe(client: &kube::Client, g: Gen, object: Value) -> Answer {
    send_all(client, g, &[case("probe", object)]).await.remove(0)
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The sum and count of a histogram of the API server's /metrics (all label sets).
fn histogram(cp: &ControlPlane, name: &str, filter: &str) -> (f64, f64) {
    let metrics = cp.kubectl_ok(&["get", "--raw", "/metrics"]);
    let total = |suffix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{name}_{suffix}")) && l.contains(filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (total("sum"), total("count"))
}

/// The virtual node as the webhook sees it on each generation (a Node on v0.3; on v1.x a
/// VirtualNode without a Node: its `spec.labels` and the two labels Liqo adds).
fn virtual_nodes(g: Gen) -> VirtualNodes {
    let mut labels: BTreeMap<String, String> = [
        ("topology.liqo.io/region".to_owned(), REGION.to_owned()),
        ("liqo.io/remote-cluster-id".to_owned(), REMOTE_ID.to_owned()),
    ]
    .into();
    let name = match g {
        Gen::V0_3 => {
            labels.insert("liqo.io/type".into(), "virtual-node".into());
            format!("liqo-{REMOTE_ID}")
        }
        Gen::V1 => {
            labels.insert("storage.liqo.io/available".into(), "true".into());
            REMOTE_ID.to_owned()
        }
    };
    VirtualNodes::new(vec![VirtualNode { name, cluster_id: REMOTE_ID.into(), labels }])
}

/// Whether the webhook is called for the case (its registration skips kube-system and the
/// label `liqo.io/webhook-skip=true`, as the policy's bindings do).
fn reaches_webhook(c: &Case) -> bool {
    c.object["metadata"]["namespace"] != "kube-system"
        && c.object["metadata"]["labels"]["liqo.io/webhook-skip"] != "true"
}

/// The webhook's verdict on the case, computed here by the library with the webhook's facts;
/// `None` for an object the library cannot read (the webhook then answers with serde's words).
fn in_process(g: Gen, nodes: &VirtualNodes, c: &Case) -> Option<Verdict> {
    let parse = |v: &Value| serde_json::from_value::<NamespaceOffloading>(v.clone()).ok();
    let obj = parse(&c.object)?;
    let ns = c.object["metadata"]["namespace"].as_str()?;
    let ctx =
        Context { cluster_id: Some(CLUSTER_ID), virtual_nodes: Some(nodes), generation: g.generation() };
    Some(match &c.old {
        None => review_create(&obj, ns, &ctx),
        Some(old) => review_update(&parse(old)?, &obj, ns, &ctx),
    })
}

/// The errors the policy finds, by their rules: all but those of rules only the webhook can check.
/// When one of those is there (a virtual node that matches none of the well-formed terms), the
/// broken terms' errors are errors only because of it: the policy, which cannot see the virtual
/// nodes, takes the selector as Liqo v1.x does when a well-formed term matches.
fn policy_errors(g: Gen, errors: &[FieldError]) -> Vec<FieldError> {
    let live = errors.iter().any(|e| !table::checked_by_policy(e.rule, g.generation()));
    let selector_scope = |e: &FieldError| {
        matches!(
            table::rule(e.rule).scope,
            Scope::Expression | Scope::ExpressionValue | Scope::Field | Scope::Nodes
        )
    };
    errors
        .iter()
        .filter(|e| table::checked_by_policy(e.rule, g.generation()) && !(live && selector_scope(e)))
        .cloned()
        .collect()
}

/// What the policy's `binding` says for `errors` (those of [`policy_errors`]): the static binding
/// has no cluster id, so it lists all but the errors of rules that need one.
fn policy_message(errors: &[FieldError], binding: &str) -> String {
    let listed: Vec<FieldError> = errors
        .iter()
        .filter(|e| binding != POLICY || table::rule(e.rule).check != Check::ClusterId)
        .cloned()
        .collect();
    let m = aggregate(&listed);
    if m.len() > MAX_POLICY_MESSAGE { FALLBACK_MESSAGE.to_owned() } else { m }
}

/// Rust's `{:?}` escapes format and combining characters past U+00FF (`\u{202e}`); CEL shows them
/// as they are. `m` with those of `shown` unescaped.
fn unescaped(m: &str, shown: &str) -> String {
    let mut m = m.to_owned();
    for c in shown.chars().filter(|c| (*c as u32) > 0xff && format!("{c:?}").contains("\\u{")) {
        m = m.replace(format!("{c:?}").trim_matches('\''), &c.to_string());
    }
    m
}

/// Why the policy's message is not the webhook's, when it is what the policy is built to say.
fn known_difference(
    g: Gen,
    verdict: Option<&Verdict>,
    webhook: &Answer,
    policy: &Answer,
) -> Option<&'static str> {
    let (Answer::Denied { .. }, Answer::Denied { binding: Some(binding), message: p }) = (webhook, policy)
    else {
        return None;
    };
    let errors = policy_errors(g, &verdict?.errors);
    let expected = policy_message(&errors, binding);
    if unescaped(&expected, p) != *p {
        return None;
    }
    Some(if expected == FALLBACK_MESSAGE {
        "the list of problems is longer than a policy message may be (5 KiB): its fixed message"
    } else if errors.len() < verdict?.errors.len() {
        "the webhook also lists what only it can check (a virtual node that matches no well-formed term)"
    } else if aggregate(&errors) != expected {
        "two bindings denied: the API server shows the static one, without the DefaultName error"
    } else {
        "a value with Unicode format or combining characters: CEL quotes them as they are"
    })
}

/// The errors of an API server message `... is invalid: [a, b]`, sorted.
fn sorted_errors(message: &str) -> Vec<String> {
    let Some((head, list)) = message.split_once(" is invalid: [") else { return vec![message.to_owned()] };
    let list = list.trim_end_matches(']');
    let mut errors: Vec<String> =
        list.strip_prefix("spec.").unwrap_or(list).split(", spec.").map(str::to_owned).collect();
    errors.sort();
    errors.insert(0, head.to_owned());
    errors
}

#[derive(Default)]
struct Report {
    text: String,
    compared: usize,
    reached_admission: usize,
    denied: usize,
    verdict_differences: usize,
    /// Denied by the webhook for a rule only it can check, allowed by the policy.
    live_only: usize,
    /// The webhook's answer is not what the library says in this process.
    webhook_not_library: usize,
    exact_messages: usize,
    known: BTreeMap<&'static str, usize>,
    unexplained: usize,
    /// How many objects the webhook denied for each rule (by the library's verdict).
    by_rule: BTreeMap<&'static str, usize>,
}

fn compare(g: Gen, nodes: &VirtualNodes, cases: &[Case], webhook: &[Answer], policy: &[Answer]) -> Report {
    let mut r = Report { compared: cases.len(), ..Default::default() };
    for ((c, w), p) in cases.iter().zip(webhook).zip(policy) {
        if !matches!(w, Answer::Other(_)) {
            r.reached_admission += 1;
        }
        if !w.allowed() {
            r.denied += 1;
        }
        let verdict =
            (reaches_webhook(c) && !matches!(w, Answer::Other(_))).then(|| in_process(g, nodes, c)).flatten();
        if let Some(v) = &verdict {
            let rules: BTreeSet<&'static str> = v.errors.iter().map(|e| e.rule.as_str()).collect();
            for rule in rules {
                *r.by_rule.entry(rule).or_default() += 1;
            }
            let same = match w {
                Answer::Allowed => v.allowed(),
                Answer::Denied { message, .. } => !v.allowed() && *message == v.message(),
                Answer::Other(_) => true,
            };
            if !same {
                r.webhook_not_library += 1;
                let _ =
                    writeln!(r.text, "WEBHOOK {}: {}\n  webhook: {w:?}\n  library: {v:?}", g.api(), c.what);
            }
        }
        if w.allowed() != p.allowed() {
            let live =
                verdict.as_ref().is_some_and(|v| !v.allowed() && policy_errors(g, &v.errors).is_empty());
            if live && p.allowed() {
                r.live_only += 1;
                let _ = writeln!(
                    r.text,
                    "verdict (a rule only the webhook can check) {}: {}\n  webhook: {w:?}\n  policy:  {p:?}",
                    g.api(),
                    c.what
                );
            } else {
                r.verdict_differences += 1;
                let _ =
                    writeln!(r.text, "VERDICT {}: {}\n  webhook: {w:?}\n  policy:  {p:?}", g.api(), c.what);
            }
            continue;
        }
        let same = match (w, p) {
            (Answer::Denied { message: a, .. }, Answer::Denied { message: b, .. }) => a == b,
            // The API server lists its own schema errors in no fixed order.
            (Answer::Other(a), Answer::Other(b)) => sorted_errors(a) == sorted_errors(b),
            (a, b) => a == b,
        };
        if same {
            r.exact_messages += 1;
            continue;
        }
        match known_difference(g, verdict.as_ref(), w, p) {
            Some(why) => {
                *r.known.entry(why).or_default() += 1;
                let _ = writeln!(
                    r.text,
                    "message ({why}) {}: {}\n  webhook: {w:?}\n  policy:  {p:?}",
                    g.api(),
                    c.what
                );
            }
            None => {
                r.unexplained += 1;
                let _ = writeln!(
                    r.text,
                    "MESSAGE {}: {}\n  webhook: {w:?}\n  policy:  {p:?}\n  object:  {}\n  old:     {}",
                    g.api(),
                    c.what,
                    c.object,
                    c.old.as_ref().map(ToString::to_string).unwrap_or_default()
                );
            }
        }
    }
    r
}

/// A cluster-id ConfigMap as the generation's Liqo writes it.
fn cluster_id_configmap(g: Gen) -> String {
    let labels = match g {
        Gen::V0_3 => "",
        Gen::V1 => "  labels:\n    app.kubernetes.io/name: clusterid-configmap\n",
    };
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: liqo-clusterid-configmap\n  namespace: liqo\n{labels}data:\n  CLUSTER_ID: {CLUSTER_ID}\n"
    )
}

async fn equal_verdicts(g: Gen) {
    let started = Instant::now();
    let cp = ControlPlane::start();
    match g {
        Gen::V0_3 => support::install_crds(&cp),
        Gen::V1 => support::liqo::install_crds(&cp),
    }
    for ns in namespaces().iter().filter(|n| !["default", "kube-public", "kube-system"].contains(&n.as_str()))
    {
        cp.kubectl_ok(&["create", "namespace", ns]);
    }
    cp.kubectl_ok(&["create", "namespace", "liqo"]);
    let p = support::apply(&cp, &cluster_id_configmap(g), &[]);
    assert!(p.ok, "{}", p.stderr);
    match g {
        Gen::V0_3 => support::virtual_node(&cp, REMOTE_ID, REGION),
        Gen::V1 => support::liqo::remote_cluster_v1(&cp, REMOTE_ID, &[("topology.liqo.io/region", REGION)]),
    }
    let nodes = virtual_nodes(g);
    let client = cp.client().await;

    let mut cases = corpus(g);
    let hand = cases.len();
    cases.extend(fixtures(g));
    cases.extend(fuzzed(g));
    cases.extend(fuzzed_updates(g));
    store_old_objects(&client, g, &mut cases).await;
    let setup = started.elapsed();

    // Probes: a broken selector (the static rules) and a namespace too long for DefaultName with
    // the cluster id of Liqo's ConfigMap (the parameter).
    let bad = object(g, "web", "offloading", sel(expr("k", "Equals", None)));
    let long = object(g, "payments-processing-europe-1", "offloading", sel(every()));
    let good = object(g, "web", "offloading", sel(every()));
    let live = object(g, "web", "offloading", sel(unmatched()));

    // Only the webhook.
    let certs = cp.dir.path().join("certs");
    certs_for_loopback(&certs);
    let wh = Webhook::start(
        &cp,
        &certs,
        &["--liqo-api", g.api(), "--reconcile=false", "--liqo-namespace", "liqo"],
    );
    wh.register(&cp, &certs);
    // The validating webhook alone: the mutating one refuses what it cannot read before the
    // schema is checked, and it is not what the policy replaces.
    cp.kubectl_ok(&["delete", "mutatingwebhookconfiguration", "offloading-webhook"]);
    wait_for("the webhook to judge with the cluster id", Duration::from_secs(60), async || {
        matches!(probe(&client, g, bad.clone()).await, Answer::Denied { binding: None, .. })
            && matches!(probe(&client, g, long.clone()).await, Answer::Denied { binding: None, .. })
            && matches!(probe(&client, g, live.clone()).await, Answer::Denied { binding: None, .. })
    })
    .await;
    let t = Instant::now();
    let by_webhook = send_all(&client, g, &cases).await;
    let webhook_time = t.elapsed();
    let (wh_sum, wh_count) =
        histogram(&cp, "apiserver_admission_webhook_admission_duration_seconds", VALIDATE_NAME);

    // Only the policy.
    cp.kubectl_ok(&["delete", "validatingwebhookconfiguration", "offloading-webhook"]);
    drop(wh);
    wait_for("the webhook registration to be gone", Duration::from_secs(60), async || {
        probe(&client, g, good.clone()).await.allowed()
    })
    .await;
    let out = std::process::Command::new(support::webhook_bin())
        .args(["policy", "--liqo-api", g.api()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let yaml = String::from_utf8(out.stdout).unwrap();
    let applied = support::apply(&cp, &yaml, &[]);
    assert!(applied.ok, "policy | kubectl apply failed:\n{}", applied.stderr);
    assert_eq!(
        applied.stdout.trim(),
        "validatingadmissionpolicy.admissionregistration.k8s.io/offloading-webhook created\nvalidatingadmissionpolicybinding.admissionregistration.k8s.io/offloading-webhook created\nvalidatingadmissionpolicybinding.admissionregistration.k8s.io/offloading-webhook-cluster-id created"
    );
    wait_for("the policy to judge with the cluster id", Duration::from_secs(60), async || {
        matches!(probe(&client, g, bad.clone()).await, Answer::Denied { binding: Some(_), .. })
            && matches!(probe(&client, g, long.clone()).await, Answer::Denied { binding: Some(_), .. })
    })
    .await;
    let (p_sum0, p_count0) =
        histogram(&cp, "apiserver_validating_admission_policy_check_duration_seconds", "");
    let t = Instant::now();
    let by_policy = send_all(&client, g, &cases).await;
    let policy_time = t.elapsed();
    let (p_sum, p_count) = histogram(&cp, "apiserver_validating_admission_policy_check_duration_seconds", "");
    let type_checking = cp.kubectl_ok(&[
        "get",
        "validatingadmissionpolicy",
        POLICY,
        "-o",
        "jsonpath={.status.typeChecking.expressionWarnings[*].warning}",
    ]);

    let r = compare(g, &nodes, &cases, &by_webhook, &by_policy);
    let cost = celcost(g, &yaml, &cases);
    let largest: Vec<String> = cases
        .iter()
        .zip(&by_policy)
        .filter(|(c, _)| c.what.starts_with("largest"))
        .map(|(c, a)| {
            format!("{}: {}", c.what, if a.allowed() { "allowed".into() } else { format!("{a:?}") })
        })
        .collect();
    let mut summary = format!(
        "Liqo {}: {} objects compared ({} hand-written and fixtures' {}, {} fuzzed creates, {} fuzzed updates); {} reached admission, {} refused (by the CRD schema or the webhook)\n\
         verdict differences: {}; denied by the webhook for a rule only it can check, allowed by the policy: {}\n\
         webhook answers that are not the library's verdict: {}\n\
         objects the webhook denied, by rule: {:?}\n\
         messages word for word: {}; known differences: {:?}; unexplained: {}\n\
         largest accepted selectors through the policy: {}\n\
         mean admission time per call: webhook {:.2} ms ({} calls), policy check {:.2} ms ({} checks, both bindings)\n\
         wall time to send them all ({} at once): webhook {:.1} s, policy {:.1} s; setup {:.1} s\n\
         policy type checking warnings: {}\n",
        g.api(),
        r.compared,
        hand,
        cases.len() - hand - FUZZED - FUZZED_UPDATES,
        FUZZED,
        FUZZED_UPDATES,
        r.reached_admission,
        r.denied,
        r.verdict_differences,
        r.live_only,
        r.webhook_not_library,
        r.by_rule,
        r.exact_messages,
        r.known,
        r.unexplained,
        largest.join("; "),
        1000.0 * wh_sum / wh_count.max(1.0),
        wh_count,
        1000.0 * (p_sum - p_sum0) / (p_count - p_count0).max(1.0),
        p_count - p_count0,
        CONCURRENCY,
        webhook_time.as_secs_f64(),
        policy_time.as_secs_f64(),
        setup.as_secs_f64(),
        if type_checking.trim().is_empty() { "none" } else { type_checking.trim() },
    );
    summary.push_str(&cost);
    summary.push_str(&r.text);
    let path = format!("{}/e2e-policy-report-{}.txt", env!("CARGO_TARGET_TMPDIR"), g.api());
    std::fs::write(&path, &summary).unwrap();
    println!("{summary}\n(report kept in {path})");
    assert_eq!(r.verdict_differences, 0, "the policy and the webhook disagree; see {path}");
    assert_eq!(r.webhook_not_library, 0, "the webhook did not answer as the library judges; see {path}");
    assert_eq!(r.unexplained, 0, "the policy says something it is not built to say; see {path}");
    assert!(largest.iter().all(|l| l.ends_with(": allowed")), "{largest:?}");
    // Liqo v1.x's live rule is exercised (and v0.3 has none).
    assert_eq!(r.live_only > 0, g == Gen::V1, "{path}");
    // Compiles with the CEL of Kubernetes 1.29 onwards, and no evaluation runs out of budget.
    assert!(
        !cost.contains(": NO") && !cost.contains(" binding error") && !cost.contains("message error"),
        "{cost}"
    );
}

/// The policy's cost, measured by `tests/go/celcost` (the API server's CEL code) on the largest
/// objects the webhook accepts and on those just past the limits: its report.
fn celcost(g: Gen, yaml: &str, cases: &[Case]) -> String {
    let dir = std::path::PathBuf::from(format!("{}/e2e-policy-{}", env!("CARGO_TARGET_TMPDIR"), g.api()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, yaml).unwrap();
    let crd = match g {
        Gen::V0_3 => {
            let out = std::process::Command::new(support::webhook_bin()).arg("crds").output().unwrap();
            assert!(out.status.success());
            let path = dir.join("crds.yaml");
            std::fs::write(&path, out.stdout).unwrap();
            path
        }
        Gen::V1 => support::liqo::crd_dir().join("offloading.liqo.io_namespaceoffloadings.yaml"),
    };
    let mut objects = String::new();
    let heavy = ["largest", "heaviest", "too many", "1024 bad values"];
    for c in cases.iter().filter(|c| heavy.iter().any(|h| c.what.starts_with(h))) {
        objects.push_str(&json!({"what": c.what, "object": c.object, "old": c.old}).to_string());
        objects.push('\n');
    }
    let objects_path = dir.join("objects.jsonl");
    std::fs::write(&objects_path, objects).unwrap();
    let build = std::process::Command::new("bash")
        .arg(format!("{}/tests/go/celcost/build.sh", support::ROOT))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("could not run tests/go/celcost/build.sh");
    assert!(build.status.success(), "tests/go/celcost/build.sh failed");
    let bin = String::from_utf8(build.stdout).unwrap().trim().to_owned();
    let out = std::process::Command::new(bin)
        .arg("-policy")
        .arg(&policy)
        .arg("-crd")
        .arg(&crd)
        .args(["-version", g.version(), "-cluster-id", CLUSTER_ID, "-objects"])
        .arg(&objects_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "celcost failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_policy_refuses_what_the_webhook_refuses_on_liqo_v0_3() {
    equal_verdicts(Gen::V0_3).await;
}

#[tokio::test]
async fn the_policy_refuses_what_the_webhook_refuses_on_liqo_v1() {
    equal_verdicts(Gen::V1).await;
}

//! Our Liqo v1.x verdict on clusterSelectors against Liqo v1.2's own matcher: `tests/go/liqomatch`
//! runs what Liqo's NamespaceOffloading controller runs (k8s.io/component-helpers v0.35.2's
//! `MatchNodeSelectorTerms`, per virtual node, the first error ending it as an `Invalid` Event) on
//! each selector of a corpus, and this test asserts that we deny exactly what Liqo reports as
//! Invalid, and that what we admit selects the same clusters as Liqo does.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use offloading_webhook::crd::NamespaceOffloading;
use offloading_webhook::offloading::rules::selects;
use offloading_webhook::offloading::{Context, Generation, VirtualNode, VirtualNodes, review_create};
use serde_json::{Value, json};

/// Selectors, each a `nodeSelectorTerms` list: every class of malformed term, alone and beside
/// terms that match all, some or none of the virtual nodes; matchFields Liqo accepts and refuses.
fn corpus() -> Vec<Value> {
    let e = |key: &str, op: &str, values: Value| json!({"key": key, "operator": op, "values": values});
    let x = |key: &str, op: &str| json!({"key": key, "operator": op});
    let me = |reqs: Vec<Value>| json!({"matchExpressions": reqs});
    let mf = |reqs: Vec<Value>| json!({"matchFields": reqs});
    let eq = || me(vec![e("region", "Equals", json!(["eu"]))]);
    vec![
        json!([]),
        json!([{}]),
        json!([me(vec![e("region", "In", json!(["eu"]))])]),
        json!([me(vec![e("region", "NotIn", json!(["eu"]))])]),
        json!([me(vec![x("region", "Exists")])]),
        json!([me(vec![x("region", "DoesNotExist")])]),
        json!([me(vec![e("cores", "Gt", json!(["8"]))])]),
        json!([me(vec![e("cores", "Lt", json!(["8"]))])]),
        json!([eq()]),
        json!([eq(), me(vec![x("region", "Exists")])]),
        json!([eq(), me(vec![e("region", "In", json!(["eu", "us"]))])]),
        json!([eq(), me(vec![e("region", "In", json!(["eu"]))])]),
        json!([me(vec![e("region", "In", json!(["eu"]))]), eq()]),
        json!([{}, eq()]),
        json!([eq(), me(vec![e("region", "In", json!([]))])]),
        json!([me(vec![e("region", "In", json!([]))])]),
        json!([me(vec![e("region", "NotIn", json!([]))])]),
        json!([me(vec![e("region", "Exists", json!(["x"]))])]),
        json!([
            me(vec![e("region", "DoesNotExist", json!(["x"]))]),
            me(vec![e("region", "NotIn", json!(["mars"]))])
        ]),
        json!([me(vec![e("cores", "Gt", json!(["x"]))])]),
        json!([me(vec![e("cores", "Lt", json!(["1", "2"]))])]),
        json!([me(vec![x("cores", "Gt")])]),
        json!([me(vec![x("bad key", "Exists")])]),
        json!([me(vec![x("x/y/z", "Exists")]), me(vec![e("cores", "Lt", json!(["100"]))])]),
        json!([me(vec![x("Bad_Prefix/region", "Exists")])]),
        json!([me(vec![x(&"k".repeat(64), "Exists")])]),
        json!([me(vec![e("region", "NotIn", json!(["eu west"]))])]),
        json!([
            me(vec![e("region", "In", json!(["-bad-"]))]),
            mf(vec![e("metadata.name", "In", json!(["vk-b"]))])
        ]),
        json!([
            me(vec![e("region", "In", json!(["-bad-"]))]),
            mf(vec![e("metadata.name", "In", json!(["vk-b"]))]),
            me(vec![x("region", "DoesNotExist")])
        ]),
        json!([mf(vec![e("metadata.name", "In", json!(["vk-a"]))])]),
        json!([mf(vec![e("metadata.name", "NotIn", json!(["vk-a"]))])]),
        json!([mf(vec![e("metadata.labels", "NotIn", json!(["x"]))])]),
        json!([mf(vec![e("metadata.labels", "In", json!(["x"]))])]),
        json!([mf(vec![e("spec.x", "In", json!([""]))])]),
        json!([mf(vec![e("metadata.name", "NotIn", json!(["Not_A_Node"]))])]),
        json!([mf(vec![e("metadata.name", "In", json!([""]))])]),
        json!([mf(vec![x("metadata.name", "Exists")])]),
        json!([mf(vec![e("metadata.name", "In", json!(["vk-a", "vk-b"]))])]),
        json!([mf(vec![e("metadata.name", "Gt", json!(["1"]))]), me(vec![x("region", "Exists")])]),
        json!([me(vec![x("region", "Exists")]), mf(vec![e("metadata.name", "In", json!(["Bad_Name"]))])]),
        json!([{"matchExpressions": [e("region", "In", json!(["eu"]))], "matchFields": [e("metadata.name", "NotIn", json!(["vk-a"]))]}]),
        json!([{"matchExpressions": [e("region", "In", json!(["eu"]))], "matchFields": [x("metadata.name", "Exists")]}]),
    ]
}

fn nodes() -> Vec<VirtualNode> {
    let node = |name: &str, labels: &[(&str, &str)]| VirtualNode {
        name: name.into(),
        cluster_id: name.trim_start_matches("vk-").into(),
        labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
    };
    vec![
        node("vk-a", &[("region", "eu"), ("cores", "16")]),
        node("vk-b", &[("region", "us"), ("cores", "4")]),
        node("vk-c", &[("cores", "many")]),
    ]
}

/// What Liqo v1.2 does with each selector, from `tests/go/liqomatch`.
fn liqo(corpus: &[Value], nodes: &[VirtualNode]) -> Vec<String> {
    let bin = support::built_once("tests/go/liqomatch/build.sh", &[]);
    let go_nodes: Vec<Value> = nodes.iter().map(|n| json!({"name": n.name, "labels": n.labels})).collect();
    let mut input = String::new();
    for terms in corpus {
        input.push_str(&json!({"selector": {"nodeSelectorTerms": terms}, "nodes": go_nodes}).to_string());
        input.push('\n');
    }
    let mut child = Command::new(bin).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn we_deny_exactly_what_liqo_v1_2_reports_invalid_and_select_what_it_selects() {
    let (corpus, nodes) = (corpus(), VirtualNodes::new(nodes()));
    let liqo = liqo(&corpus, &nodes);
    assert_eq!(liqo.len(), corpus.len());
    let ctx =
        Context { cluster_id: Some("frosty-bird"), virtual_nodes: Some(&nodes), generation: Generation::V1 };
    let mut disagree = Vec::new();
    let mut table = String::from("selector | Liqo v1.2 | ours\n");
    for (terms, theirs) in corpus.iter().zip(&liqo) {
        let obj: NamespaceOffloading = serde_json::from_value(json!({
            "apiVersion": "offloading.liqo.io/v1beta1", "kind": "NamespaceOffloading",
            "metadata": {"name": "offloading", "namespace": "web"},
            "spec": {"clusterSelector": {"nodeSelectorTerms": terms}}
        }))
        .unwrap();
        let v = review_create(&obj, "web", &ctx);
        let ours = if v.allowed() {
            let sel = obj.spec.cluster_selector.as_ref();
            let picked: Vec<&str> =
                nodes.iter().filter(|n| selects(Generation::V1, sel, n)).map(|n| n.name.as_str()).collect();
            // The index the webhook judges with picks the same nodes as the plain scan.
            let indexed: Vec<&str> =
                nodes.selected(Generation::V1, sel).iter().map(|i| nodes[i].name.as_str()).collect();
            assert_eq!(indexed, picked, "{terms}");
            let warned = if v.warnings.is_empty() { "" } else { " (with warnings)" };
            format!("SELECTED {}{warned}", serde_json::to_string(&picked).unwrap())
        } else {
            format!("INVALID {}", v.message())
        };
        let (theirs_kind, ours_kind) = (theirs.split(' ').next(), ours.split(' ').next());
        let same = theirs_kind == ours_kind
            && (theirs_kind == Some("INVALID") || ours.trim_end_matches(" (with warnings)") == theirs);
        if !same {
            disagree.push(format!("{terms}\n  Liqo: {theirs}\n  ours: {ours}"));
        }
        let short = |s: &str| s.chars().take(90).collect::<String>();
        table.push_str(&format!("{terms} | {} | {}\n", short(theirs), short(&ours)));
    }
    println!("{table}");
    assert!(disagree.is_empty(), "{} of {} disagree:\n{}", disagree.len(), corpus.len(), disagree.join("\n"));
}

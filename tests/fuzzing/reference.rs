//! The selector and name rules against an independent statement of them: Kubernetes' regular
//! expressions (k8s.io/apimachinery `pkg/util/validation`) for names, docs/behaviour.md "Derived remote names",
//! "Malformed clusterSelector" there for which field of a selector is wrong, and NodeSelector semantics for matching.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use arbitrary::{Result, Unstructured};
use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement};
use offloading_webhook::crd::NamespaceMappingStrategy;
use offloading_webhook::offloading::names::{
    dns1123_subdomain_problem, label_value_problem, qualified_name_problem, remote_namespace_name,
    rfc1123_label_problem,
};
use offloading_webhook::offloading::selector::{NodeFacts, SELECTOR_PATH, explain, matches, validate};
use regex::Regex;

use super::check::Failure;
use super::make;

fn re(s: &str) -> Regex {
    Regex::new(s).expect("a fixed regular expression")
}

// Go's `^...$` (no multi-line flag) anchors at the ends of the text, as Rust's does.
static LABEL: LazyLock<Regex> = LazyLock::new(|| re("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"));
static SUBDOMAIN: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"));
static NAME_PART: LazyLock<Regex> = LazyLock::new(|| re("^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"));
static LABEL_VALUE: LazyLock<Regex> = LazyLock::new(|| re("^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"));

pub fn is_label(s: &str) -> bool {
    s.len() <= 63 && LABEL.is_match(s)
}

pub fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && SUBDOMAIN.is_match(s)
}

/// `IsQualifiedName`: `[prefix/]name`, the prefix a subdomain, the name at most 63 characters.
pub fn is_qualified_name(s: &str) -> bool {
    let name_ok = |n: &str| n.len() <= 63 && NAME_PART.is_match(n);
    match s.split('/').collect::<Vec<_>>()[..] {
        [name] => name_ok(name),
        [prefix, name] => !prefix.is_empty() && is_subdomain(prefix) && name_ok(name),
        _ => false,
    }
}

pub fn is_label_value(s: &str) -> bool {
    s.len() <= 63 && LABEL_VALUE.is_match(s)
}

/// Draws strings, a remote name case and a selector from `u`, and lists every disagreement.
pub fn check(u: &mut Unstructured<'_>) -> Result<Vec<Failure>> {
    let mut failures = Vec::new();
    for _ in 0..4 {
        let dict = *u.choose(&[make::KEYS, make::VALUES, make::NAMES])?;
        names(&make::string(u, dict)?, &mut failures);
    }
    remote_name(u, &mut failures)?;
    selector(u, &mut failures)?;
    Ok(failures)
}

fn names(s: &str, failures: &mut Vec<Failure>) {
    let rules: [(&str, Option<String>, bool); 4] = [
        ("rfc1123 label", rfc1123_label_problem(s), is_label(s)),
        ("dns1123 subdomain", dns1123_subdomain_problem(s), is_subdomain(s)),
        ("qualified name", qualified_name_problem(s), is_qualified_name(s)),
        ("label value", label_value_problem(s), is_label_value(s)),
    ];
    for (rule, problem, valid) in rules {
        if problem.is_none() != valid {
            failures.push(Failure::new(
                "name-rule-disagrees",
                format!("{rule} {s:?}: ours says {problem:?}, Kubernetes' expression says valid={valid}"),
            ));
        }
        if problem.as_deref() == Some("") {
            failures.push(Failure::new("empty-message", format!("{rule} {s:?}")));
        }
    }
}

fn remote_name(u: &mut Unstructured<'_>, failures: &mut Vec<Failure>) -> Result<()> {
    let strategy = match u.int_in_range(0u8..=3)? {
        0 => NamespaceMappingStrategy::DefaultName,
        1 => NamespaceMappingStrategy::EnforceSameName,
        2 => NamespaceMappingStrategy::SelectedName,
        _ => NamespaceMappingStrategy::Unsupported(make::string(u, &["Other", ""])?),
    };
    let namespace = make::string(u, make::NAMES)?;
    let selected = if u.ratio(3u8, 4)? { Some(make::string(u, make::NAMES)?) } else { None };
    let cluster_id = if u.ratio(3u8, 4)? { Some(make::string(u, make::CLUSTER_IDS)?) } else { None };
    // The name each strategy derives, which must be an RFC 1123 label.
    let expected = match &strategy {
        NamespaceMappingStrategy::EnforceSameName => Some(namespace.clone()),
        NamespaceMappingStrategy::SelectedName => selected.clone().filter(|s| !s.is_empty()),
        _ => cluster_id.as_ref().map(|id| format!("{namespace}-{id}")),
    };
    let got = remote_namespace_name(&strategy, &namespace, selected.as_deref(), cluster_id.as_deref());
    let case =
        format!("{strategy:?} namespace {namespace:?} selected {selected:?} cluster id {cluster_id:?}");
    match (&got, &expected) {
        (Ok(name), Some(want)) if name == want && is_label(name) => {}
        (Err(e), Some(want)) if !is_label(want) && !e.to_string().is_empty() => {}
        // A name every cluster has is never Liqo's, so it is refused too.
        (Err(e), Some(want))
            if ["default", "kube-system", "kube-public", "kube-node-lease"].contains(&want.as_str())
                && !e.to_string().is_empty() => {}
        (Err(e), None) if !e.to_string().is_empty() => {}
        _ => failures.push(Failure::new(
            "remote-name-disagrees",
            format!("{case}: got {got:?}, the derivation gives {expected:?}"),
        )),
    }
    Ok(())
}

/// The field paths the contract says are wrong, one per problem.
fn expected_error_paths(sel: &NodeSelector) -> Vec<String> {
    let mut paths = Vec::new();
    for (i, term) in sel.node_selector_terms.iter().enumerate() {
        for (j, r) in term.match_expressions.iter().flatten().enumerate() {
            let p = format!("{SELECTOR_PATH}.nodeSelectorTerms[{i}].matchExpressions[{j}]");
            let values = r.values.as_deref().unwrap_or_default();
            if !is_qualified_name(&r.key) {
                paths.push(format!("{p}.key"));
            }
            match r.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => paths.push(format!("{p}.values")),
                "Exists" | "DoesNotExist" if !values.is_empty() => paths.push(format!("{p}.values")),
                "Gt" | "Lt" if values.len() != 1 => paths.push(format!("{p}.values")),
                "Gt" | "Lt" if values[0].parse::<i64>().is_err() => paths.push(format!("{p}.values[0]")),
                "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
                _ => paths.push(format!("{p}.operator")),
            }
            for (k, v) in values.iter().enumerate() {
                if !is_label_value(v) {
                    paths.push(format!("{p}.values[{k}]"));
                }
            }
        }
        for (j, r) in term.match_fields.iter().flatten().enumerate() {
            let p = format!("{SELECTOR_PATH}.nodeSelectorTerms[{i}].matchFields[{j}]");
            let values = r.values.as_deref().unwrap_or_default();
            if r.key != "metadata.name" {
                paths.push(format!("{p}.key"));
            }
            match r.operator.as_str() {
                "In" | "NotIn" if values.len() != 1 => paths.push(format!("{p}.values")),
                "In" | "NotIn" if !is_subdomain(&values[0]) => paths.push(format!("{p}.values[0]")),
                "In" | "NotIn" => {}
                _ => paths.push(format!("{p}.operator")),
            }
        }
    }
    paths.sort();
    paths
}

/// Whether one requirement holds for a label value (or node name), as NodeSelector defines it.
fn holds(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let int = |want: std::cmp::Ordering| match (value.map(str::parse::<i64>), values) {
        (Some(Ok(v)), [b]) => b.parse::<i64>().is_ok_and(|b| v.cmp(&b) == want),
        _ => false,
    };
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => int(std::cmp::Ordering::Greater),
        "Lt" => int(std::cmp::Ordering::Less),
        _ => false,
    }
}

/// NodeSelector semantics, with Liqo's reading of an empty selector: terms are ORed, an empty term
/// matches nothing, no terms select every cluster.
fn expected_match(sel: &NodeSelector, name: &str, labels: &BTreeMap<String, String>) -> bool {
    sel.node_selector_terms.is_empty()
        || sel.node_selector_terms.iter().any(|t| {
            let exprs = t.match_expressions.as_deref().unwrap_or_default();
            let fields = t.match_fields.as_deref().unwrap_or_default();
            !(exprs.is_empty() && fields.is_empty())
                && exprs.iter().all(|r| holds(r, labels.get(&r.key).map(String::as_str)))
                && fields.iter().all(|r| r.key == "metadata.name" && holds(r, Some(name)))
        })
}

fn selector(u: &mut Unstructured<'_>, failures: &mut Vec<Failure>) -> Result<()> {
    let value = make::selector(u, 4)?;
    let sel: NodeSelector = match serde_json::from_value(value.clone()) {
        Ok(s) => s,
        Err(e) => {
            failures.push(Failure::new("generator", format!("{e}: {value}")));
            return Ok(());
        }
    };
    let errors = validate(&sel);
    let mut got: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
    got.sort();
    let want = expected_error_paths(&sel);
    if got != want {
        failures.push(Failure::new(
            "selector-errors-disagree",
            format!("{}: ours {got:?}, the contract gives {want:?}", super::check::short(&value)),
        ));
    }
    for e in &errors {
        let message = e.to_string();
        if !message.starts_with(&format!("{}: ", e.path)) || message.len() <= e.path.len() + 2 {
            failures.push(Failure::new("selector-message", message));
        }
    }
    // Matching is defined for valid selectors only (an invalid one is denied before it is matched).
    if !errors.is_empty() {
        return Ok(());
    }
    let mut labels = BTreeMap::new();
    for _ in 0..u.int_in_range(0u8..=4)? {
        labels.insert(make::string(u, make::KEYS)?, make::string(u, make::VALUES)?);
    }
    // Reuse the selector's own keys and values, so that requirements hold as often as not.
    for term in &sel.node_selector_terms {
        for r in term.match_expressions.iter().flatten() {
            if u.ratio(1u8, 2)? {
                let v = r.values.as_deref().unwrap_or_default().first().cloned().unwrap_or_default();
                labels.insert(r.key.clone(), v);
            }
        }
    }
    let name = make::string(u, make::NAMES)?;
    let node = NodeFacts { name: &name, labels: &labels };
    let explained = explain(Some(&sel), &node);
    let want = expected_match(&sel, &name, &labels);
    let case = || format!("{} on node {name:?} labels {labels:?}", super::check::short(&value));
    if explained.is_ok() != want || matches(Some(&sel), &node) != want {
        failures.push(Failure::new("selector-match-disagrees", format!("{}: want {want}", case())));
    }
    if let Err(misses) = &explained
        && misses.len() != sel.node_selector_terms.len()
    {
        failures.push(Failure::new(
            "explain-term-count",
            format!("{}: {} misses for {} terms", case(), misses.len(), sel.node_selector_terms.len()),
        ));
    }
    Ok(())
}

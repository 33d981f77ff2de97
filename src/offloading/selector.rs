//! The clusterSelector: a core/v1 NodeSelector judged against the labels of virtual nodes.
//!
//! Validation is eager and complete (every problem of every term, docs/behaviour.md "Malformed clusterSelector"); matching follows
//! Kubernetes' NodeSelector semantics, except that an absent selector or one with no terms
//! selects every remote cluster, as Liqo does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};

use std::fmt::Display;

use super::field::{FieldError, RuleId, quoted};
use super::names::{dns1123_subdomain_problem, label_value_problem, qualified_name_problem};

pub const SELECTOR_PATH: &str = "spec.clusterSelector";
pub const OPERATORS: [&str; 6] = ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"];
pub const FIELD_OPERATORS: [&str; 2] = ["In", "NotIn"];
/// The only field a matchFields requirement may name.
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// Limits far above what any real selector needs (Kubernetes' DRA device selectors stop at 32;
/// 256 values name every cluster of a large fleet). Past them a selector is refused with `Too many`
/// before any per-value work, so one review cannot make the webhook do unbounded work.
pub const MAX_TERMS: usize = 32;
pub const MAX_REQUIREMENTS_PER_TERM: usize = 32;
pub const MAX_VALUES_PER_REQUIREMENT: usize = 256;
pub const MAX_VALUES: usize = 1024;

/// `Too many` errors for lists over the limits; empty when the selector is within them.
pub fn too_many(selector: &NodeSelector) -> Vec<FieldError> {
    let terms = &selector.node_selector_terms;
    if terms.len() > MAX_TERMS {
        return vec![too_many_terms(terms.len())];
    }
    let mut errors = Vec::new();
    let mut total = 0usize;
    for (i, term) in terms.iter().enumerate() {
        let lists = [("matchExpressions", &term.match_expressions), ("matchFields", &term.match_fields)];
        for (name, reqs) in lists {
            let reqs = reqs.as_deref().unwrap_or_default();
            if reqs.len() > MAX_REQUIREMENTS_PER_TERM {
                errors.push(too_many_requirements(&term_path(i), name, reqs.len()));
                continue;
            }
            for (j, req) in reqs.iter().enumerate() {
                let n = req.values.as_ref().map_or(0, Vec::len);
                total += n;
                if n > MAX_VALUES_PER_REQUIREMENT {
                    errors.push(too_many_values(&requirement_path(&term_path(i), name, j), n));
                }
            }
        }
    }
    if errors.is_empty() && total > MAX_VALUES {
        errors.push(too_many_total(total));
    }
    errors
}

/// `spec.clusterSelector.nodeSelectorTerms`.
pub const TERMS_PATH: &str = "spec.clusterSelector.nodeSelectorTerms";

/// The path of term `i`.
pub(crate) fn term_path(i: impl Display) -> String {
    format!("{TERMS_PATH}[{i}]")
}

/// The path of requirement `j` of a term's `list` (`matchExpressions` or `matchFields`).
pub(crate) fn requirement_path(term_path: &str, list: &str, j: impl Display) -> String {
    format!("{term_path}.{list}[{j}]")
}

/// [`requirement_path`] of requirement `index` of term `term`, written out only when an error
/// names it: a valid selector's review then formats no path at all.
#[derive(Debug, Clone, Copy)]
struct RequirementPath {
    term: usize,
    list: &'static str,
    index: usize,
}

impl Display for RequirementPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{TERMS_PATH}[{}].{}[{}]", self.term, self.list, self.index)
    }
}

pub(crate) fn too_many_terms(actual: usize) -> FieldError {
    FieldError::too_many(TERMS_PATH, actual, MAX_TERMS)
}

pub(crate) fn too_many_requirements(term_path: &str, list: &str, actual: usize) -> FieldError {
    FieldError::too_many(format!("{term_path}.{list}"), actual, MAX_REQUIREMENTS_PER_TERM)
}

pub(crate) fn too_many_values(requirement_path: &str, actual: usize) -> FieldError {
    FieldError::too_many(format!("{requirement_path}.values"), actual, MAX_VALUES_PER_REQUIREMENT)
}

pub(crate) fn too_many_total(actual: usize) -> FieldError {
    FieldError::too_many(format!("{TERMS_PATH}[*].values (all terms together)"), actual, MAX_VALUES)
}

/// Every syntax problem of the selector, each with its field path. A selector over the limits of
/// [`too_many`] gets only those errors.
pub fn validate(selector: &NodeSelector) -> Vec<FieldError> {
    let mut errors = too_many(selector);
    if !errors.is_empty() {
        return errors;
    }
    for (term, t) in selector.node_selector_terms.iter().enumerate() {
        for (index, req) in t.match_expressions.iter().flatten().enumerate() {
            let path = RequirementPath { term, list: "matchExpressions", index };
            validate_expression(req, path, &mut errors);
        }
        for (index, req) in t.match_fields.iter().flatten().enumerate() {
            validate_field(req, RequirementPath { term, list: "matchFields", index }, &mut errors);
        }
    }
    errors
}

fn validate_expression(req: &NodeSelectorRequirement, path: RequirementPath, errors: &mut Vec<FieldError>) {
    if let Some(problem) = qualified_name_problem(&req.key) {
        errors.push(key_error(path, &req.key, problem));
    }
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" | "NotIn" => {
            if values.is_empty() {
                errors.push(values_required(path, &req.operator));
            }
        }
        "Exists" | "DoesNotExist" => {
            if !values.is_empty() {
                errors.push(values_forbidden(path, &req.operator));
            }
        }
        "Gt" | "Lt" => {
            if values.len() != 1 {
                errors.push(single_value(path, &req.operator, values.len()));
            } else if values[0].parse::<i64>().is_err() {
                errors.push(not_integer(path, &values[0], &req.operator));
            }
        }
        other => errors.push(unsupported_operator(path, other)),
    }
    for (k, v) in values.iter().enumerate() {
        if let Some(problem) = label_value_problem(v) {
            errors.push(label_value(path, k, v, problem));
        }
    }
}

// One constructor per rule, shared with the ValidatingAdmissionPolicy generator (`crate::policy`),
// which renders them with placeholders to build its messages: the words cannot drift apart.
// `path` is the requirement's path, e.g. `spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[1]`.

pub(crate) fn key_error(path: impl Display, key: &str, problem: impl Into<String>) -> FieldError {
    FieldError::invalid(RuleId::SelectorKey, format!("{path}.key"), key, problem)
}

pub(crate) fn values_required(path: impl Display, operator: &str) -> FieldError {
    FieldError::required(
        RuleId::SelectorValuesRequired,
        format!("{path}.values"),
        format!("must be specified when `operator` is {operator:?}: list the label values to match"),
    )
}

pub(crate) fn values_forbidden(path: impl Display, operator: &str) -> FieldError {
    FieldError::forbidden(
        RuleId::SelectorValuesForbidden,
        format!("{path}.values"),
        format!("may not be specified when `operator` is {operator:?}: remove the values"),
    )
}

pub(crate) fn single_value(path: impl Display, operator: &str, got: impl Display) -> FieldError {
    FieldError::required(
        RuleId::SelectorSingleValue,
        format!("{path}.values"),
        format!("must be specified single value when `operator` is {operator:?} (got {got})"),
    )
}

pub(crate) fn not_integer(path: impl Display, value: &str, operator: &str) -> FieldError {
    FieldError::invalid(
        RuleId::SelectorInteger,
        format!("{path}.values[0]"),
        value,
        format!("must be an integer when `operator` is {operator:?}"),
    )
}

pub(crate) fn unsupported_operator(path: impl Display, operator: &str) -> FieldError {
    FieldError::unsupported(RuleId::SelectorOperator, format!("{path}.operator"), operator, &OPERATORS)
}

pub(crate) fn label_value(
    path: impl Display,
    index: impl Display,
    value: &str,
    problem: impl Into<String>,
) -> FieldError {
    FieldError::invalid(RuleId::SelectorLabelValue, format!("{path}.values[{index}]"), value, problem)
}

pub(crate) fn field_key(path: impl Display, key: &str) -> FieldError {
    FieldError::unsupported(RuleId::FieldKey, format!("{path}.key"), key, &[NODE_NAME_FIELD])
}

pub(crate) fn field_operator(path: impl Display, operator: &str) -> FieldError {
    FieldError::unsupported(RuleId::FieldOperator, format!("{path}.operator"), operator, &FIELD_OPERATORS)
}

pub(crate) fn field_single_value(path: impl Display, operator: &str, got: impl Display) -> FieldError {
    FieldError::required(
        RuleId::FieldSingleValue,
        format!("{path}.values"),
        format!(
            "must be only one value when `operator` is {operator:?} for a node field selector (got {got})"
        ),
    )
}

pub(crate) fn field_node_name(path: impl Display, value: &str, problem: impl Into<String>) -> FieldError {
    FieldError::invalid(RuleId::FieldNodeName, format!("{path}.values[0]"), value, problem)
}

/// The eager rule (Liqo v0.3, and this project's own reconcile loop): a matchFields requirement
/// names `metadata.name`, with In or NotIn and one value that is a node name.
fn validate_field(req: &NodeSelectorRequirement, path: RequirementPath, errors: &mut Vec<FieldError>) {
    if req.key != NODE_NAME_FIELD {
        errors.push(field_key(path, &req.key));
    }
    let parse = field_parse_errors(req, path);
    let parsed = parse.is_empty();
    errors.extend(parse);
    if parsed {
        let values = req.values.as_deref().unwrap_or_default();
        if let Some(problem) = dns1123_subdomain_problem(&values[0]) {
            errors.push(field_node_name(path, &values[0], problem));
        }
    }
}

/// What k8s.io/component-helpers' node field selector refuses (`nodeSelectorRequirementsAsFieldSelector`,
/// the matcher of Liqo v1.x): an operator other than In and NotIn, or not exactly one value. It
/// checks neither the key nor the value.
fn field_parse_errors(req: &NodeSelectorRequirement, path: RequirementPath) -> Vec<FieldError> {
    let values = req.values.as_deref().unwrap_or_default();
    if !FIELD_OPERATORS.contains(&req.operator.as_str()) {
        return vec![field_operator(path, &req.operator)];
    }
    if values.len() != 1 {
        return vec![field_single_value(path, &req.operator, values.len())];
    }
    Vec::new()
}

/// Every parse error of one term as Liqo v1.x's matcher sees it (labels as `labels.NewRequirement`
/// checks them, fields as [`field_parse_errors`]).
fn term_parse_errors(t: &NodeSelectorTerm, term: usize) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (index, req) in t.match_expressions.iter().flatten().enumerate() {
        validate_expression(req, RequirementPath { term, list: "matchExpressions", index }, &mut errors);
    }
    for (index, req) in t.match_fields.iter().flatten().enumerate() {
        errors.extend(field_parse_errors(req, RequirementPath { term, list: "matchFields", index }));
    }
    errors
}

/// A selector as Liqo v1.x reads it. Liqo v1.2 matches with k8s.io/component-helpers'
/// `LazyErrorNodeSelector` (v0.35.2), per virtual node: empty terms are skipped, a term with a
/// parse error is skipped too, and its errors are reported only when no other term matches that
/// node; one node with such errors makes Liqo's controller emit `Invalid` and select no cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LazyReading {
    /// Index of each term with parse errors, and those errors.
    pub broken: Vec<(usize, Vec<FieldError>)>,
    /// Indexes of the non-empty terms without parse errors.
    pub well_formed: Vec<usize>,
    /// matchFields requirements Liqo accepts that can never mean anything, as warnings.
    pub meaningless: Vec<String>,
}

impl LazyReading {
    /// Whether every non-empty term is broken (and one is): Liqo fails on every virtual node.
    pub fn all_broken(&self) -> bool {
        !self.broken.is_empty() && self.well_formed.is_empty()
    }

    /// Every parse error, term by term.
    pub fn errors(&self) -> Vec<FieldError> {
        self.broken.iter().flat_map(|(_, e)| e.iter().cloned()).collect()
    }
}

/// Reads `selector` as Liqo v1.x does.
pub fn read_lazily(selector: &NodeSelector) -> LazyReading {
    let mut r = LazyReading::default();
    for (i, term) in selector.node_selector_terms.iter().enumerate() {
        if is_empty_term(term) {
            continue;
        }
        let errors = term_parse_errors(term, i);
        if errors.is_empty() {
            r.well_formed.push(i);
            for (index, req) in term.match_fields.iter().flatten().enumerate() {
                if let Some(w) =
                    meaningless_field(req, RequirementPath { term: i, list: "matchFields", index })
                {
                    r.meaningless.push(w);
                }
            }
        } else {
            r.broken.push((i, errors));
        }
    }
    r
}

/// A parsed matchFields requirement that compares something no node has. The node offers one
/// field, `metadata.name`; any other key reads as "" (fields.Set.Get), and no node is named
/// something that is not a node name.
fn meaningless_field(req: &NodeSelectorRequirement, path: RequirementPath) -> Option<String> {
    let value = req.values.as_deref().unwrap_or_default().first()?;
    let not_in = req.operator == "NotIn";
    if req.key != NODE_NAME_FIELD {
        // Liqo compares "" with the value.
        let holds = if value.is_empty() { !not_in } else { not_in };
        return Some(format!(
            "{path}.key: {} is not a node field (only \"metadata.name\" is): Liqo accepts it but \
             compares an empty string with {}, so this requirement {}; use matchExpressions \
             on a cluster label, or key metadata.name",
            quoted(&req.key),
            quoted(value),
            if holds {
                "always holds and restricts nothing"
            } else {
                "never holds and its term matches no cluster"
            }
        ));
    }
    let problem = dns1123_subdomain_problem(value)?;
    Some(format!(
        "{path}.values[0]: {} is not a node name ({problem}): no virtual node is named so, so \
         this requirement {}; give the name of a virtual node (kubectl get nodes -l liqo.io/type=virtual-node)",
        quoted(value),
        if not_in {
            "always holds and excludes nothing"
        } else {
            "never holds and its term matches no cluster"
        }
    ))
}

/// Whether Liqo v1.x's matcher parses the term (an empty one does).
pub(super) fn term_parses(term: &NodeSelectorTerm) -> bool {
    term_parse_errors(term, 0).is_empty()
}

/// Whether one term, as Liqo reads it, selects the node (a broken or empty term never does).
fn term_matches_lazily(term: &NodeSelectorTerm, node: &NodeFacts<'_>) -> bool {
    !is_empty_term(term) && term_parses(term) && term_unmet(term, 0, node).is_none()
}

/// Liqo v1.x's match: no terms selects every cluster; otherwise a well-formed term must match.
pub fn matches_lazily(selector: Option<&NodeSelector>, node: &NodeFacts<'_>) -> bool {
    // Liqo's controller reads an absent selector as a zero NodeSelector: every cluster (the
    // webhook denies it on v1.x for another reason, the write of the finalizer).
    let Some(selector) = selector else { return true };
    selector.node_selector_terms.is_empty()
        || selector.node_selector_terms.iter().any(|t| term_matches_lazily(t, node))
}

/// Terms that can match nothing (`{}`): legal, but almost always a mistake.
pub fn empty_terms(selector: &NodeSelector) -> Vec<usize> {
    selector
        .node_selector_terms
        .iter()
        .enumerate()
        .filter(|(_, t)| is_empty_term(t))
        .map(|(i, _)| i)
        .collect()
}

pub(super) fn is_empty_term(t: &NodeSelectorTerm) -> bool {
    t.match_expressions.as_deref().unwrap_or_default().is_empty()
        && t.match_fields.as_deref().unwrap_or_default().is_empty()
}

/// What a virtual node offers the selector: its name and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// Why one requirement did not hold for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet {
    /// Field path of the requirement, e.g. `spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[1]`.
    pub path: String,
    /// e.g. `topology.liqo.io/region In [eu-west]`.
    pub requirement: String,
    /// e.g. `the node's label topology.liqo.io/region is "us-east"`.
    pub found: String,
}

/// Whether a (valid) selector selects the node: `Ok(())`, or for each term the first requirement
/// that failed (`None` for an empty term, which matches nothing).
pub fn explain(selector: Option<&NodeSelector>, node: &NodeFacts<'_>) -> Result<(), Vec<Option<Unmet>>> {
    let Some(selector) = selector else { return Ok(()) };
    if selector.node_selector_terms.is_empty() {
        return Ok(());
    }
    let mut misses = Vec::new();
    for (i, term) in selector.node_selector_terms.iter().enumerate() {
        match term_unmet(term, i, node) {
            None => return Ok(()),
            Some(unmet) => misses.push(unmet),
        }
    }
    Err(misses)
}

/// Whether a (valid) selector selects the node.
pub fn matches(selector: Option<&NodeSelector>, node: &NodeFacts<'_>) -> bool {
    explain(selector, node).is_ok()
}

/// `None` when the term matches; `Some(None)` for an empty term; `Some(Some(first failure))`.
fn term_unmet(term: &NodeSelectorTerm, i: usize, node: &NodeFacts<'_>) -> Option<Option<Unmet>> {
    if is_empty_term(term) {
        return Some(None);
    }
    let term_path = format!("{SELECTOR_PATH}.nodeSelectorTerms[{i}]");
    for (j, req) in term.match_expressions.iter().flatten().enumerate() {
        let value = node.labels.get(&req.key).map(String::as_str);
        if !requirement_holds(req, value) {
            let found = match value {
                Some(v) => format!("the node's label {} is {v:?}", req.key),
                None => format!("the node has no label {}", req.key),
            };
            return Some(Some(Unmet {
                path: format!("{term_path}.matchExpressions[{j}]"),
                requirement: describe(req),
                found,
            }));
        }
    }
    for (j, req) in term.match_fields.iter().flatten().enumerate() {
        // A node has one field; any other key reads as "", as in fields.Set.Get.
        let field = if req.key == NODE_NAME_FIELD { node.name } else { "" };
        if !requirement_holds(req, Some(field)) {
            return Some(Some(Unmet {
                path: format!("{term_path}.matchFields[{j}]"),
                requirement: describe(req),
                found: format!("the node's name is {:?}", node.name),
            }));
        }
    }
    None
}

/// Whether the requirement holds for a node whose label (or field) reads `value`.
pub(super) fn requirement_holds(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let int_cmp = |want_greater: bool| {
        let (Some(v), [bound]) = (value, values) else { return false };
        match (v.parse::<i64>(), bound.parse::<i64>()) {
            (Ok(v), Ok(b)) => {
                if want_greater {
                    v > b
                } else {
                    v < b
                }
            }
            _ => false,
        }
    };
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => int_cmp(true),
        "Lt" => int_cmp(false),
        _ => false,
    }
}

fn describe(req: &NodeSelectorRequirement) -> String {
    let values = req.values.as_deref().unwrap_or_default();
    if values.is_empty() {
        format!("{} {}", req.key, req.operator)
    } else {
        format!("{} {} [{}]", req.key, req.operator, values.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn selector(v: serde_json::Value) -> NodeSelector {
        serde_json::from_value(json!({ "nodeSelectorTerms": v })).unwrap()
    }

    fn messages(s: &NodeSelector) -> Vec<String> {
        validate(s).iter().map(ToString::to_string).collect()
    }

    /// The path written only for an error reads as the one the policy generator writes.
    #[test]
    fn a_requirement_path_written_late_reads_as_written_early() {
        let late = RequirementPath { term: 2, list: "matchFields", index: 11 };
        assert_eq!(late.to_string(), requirement_path(&term_path(2), "matchFields", 11));
        assert_eq!(late.to_string(), "spec.clusterSelector.nodeSelectorTerms[2].matchFields[11]");
    }

    #[test]
    fn valid_selector_has_no_errors() {
        let s = selector(json!([
            {"matchExpressions": [
                {"key": "topology.liqo.io/region", "operator": "In", "values": ["eu-west"]},
                {"key": "gpu", "operator": "Exists"},
                {"key": "cores", "operator": "Gt", "values": ["8"]}],
             "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["vk-a"]}]}
        ]));
        assert!(validate(&s).is_empty());
    }

    #[test]
    fn every_rule_has_its_message_and_path() {
        let s = selector(json!([
            {"matchExpressions": [
                {"key": "region", "operator": "In", "values": ["eu"]},
                {"key": "region", "operator": "Equals", "values": ["eu"]},
                {"key": "region", "operator": "In"},
                {"key": "region", "operator": "Exists", "values": ["x"]},
                {"key": "cores", "operator": "Gt", "values": ["1", "2"]},
                {"key": "cores", "operator": "Lt", "values": ["many"]},
                {"key": "bad key", "operator": "Exists"},
                {"key": "region", "operator": "NotIn", "values": ["eu west"]}]},
            {"matchFields": [
                {"key": "metadata.labels", "operator": "In", "values": ["a"]},
                {"key": "metadata.name", "operator": "Exists"},
                {"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]}
        ]));
        let p = "spec.clusterSelector.nodeSelectorTerms";
        assert_eq!(
            messages(&s),
            vec![
                format!(
                    r#"{p}[0].matchExpressions[1].operator: Unsupported value: "Equals": supported values: "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt""#
                ),
                format!(
                    r#"{p}[0].matchExpressions[2].values: Required value: must be specified when `operator` is "In": list the label values to match"#
                ),
                format!(
                    r#"{p}[0].matchExpressions[3].values: Forbidden: may not be specified when `operator` is "Exists": remove the values"#
                ),
                format!(
                    r#"{p}[0].matchExpressions[4].values: Required value: must be specified single value when `operator` is "Gt" (got 2)"#
                ),
                format!(
                    r#"{p}[0].matchExpressions[5].values[0]: Invalid value: "many": must be an integer when `operator` is "Lt""#
                ),
                format!(
                    r#"{p}[0].matchExpressions[6].key: Invalid value: "bad key": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345')"#
                ),
                format!(
                    r#"{p}[0].matchExpressions[7].values[0]: Invalid value: "eu west": a valid label value must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345')"#
                ),
                format!(
                    r#"{p}[1].matchFields[0].key: Unsupported value: "metadata.labels": supported values: "metadata.name""#
                ),
                format!(
                    r#"{p}[1].matchFields[1].operator: Unsupported value: "Exists": supported values: "In", "NotIn""#
                ),
                format!(
                    r#"{p}[1].matchFields[2].values: Required value: must be only one value when `operator` is "In" for a node field selector (got 2)"#
                ),
            ]
        );
    }

    #[test]
    fn lists_past_the_limits_are_refused_before_any_value_is_judged() {
        let bad: Vec<String> = (0..100_000).map(|i| format!("bad value {i}")).collect();
        let s = selector(json!([{"matchExpressions": [{"key": "region", "operator": "In", "values": bad}]}]));
        assert_eq!(
            messages(&s),
            vec![
                "spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].values: Too many: 100000: must have at most 256 items"
            ]
        );
        let terms: Vec<serde_json::Value> =
            (0..33).map(|_| json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]})).collect();
        assert_eq!(
            messages(&selector(json!(terms))),
            vec!["spec.clusterSelector.nodeSelectorTerms: Too many: 33: must have at most 32 items"]
        );
        let values: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
        let term = json!({"matchExpressions": [{"key": "a", "operator": "In", "values": values}]});
        let six: Vec<serde_json::Value> = (0..6).map(|_| term.clone()).collect();
        assert_eq!(
            messages(&selector(json!(six))),
            vec![
                "spec.clusterSelector.nodeSelectorTerms[*].values (all terms together): Too many: 1200: must have at most 1024 items"
            ]
        );
        let at_limit: Vec<String> = (0..256).map(|i| format!("v{i}")).collect();
        let ok =
            selector(json!([{"matchExpressions": [{"key": "a", "operator": "In", "values": at_limit}]}]));
        assert!(validate(&ok).is_empty());
    }

    #[test]
    fn matching_follows_node_selector_semantics() {
        let labels: BTreeMap<String, String> =
            [("region".to_string(), "eu".to_string()), ("cores".to_string(), "16".to_string())].into();
        let node = NodeFacts { name: "vk-a", labels: &labels };
        let m = |v| matches(Some(&selector(v)), &node);
        assert!(matches(None, &node));
        assert!(m(json!([])));
        assert!(m(
            json!([{"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu", "us"]}]}])
        ));
        assert!(!m(
            json!([{"matchExpressions": [{"key": "region", "operator": "NotIn", "values": ["eu"]}]}])
        ));
        assert!(m(json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}])));
        assert!(m(json!([{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}])));
        assert!(!m(json!([{"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["8"]}]}])));
        assert!(m(json!([{"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}])));
        assert!(m(
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["vk-a"]}]}])
        ));
        // Terms are ORed; an empty term matches nothing.
        assert!(!m(json!([{}])));
        assert!(m(json!([{}, {"matchExpressions": [{"key": "region", "operator": "Exists"}]}])));
    }

    #[test]
    fn explain_names_the_failed_requirement_per_term() {
        let labels: BTreeMap<String, String> = [("region".to_string(), "us".to_string())].into();
        let node = NodeFacts { name: "vk-a", labels: &labels };
        let s = selector(json!([
            {"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu"]}]},
            {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]},
            {}
        ]));
        let misses = explain(Some(&s), &node).unwrap_err();
        assert_eq!(misses.len(), 3);
        let first = misses[0].as_ref().unwrap();
        assert_eq!(first.path, "spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0]");
        assert_eq!(first.requirement, "region In [eu]");
        assert_eq!(first.found, "the node's label region is \"us\"");
        assert_eq!(misses[1].as_ref().unwrap().found, "the node has no label gpu");
        assert_eq!(misses[2], None);
        assert_eq!(empty_terms(&s), vec![2]);
    }
}

//! The webhook's static rules as a ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1,
//! GA since Kubernetes 1.30), generated from the rule table ([`table`]) and the webhook's own
//! message constructors, so that the two cannot drift apart.
//!
//! One policy and two bindings:
//! - `<name>` checks every rule that needs nothing but the object (validation 1);
//! - `<name>-cluster-id` takes Liqo's cluster-id ConfigMap as parameter and checks the DefaultName
//!   remote name against 63 characters (validation 2). Its `parameterNotFoundAction: Allow` skips
//!   only that check while the ConfigMap is missing, as the webhook then only warns; the first
//!   binding still checks the rest (a binding whose parameter is missing checks nothing at all).
//!
//! With `--cluster-id`, the id is written into the policy and one binding does both.
//!
//! Left to the webhook: the rules that depend on the virtual nodes known now (on Liqo v1.x, a
//! malformed term beside well-formed ones), warnings, and the annotation the mutating webhook sets.

pub mod cel;
pub mod table;

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, NamedRuleWithOperations, ParamKind, ParamRef, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec,
    Validation, Variable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};

use crate::liqo::{
    CLUSTER_ID_KEY, ConfigMapLookup, NAMESPACE_OFFLOADINGS as RESOURCE, OFFLOADING_GROUP as GROUP,
    OFFLOADING_VERSIONS as VERSIONS, WEBHOOK_SKIP_LABEL,
};
use crate::offloading::field::{MAX_LISTED_ERRORS, RuleId, and_more};
use crate::offloading::names::MAX_LABEL_LEN;
use crate::offloading::rules::Generation;
use crate::offloading::selector::{MAX_REQUIREMENTS_PER_TERM, MAX_TERMS};

use cel::{NUMBERS, Slot, bind, byte_len, flatten, lit, range};
use table::{
    Check, RULES, Scope, field_list, label_problem, object_records, requirement_path, requirement_records,
};

/// How the terms are split among variables: CEL limits the cost of each expression
/// (`PerCallLimit`, 1 000 000), and the largest selector the webhook accepts (32 terms of 64
/// requirements with long keys) costs about that much in one piece.
const TERMS_PER_CHUNK: usize = 8;

/// What `offloading-webhook policy` prints.
#[derive(Debug, Clone)]
pub struct Options {
    /// The Liqo generation whose rules apply.
    pub generation: Generation,
    /// The policy's name, and its bindings' (`<name>`, `<name>-cluster-id`).
    pub name: String,
    /// The bindings' `validationActions`: `Deny`, or `Warn` and/or `Audit` for an audit rollout.
    pub validation_actions: Vec<String>,
    /// The namespace of Liqo's cluster-id ConfigMap.
    pub liqo_namespace: String,
    /// The local cluster id, written into the policy instead of read from Liqo's ConfigMap.
    pub cluster_id: Option<String>,
    /// Namespaces the policy leaves alone, besides kube-system.
    pub exclude_namespaces: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            generation: Generation::V0_3,
            name: "offloading-webhook".into(),
            validation_actions: vec!["Deny".into()],
            liqo_namespace: "liqo".into(),
            cluster_id: None,
            exclude_namespaces: Vec::new(),
        }
    }
}

/// Why the options make no policy.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error(
        "--validation-actions {0}: Deny and Warn may not be used together (the API server refuses the binding): use Deny, or Warn,Audit for an audit rollout"
    )]
    DenyAndWarn(String),
    #[error("--validation-actions {0:?} is not one of Deny, Warn, Audit")]
    UnknownAction(String),
    #[error("--validation-actions is empty: use Deny, or Warn,Audit for an audit rollout")]
    NoAction,
}

/// The policy and its bindings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub policy: ValidatingAdmissionPolicy,
    pub bindings: Vec<ValidatingAdmissionPolicyBinding>,
}

/// Which objects `to_yaml` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Part {
    #[default]
    All,
    Policy,
    Bindings,
}

/// Builds the policy and its bindings.
pub fn build(opts: &Options) -> Result<Policy, PolicyError> {
    check_actions(&opts.validation_actions)?;
    let params = opts.cluster_id.is_none();
    let labels: BTreeMap<String, String> = [
        ("app.kubernetes.io/name".to_owned(), "offloading-webhook".to_owned()),
        ("app.kubernetes.io/component".to_owned(), "validating-admission-policy".to_owned()),
    ]
    .into();
    let annotations: BTreeMap<String, String> =
        [("offloading.liqo.io/liqo-api".to_owned(), opts.generation.as_str().to_owned())].into();
    let meta = |name: String| ObjectMeta {
        name: Some(name),
        labels: Some(labels.clone()),
        annotations: Some(annotations.clone()),
        ..Default::default()
    };
    let policy = ValidatingAdmissionPolicy {
        metadata: meta(opts.name.clone()),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".into()),
            param_kind: params
                .then(|| ParamKind { api_version: Some("v1".into()), kind: Some("ConfigMap".into()) }),
            match_constraints: Some(match_constraints(&opts.exclude_namespaces)),
            variables: Some(variables(opts)),
            validations: Some(validations(params)),
            ..Default::default()
        }),
        status: None,
    };
    let binding = |name: String, param_ref: Option<ParamRef>| ValidatingAdmissionPolicyBinding {
        metadata: meta(name),
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: opts.name.clone(),
            validation_actions: opts.validation_actions.clone(),
            param_ref,
            match_resources: None,
        },
    };
    let mut bindings = vec![binding(opts.name.clone(), None)];
    if params {
        bindings.push(binding(format!("{}-cluster-id", opts.name), Some(param_ref(opts))));
    }
    Ok(Policy { policy, bindings })
}

fn check_actions(actions: &[String]) -> Result<(), PolicyError> {
    if actions.is_empty() {
        return Err(PolicyError::NoAction);
    }
    if let Some(a) = actions.iter().find(|a| !["Deny", "Warn", "Audit"].contains(&a.as_str())) {
        return Err(PolicyError::UnknownAction(a.clone()));
    }
    if actions.iter().any(|a| a == "Deny") && actions.iter().any(|a| a == "Warn") {
        return Err(PolicyError::DenyAndWarn(actions.join(",")));
    }
    Ok(())
}

/// Liqo's cluster-id ConfigMap: by name on Liqo v0.3, by label on v1.x (as each finds it).
fn param_ref(opts: &Options) -> ParamRef {
    let (name, selector) = match opts.generation.names().cluster_id_configmap {
        ConfigMapLookup::ByName(name) => (Some(name.to_owned()), None),
        ConfigMapLookup::ByLabel(selector) => {
            let (k, v) = selector.split_once('=').unwrap_or((selector, ""));
            let labels: BTreeMap<String, String> = [(k.to_owned(), v.to_owned())].into();
            (None, Some(LabelSelector { match_labels: Some(labels), match_expressions: None }))
        }
    };
    ParamRef {
        name,
        namespace: Some(opts.liqo_namespace.clone()),
        selector,
        parameter_not_found_action: Some("Allow".into()),
    }
}

/// CREATE and UPDATE of NamespaceOffloadings in both Liqo versions, as the webhook is registered:
/// not in kube-system, not for objects labelled `liqo.io/webhook-skip=true`.
fn match_constraints(excluded: &[String]) -> MatchResources {
    let mut namespaces = vec!["kube-system".to_owned()];
    namespaces.extend(excluded.iter().cloned());
    let not_in = |key: &str, values: Vec<String>| LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: key.to_owned(),
            operator: "NotIn".into(),
            values: Some(values),
        }]),
        match_labels: None,
    };
    MatchResources {
        match_policy: Some("Equivalent".into()),
        namespace_selector: Some(not_in("kubernetes.io/metadata.name", namespaces)),
        object_selector: Some(not_in(WEBHOOK_SKIP_LABEL, vec!["true".into()])),
        resource_rules: Some(vec![NamedRuleWithOperations {
            api_groups: Some(vec![GROUP.to_owned()]),
            api_versions: Some(VERSIONS.iter().map(|v| (*v).to_owned()).collect()),
            operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
            resources: Some(vec![RESOURCE.to_owned()]),
            scope: Some("Namespaced".into()),
            resource_names: None,
        }]),
        exclude_resource_rules: None,
    }
}

/// What a denial says when its list of problems is longer than a policy message may be (5 KiB).
pub const FALLBACK_MESSAGE: &str = "the NamespaceOffloading breaks the rules of offloading-webhook, and the \
     list of problems is longer than a policy's message may be: fix the first problems (kubectl apply \
     --dry-run=server shows them again), or see the webhook's answer";

fn validations(params: bool) -> Vec<Validation> {
    let validation = |ok: String| Validation {
        message_expression: Some(format!("{ok} ? '' : variables.message")),
        expression: ok,
        message: Some(FALLBACK_MESSAGE.into()),
        reason: Some("Forbidden".into()),
    };
    if params {
        vec![
            validation("params != null || size(variables.errors) == 0".into()),
            validation("params == null || size(variables.cluster_id_errors) == 0".into()),
        ]
    } else {
        vec![validation("size(variables.errors) == 0 && size(variables.cluster_id_errors) == 0".into())]
    }
}

/// A CEL comment naming the rules an expression checks.
fn comment(ids: &[RuleId]) -> String {
    let names: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
    format!("// rules: {}\n", names.join(", "))
}

fn var(name: &str, expression: String) -> Variable {
    Variable { name: name.to_owned(), expression }
}

/// The records of an Object or Selector rule of the table (it has CEL for this generation).
fn object_rule(id: RuleId, g: Generation) -> String {
    object_records(id, g).unwrap_or_else(|| "[]".into())
}

/// The rules of `scope` the policy checks on generation `g`, in the table's order.
fn rules_of(scope: &[Scope], g: Generation) -> Vec<RuleId> {
    RULES
        .iter()
        .filter(|r| scope.contains(&r.scope) && table::checked_by_policy(r.id, g))
        .map(|r| r.id)
        .collect()
}

/// The records of one requirement of `list` (bound `r`), with `p` and `vs` bound.
fn requirement(list: &str, g: Generation) -> String {
    let scopes: &[Scope] =
        if list == "matchFields" { &[Scope::Field] } else { &[Scope::Expression, Scope::ExpressionValue] };
    let parts: Vec<String> = rules_of(scopes, g)
        .into_iter()
        .filter_map(|id| requirement_records(id, g))
        .map(|c| format!("({c})"))
        .collect();
    bind(&requirement_path(list), "p", &bind("has(r.values) ? r.values : []", "vs", &parts.join(" + ")))
}

/// The records of term `t` (at index `i`), requirement by requirement.
fn term(g: Generation) -> String {
    let list = |name: &str, var_name: &str| {
        bind(
            &field_list("t", name),
            var_name,
            &flatten(
                &format!(
                    "{}.filter(j, j < size({var_name})).map(j, {})",
                    cel::indexes(&format!("size({var_name})"), &[8, MAX_REQUIREMENTS_PER_TERM]),
                    bind(&format!("{var_name}[j]"), "r", &requirement(name, g))
                ),
                MAX_REQUIREMENTS_PER_TERM,
            ),
        )
    };
    format!("{} + {}", list("matchExpressions", "me"), list("matchFields", "mf"))
}

fn chunks() -> usize {
    MAX_TERMS.div_ceil(TERMS_PER_CHUNK)
}

/// Whether term `t` has no requirement (it matches nothing; Liqo v1.x skips it).
fn empty_term(t: &str) -> String {
    format!("size({}) == 0 && size({}) == 0", field_list(t, "matchExpressions"), field_list(t, "matchFields"))
}

fn variables(opts: &Options) -> Vec<Variable> {
    let g = opts.generation;
    let spec_vars = |prefix: &str, obj: &str| {
        vec![
            var(
                &format!("{prefix}ms"),
                format!(
                    "has({obj}.spec.namespaceMappingStrategy) ? {obj}.spec.namespaceMappingStrategy : 'DefaultName'"
                ),
            ),
            var(
                &format!("{prefix}pod"),
                format!(
                    "has({obj}.spec.podOffloadingStrategy) ? {obj}.spec.podOffloadingStrategy : 'LocalAndRemote'"
                ),
            ),
            var(
                &format!("{prefix}remote_set"),
                // type(): `!= null` does not type-check against the schema's string.
                format!(
                    "has({obj}.spec.remoteNamespaceName) && type({obj}.spec.remoteNamespaceName) != null_type"
                ),
            ),
            var(
                &format!("{prefix}remote"),
                format!("variables.{prefix}remote_set ? {obj}.spec.remoteNamespaceName : ''"),
            ),
            var(
                &format!("{prefix}has_terms"),
                format!(
                    "has({obj}.spec.clusterSelector) && type({obj}.spec.clusterSelector) != null_type && has({obj}.spec.clusterSelector.nodeSelectorTerms) && type({obj}.spec.clusterSelector.nodeSelectorTerms) != null_type"
                ),
            ),
            var(
                &format!("{prefix}terms"),
                format!("variables.{prefix}has_terms ? {obj}.spec.clusterSelector.nodeSelectorTerms : []"),
            ),
        ]
    };
    let mut v = vec![var(
        "decodable",
        "// The webhook cannot read an object without spec (Liqo v1.x's CRD does not require it).\nhas(object.spec) && (request.operation != 'UPDATE' || has(oldObject.spec))".into(),
    )];
    v.extend(spec_vars("", "object"));
    v.extend(spec_vars("old_", "oldObject"));
    v.push(var(
        "changed",
        "// An UPDATE is judged only when it changes the spec (as read, defaults included).\nrequest.operation == 'UPDATE' && (variables.ms != variables.old_ms || variables.pod != variables.old_pod || variables.remote_set != variables.old_remote_set || variables.remote != variables.old_remote || variables.has_terms != variables.old_has_terms || variables.terms != variables.old_terms)".into(),
    ));
    v.push(var("judged", "request.operation != 'UPDATE' || variables.changed".into()));
    for (name, id) in [
        ("name", RuleId::Name),
        ("immutable_mapping_strategy", RuleId::ImmutableMappingStrategy),
        ("immutable_remote_namespace_name", RuleId::ImmutableRemoteName),
        ("mapping_strategy", RuleId::MappingStrategy),
        ("pod_offloading_strategy", RuleId::PodOffloadingStrategy),
    ] {
        v.push(var(name, format!("{}{}", comment(&[id]), object_rule(id, g))));
    }
    v.push(var(
        "too_many",
        format!("{}{}", comment(&[RuleId::SelectorTooMany]), object_rule(RuleId::SelectorTooMany, g)),
    ));
    let requirement_ids = rules_of(&[Scope::Expression, Scope::ExpressionValue, Scope::Field], g);
    for c in 0..chunks() {
        let from = c * TERMS_PER_CHUNK;
        v.push(var(
            &format!("terms_{c}"),
            format!(
                "// The records of terms {from} to {}, one list per term.\n{}{}.filter(i, i < size(variables.terms)).map(i, {})",
                from + TERMS_PER_CHUNK - 1,
                comment(&requirement_ids),
                range(from, (from + TERMS_PER_CHUNK).min(MAX_TERMS)),
                bind("variables.terms[i]", "t", &term(g))
            ),
        ));
    }
    let all_terms: Vec<String> = (0..chunks()).map(|c| format!("variables.terms_{c}")).collect();
    let all_terms = all_terms.join(" + ");
    let selector = match g {
        Generation::V0_3 => format!(
            "// Liqo v0.3 reads every term eagerly: any malformed one is an error.\n!variables.has_terms ? [] : size(variables.too_many) > 0 ? variables.too_many : {}",
            flatten(&all_terms, MAX_TERMS)
        ),
        Generation::V1 => {
            let term_at = "variables.terms[i]";
            let broken = format!(
                "{}.exists(i, i < size(tr) && !({}) && size(tr[i]) > 0)",
                range(0, MAX_TERMS),
                empty_term(term_at)
            );
            let well_formed = format!(
                "{}.exists(i, i < size(tr) && !({}) && size(tr[i]) == 0)",
                range(0, MAX_TERMS),
                empty_term(term_at)
            );
            format!(
                "// Liqo v1.x matches lazily: malformed terms fail it only when no term is well formed;\n// beside a well-formed term they depend on the virtual nodes, which only the webhook sees.\n{}!variables.has_terms ? {} : size(variables.too_many) > 0 ? variables.too_many : {}",
                comment(&[RuleId::TermsRequired]),
                object_rule(RuleId::TermsRequired, g),
                bind(
                    &all_terms,
                    "tr",
                    &format!("{broken} && !{well_formed} ? {} : []", flatten("tr", MAX_TERMS))
                )
            )
        }
    };
    v.push(var("selector", selector));
    v.push(var("remote_name", static_remote_name(g)));
    v.push(var(
        "errors",
        format!(
            "// Every error the webhook lists, in its order, as records: [message] or [before, value, after].\n!variables.decodable ? (has(object.spec) ? [[{}]] : [[{}]]) : variables.name + variables.immutable_mapping_strategy + variables.immutable_remote_namespace_name + variables.mapping_strategy + variables.pod_offloading_strategy + (variables.judged ? variables.selector : []) + variables.remote_name",
            lit(&table::undecodable("oldObject")),
            lit(&table::undecodable("object"))
        ),
    ));
    v.push(var("cluster_id", cluster_id(opts)));
    v.push(var("cluster_id_errors", cluster_id_errors(g)));
    v.push(var("message", message()));
    v
}

/// Remote names that need no cluster id: EnforceSameName (the namespace) and SelectedName.
fn static_remote_name(g: Generation) -> String {
    let ids = [RuleId::SelectedNameRequired, RuleId::RemoteNameInvalid, RuleId::RemoteNameEverywhere];
    let derived = bind(
        &label_problem("d"),
        "dp",
        &format!(
            "({}) + (dp == '' ? ({}) : [])",
            object_rule(RuleId::RemoteNameInvalid, g),
            object_rule(RuleId::RemoteNameEverywhere, g)
        ),
    );
    format!(
        "{}variables.judged && (variables.ms == 'EnforceSameName' || variables.ms == 'SelectedName') ? ({}) + (variables.ms == 'SelectedName' && variables.remote == '' ? [] : {}) : []",
        comment(&ids),
        object_rule(RuleId::SelectedNameRequired, g),
        bind("variables.ms == 'EnforceSameName' ? request.namespace : variables.remote", "d", &derived)
    )
}

/// The local cluster id, '' when unknown or not an RFC 1123 label (the webhook then only warns).
fn cluster_id(opts: &Options) -> String {
    match &opts.cluster_id {
        Some(id) => lit(id),
        None => format!(
            "// Liqo's cluster-id ConfigMap, when the binding has found it.\nparams == null ? '' : {}",
            bind(
                &format!(
                    "has(params.data) && {key} in params.data ? params.data[{key}] : ''",
                    key = lit(CLUSTER_ID_KEY)
                ),
                "c",
                &format!("{} == '' ? c : ''", label_problem("c"))
            )
        ),
    }
}

/// DefaultName: `<namespace>-<cluster id>`.
fn cluster_id_errors(g: Generation) -> String {
    let ids = [RuleId::DefaultNameTooLong, RuleId::RemoteNameEverywhere];
    debug_assert!(
        ids.iter().all(|id| matches!(table::rule(*id).check, Check::ClusterId | Check::StaticAndClusterId))
    );
    format!(
        "{}!variables.decodable || !variables.judged || variables.ms == 'EnforceSameName' || variables.ms == 'SelectedName' || variables.cluster_id == '' ? [] : {}",
        comment(&ids),
        bind(
            "request.namespace + '-' + variables.cluster_id",
            "d",
            &format!(
                "({}) + ({} > {MAX_LABEL_LEN} ? [] : {})",
                object_rule(RuleId::DefaultNameTooLong, g),
                byte_len("d"),
                object_rule(RuleId::RemoteNameEverywhere, g)
            )
        )
    )
}

/// The denial's message: `field::aggregate` of the records.
fn message() -> String {
    let more =
        |one: bool| cel::template(&and_more(NUMBERS[0], one), &[Slot::number(NUMBERS[0], "size(e) - 10")]);
    let listed = format!(
        "{}.filter(n, n < size(e)).map(n, {}).join(', ')",
        range(0, MAX_LISTED_ERRORS),
        cel::show_record("e[n]")
    );
    let body = format!(
        "size(e) == 0 ? '' : size(e) == 1 ? {} : '[' + {listed} + (size(e) > {MAX_LISTED_ERRORS} ? ', ' + (size(e) - {MAX_LISTED_ERRORS} == 1 ? {} : {}) : '') + ']'",
        cel::show_record("e[0]"),
        more(true),
        more(false)
    );
    format!(
        "// As the webhook joins its errors: one alone, several as [a, b], past {MAX_LISTED_ERRORS} counted.\n{}",
        bind("variables.errors + variables.cluster_id_errors", "e", &body)
    )
}

/// The objects as a YAML stream.
pub fn to_yaml(p: &Policy, part: Part, generated_by: &str) -> Result<String, serde_norway::Error> {
    let mut out = format!("# Generated by `{generated_by}`; do not edit.\n");
    if part != Part::Bindings {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&p.policy)?);
    }
    if part != Part::Policy {
        for b in &p.bindings {
            out.push_str("---\n");
            out.push_str(&serde_norway::to_string(b)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(g: Generation) -> Policy {
        build(&Options { generation: g, ..Default::default() }).unwrap()
    }

    #[test]
    fn actions_are_checked() {
        let opts = |a: &[&str]| Options {
            validation_actions: a.iter().map(|s| (*s).into()).collect(),
            ..Default::default()
        };
        assert!(build(&opts(&["Deny"])).is_ok());
        assert!(build(&opts(&["Warn", "Audit"])).is_ok());
        assert_eq!(
            build(&opts(&["Deny", "Warn"])).unwrap_err(),
            PolicyError::DenyAndWarn("Deny,Warn".into())
        );
        assert_eq!(build(&opts(&["Refuse"])).unwrap_err(), PolicyError::UnknownAction("Refuse".into()));
        assert_eq!(build(&opts(&[])).unwrap_err(), PolicyError::NoAction);
    }

    #[test]
    fn every_rule_the_policy_checks_is_named_in_it_and_no_other() {
        for g in [Generation::V0_3, Generation::V1] {
            let p = policy(g);
            let text: String = p
                .policy
                .spec
                .as_ref()
                .and_then(|s| s.variables.as_ref())
                .map(|vars| vars.iter().map(|v| v.expression.clone()).collect::<Vec<_>>().join("\n"))
                .unwrap_or_default();
            for id in RuleId::ALL {
                let named = text.lines().any(|l| {
                    l.strip_prefix("// rules: ").is_some_and(|ids| ids.split(", ").any(|i| i == id.as_str()))
                });
                assert_eq!(named, table::checked_by_policy(id, g), "{id} on {g:?}");
            }
        }
    }

    #[test]
    fn two_bindings_find_the_cluster_id_as_each_generation_does() {
        let p = policy(Generation::V0_3);
        assert_eq!(p.bindings.len(), 2);
        let r = p.bindings[1].spec.param_ref.as_ref().unwrap();
        assert_eq!(r.name.as_deref(), Some("liqo-clusterid-configmap"));
        assert_eq!(r.parameter_not_found_action.as_deref(), Some("Allow"));
        let p = policy(Generation::V1);
        let r = p.bindings[1].spec.param_ref.as_ref().unwrap();
        assert_eq!(r.name, None);
        let labels = r.selector.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert_eq!(labels.get("app.kubernetes.io/name").map(String::as_str), Some("clusterid-configmap"));
        let fixed = build(&Options { cluster_id: Some("c1".into()), ..Default::default() }).unwrap();
        assert_eq!(fixed.bindings.len(), 1);
        assert!(fixed.policy.spec.as_ref().unwrap().param_kind.is_none());
    }
}

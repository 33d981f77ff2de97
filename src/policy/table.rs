//! The rule table: every rule of the webhook's verdict, which Liqo generations it applies to,
//! whether CEL can check it (with or without the local cluster id) or it needs the virtual nodes
//! known now, and its CEL.
//!
//! Each rule's CEL is a list of error records (see [`cel::record`]) for one scope; the messages
//! in the records are the webhook's own, rendered by the same constructors
//! (`offloading::{rules, selector, names}`) with placeholders. The limits, operators, enum values
//! and regular expressions are the Rust constants. The policy ([`super::build`]) puts the rules
//! together in the order in which the webhook lists its errors.

use crate::crd::{NamespaceMappingStrategy, PodOffloadingStrategy};
use crate::liqo::OFFLOADING_NAME;
use crate::offloading::field::{FieldError, RuleId};
use crate::offloading::names::{self, NAMESPACES_EVERYWHERE, RemoteNameError};
use crate::offloading::rules::{self as verdict, Generation};
use crate::offloading::selector::{
    self, FIELD_OPERATORS, MAX_REQUIREMENTS_PER_TERM, MAX_TERMS, MAX_VALUES, MAX_VALUES_PER_REQUIREMENT,
    NODE_NAME_FIELD, OPERATORS,
};

use super::cel::{self, MARKS, NUMBERS, Slot, bind, byte_len, lit, lit_list, record};

/// Who can check a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The policy, from the object alone.
    Static,
    /// The policy, with the local cluster id (Liqo's ConfigMap, or `--cluster-id`) as parameter.
    ClusterId,
    /// The policy, from the object alone for some strategies and with the cluster id for others.
    StaticAndClusterId,
    /// Only the webhook: the verdict depends on the virtual nodes known now.
    Live,
}

/// Where in the object a rule looks, and the CEL names bound there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The object (`variables.*`, `request`, `object`).
    Object,
    /// The whole clusterSelector (`variables.terms`).
    Selector,
    /// One matchExpressions requirement: `r`, its path `p`, its values `vs`.
    Expression,
    /// One value of a matchExpressions requirement: `v` at index `k` of `vs`, the requirement's
    /// path `p`.
    ExpressionValue,
    /// One matchFields requirement: `r`, `p`, `vs`.
    Field,
    /// The virtual nodes: no CEL.
    Nodes,
}

/// One rule of the table.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub id: RuleId,
    /// The generations whose verdict has this rule.
    pub generations: &'static [Generation],
    pub check: Check,
    pub scope: Scope,
    /// What it refuses, for people.
    pub summary: &'static str,
}

const BOTH: &[Generation] = &[Generation::V0_3, Generation::V1];
const V0_3: &[Generation] = &[Generation::V0_3];
const V1: &[Generation] = &[Generation::V1];

/// Every rule, in the order in which the webhook lists its errors (within a scope).
#[rustfmt::skip]
pub const RULES: [Rule; 23] = [
    Rule { id: RuleId::Name, generations: BOTH, check: Check::Static, scope: Scope::Object,
        summary: "metadata.name other than `offloading` (on CREATE)" },
    Rule { id: RuleId::ImmutableMappingStrategy, generations: BOTH, check: Check::Static, scope: Scope::Object,
        summary: "a changed spec.namespaceMappingStrategy (on UPDATE)" },
    Rule { id: RuleId::ImmutableRemoteName, generations: BOTH, check: Check::Static, scope: Scope::Object,
        summary: "a changed spec.remoteNamespaceName (on UPDATE)" },
    Rule { id: RuleId::MappingStrategy, generations: BOTH, check: Check::Static, scope: Scope::Object,
        summary: "spec.namespaceMappingStrategy outside its enum (the CRD schema refuses it first)" },
    Rule { id: RuleId::PodOffloadingStrategy, generations: BOTH, check: Check::Static, scope: Scope::Object,
        summary: "spec.podOffloadingStrategy outside its enum (the CRD schema refuses it first)" },
    Rule { id: RuleId::TermsRequired, generations: V1, check: Check::Static, scope: Scope::Object,
        summary: "Liqo v1.x: no clusterSelector, or one without nodeSelectorTerms" },
    Rule { id: RuleId::SelectorTooMany, generations: BOTH, check: Check::Static, scope: Scope::Selector,
        summary: "more than 32 terms, 32 requirements in a list, 256 values in a requirement or 1024 values in all" },
    Rule { id: RuleId::SelectorKey, generations: BOTH, check: Check::Static, scope: Scope::Expression,
        summary: "a matchExpressions key that is not a qualified name" },
    Rule { id: RuleId::SelectorValuesRequired, generations: BOTH, check: Check::Static, scope: Scope::Expression,
        summary: "In or NotIn without values" },
    Rule { id: RuleId::SelectorValuesForbidden, generations: BOTH, check: Check::Static, scope: Scope::Expression,
        summary: "Exists or DoesNotExist with values" },
    Rule { id: RuleId::SelectorSingleValue, generations: BOTH, check: Check::Static, scope: Scope::Expression,
        summary: "Gt or Lt without exactly one value" },
    Rule { id: RuleId::SelectorInteger, generations: BOTH, check: Check::Static, scope: Scope::Expression,
        summary: "Gt or Lt with a value that is not a 64-bit integer" },
    Rule { id: RuleId::SelectorOperator, generations: BOTH, check: Check::Static, scope: Scope::Expression,
        summary: "an operator other than In, NotIn, Exists, DoesNotExist, Gt, Lt" },
    Rule { id: RuleId::SelectorLabelValue, generations: BOTH, check: Check::Static, scope: Scope::ExpressionValue,
        summary: "a matchExpressions value that is not a label value" },
    Rule { id: RuleId::FieldKey, generations: V0_3, check: Check::Static, scope: Scope::Field,
        summary: "a matchFields key other than metadata.name" },
    Rule { id: RuleId::FieldOperator, generations: BOTH, check: Check::Static, scope: Scope::Field,
        summary: "a matchFields operator other than In and NotIn" },
    Rule { id: RuleId::FieldSingleValue, generations: BOTH, check: Check::Static, scope: Scope::Field,
        summary: "a matchFields requirement without exactly one value" },
    Rule { id: RuleId::FieldNodeName, generations: V0_3, check: Check::Static, scope: Scope::Field,
        summary: "a matchFields value that is not a node name" },
    Rule { id: RuleId::SelectorUnmatched, generations: V1, check: Check::Live, scope: Scope::Nodes,
        summary: "Liqo v1.x: malformed terms beside well-formed ones that some virtual node matches none of" },
    Rule { id: RuleId::SelectedNameRequired, generations: BOTH, check: Check::Static, scope: Scope::Object,
        summary: "SelectedName without spec.remoteNamespaceName" },
    Rule { id: RuleId::RemoteNameInvalid, generations: BOTH, check: Check::Static, scope: Scope::Object,
        summary: "a remote name that is not an RFC 1123 label" },
    Rule { id: RuleId::RemoteNameEverywhere, generations: BOTH, check: Check::StaticAndClusterId, scope: Scope::Object,
        summary: "a remote name every cluster has (default, kube-system, kube-public, kube-node-lease)" },
    Rule { id: RuleId::DefaultNameTooLong, generations: BOTH, check: Check::ClusterId, scope: Scope::Object,
        summary: "DefaultName: <namespace>-<cluster id> over 63 characters" },
];

/// The table's entry for `id`.
pub fn rule(id: RuleId) -> &'static Rule {
    // Every id has an entry: a unit test holds the table and `RuleId::ALL` together.
    RULES.iter().find(|r| r.id == id).unwrap_or(&RULES[0])
}

/// Whether the policy of generation `g` checks rule `id` (else the webhook alone does, or the
/// generation has no such rule).
pub fn checked_by_policy(id: RuleId, g: Generation) -> bool {
    let r = rule(id);
    r.generations.contains(&g) && r.check != Check::Live
}

// --- placeholders ---------------------------------------------------------------------------

const M_PATH: &str = MARKS[0];
const M_VALUE: &str = MARKS[1];
const M_OP: &str = MARKS[2];
const M_I: &str = MARKS[3];
const M_J: &str = MARKS[4];
const M_NS: &str = MARKS[5];
const M_TEXT: &str = MARKS[6];
const M_NAME: &str = MARKS[7];
const N_0: usize = NUMBERS[0];
const N_1: usize = NUMBERS[1];
const N_2: usize = NUMBERS[2];
const N_3: usize = NUMBERS[3];

fn show(e: &FieldError) -> String {
    e.to_string()
}

// --- name problems: CEL strings, '' when the name is good ------------------------------------

/// `names::rfc1123_label_problem(x)`, or ''. `x` is a CEL name.
pub fn label_problem(x: &str) -> String {
    let too_long =
        cel::template(&names::too_long(names::MAX_LABEL_LEN, N_0), &[Slot::number(N_0, &byte_len(x))]);
    format!(
        "({x} == '' ? {} : {} > {} ? {too_long} : {x}.matches({}) ? '' : {})",
        lit(names::EMPTY),
        byte_len(x),
        names::MAX_LABEL_LEN,
        lit(names::LABEL_RE),
        lit(names::LABEL_SHAPE)
    )
}

/// `names::dns1123_subdomain_problem(x)`, or ''.
pub fn subdomain_problem(x: &str) -> String {
    format!(
        "({x} == '' ? {} : {} > {} ? {} : {x}.matches({}) ? '' : {})",
        lit(names::EMPTY),
        byte_len(x),
        names::MAX_SUBDOMAIN_LEN,
        lit(&names::subdomain_too_long()),
        lit(names::SUBDOMAIN_RE),
        lit(names::SUBDOMAIN_SHAPE)
    )
}

/// The name-part rule of `names`, or ''; `x` is not empty.
fn name_part_problem(x: &str, what: &str) -> String {
    let too_long = cel::template(&names::name_part_too_long(what, N_0), &[Slot::number(N_0, &byte_len(x))]);
    format!(
        "({} > {} ? {too_long} : {x}.matches({}) ? '' : {})",
        byte_len(x),
        names::MAX_LABEL_LEN,
        lit(names::NAME_PART_RE),
        lit(&names::name_part_shape(what))
    )
}

/// `names::qualified_name_problem(x)`, or ''.
pub fn qualified_name_problem(x: &str) -> String {
    let name = |n: &str| {
        format!(
            "({n} == '' ? {} : {n}.contains('/') ? {} : {})",
            lit(names::NAME_EMPTY),
            lit(names::QUALIFIED_SHAPE),
            name_part_problem(n, names::NAME_PART)
        )
    };
    // `split_once('/')`: the prefix before the first '/', the name after it.
    let with_prefix = bind(
        &format!("{x}.indexOf('/')"),
        "at",
        &format!(
            "at == 0 ? {} : {}",
            lit(names::PREFIX_EMPTY),
            bind(
                &subdomain_problem_of(&format!("{x}.substring(0, at)")),
                "pp",
                &format!(
                    "pp != '' ? {} + ' ' + pp : {}",
                    lit(names::PREFIX_PART),
                    bind(&format!("{x}.substring(at + 1)"), "np", &name("np"))
                )
            )
        ),
    );
    format!("({x}.contains('/') ? {with_prefix} : {})", name(x))
}

/// [`subdomain_problem`] of an expression (bound first).
fn subdomain_problem_of(value: &str) -> String {
    bind(value, "sd", &subdomain_problem("sd"))
}

/// `names::label_value_problem(x)`, or ''.
pub fn label_value_problem(x: &str) -> String {
    format!("({x} == '' ? '' : {})", name_part_problem(x, names::LABEL_VALUE))
}

/// Whether `x` parses as an i64 as Rust's `str::parse` and Go's `strconv.ParseInt(x, 10, 64)` do:
/// a sign, digits, within range (leading zeros allowed). Absurdly long strings (over 4096
/// characters, all digits) are taken as not integers, to bound the regular expression's cost.
pub fn is_i64(x: &str) -> String {
    let digits = bind(
        &format!("{x}.find('[1-9][0-9]*$')"),
        "d",
        &format!(
            "size(d) < 19 || size(d) == 19 && d <= ({x}.startsWith('-') ? '{}' : '{}')",
            i64::MIN.unsigned_abs(),
            i64::MAX
        ),
    );
    format!("(size({x}) <= 4096 && {x}.matches('^[+-]?[0-9]+$') && {digits})")
}

// --- each rule's CEL: a list of records ---------------------------------------------------

/// The records of an Object-scope rule (for a spec already read), or of the Selector scope.
/// `None` for rules of other scopes, and for Live ones.
pub fn object_records(id: RuleId, g: Generation) -> Option<String> {
    if !checked_by_policy(id, g) {
        return None;
    }
    Some(match id {
        RuleId::Name => {
            let rec =
                record(&show(&verdict::name_error_of(M_VALUE)), Some((M_VALUE, "object.metadata.name")), &[]);
            format!(
                "request.operation == 'CREATE' && object.metadata.name != {} ? [{rec}] : []",
                lit(OFFLOADING_NAME)
            )
        }
        RuleId::ImmutableMappingStrategy => {
            let e = verdict::immutable_mapping_strategy(M_TEXT, M_VALUE);
            let rec = record(
                &show(&e),
                Some((M_VALUE, "variables.ms")),
                &[Slot::debug(M_TEXT, "variables.old_ms")],
            );
            format!("variables.changed && variables.ms != variables.old_ms ? [{rec}] : []")
        }
        RuleId::ImmutableRemoteName => {
            let e = verdict::immutable_remote_name(M_TEXT, M_VALUE);
            let rec = record(
                &show(&e),
                Some((M_VALUE, "variables.remote")),
                &[Slot::debug(M_TEXT, "variables.old_remote")],
            );
            format!(
                "variables.changed && (variables.remote_set != variables.old_remote_set || variables.remote != variables.old_remote) ? [{rec}] : []"
            )
        }
        RuleId::MappingStrategy => {
            let rec = record(
                &show(&verdict::unsupported_mapping_strategy(M_VALUE)),
                Some((M_VALUE, "variables.ms")),
                &[],
            );
            format!(
                "variables.judged && !(variables.ms in {}) ? [{rec}] : []",
                lit_list(NamespaceMappingStrategy::SUPPORTED)
            )
        }
        RuleId::PodOffloadingStrategy => {
            let rec = record(
                &show(&verdict::unsupported_pod_strategy(M_VALUE)),
                Some((M_VALUE, "variables.pod")),
                &[],
            );
            format!(
                "variables.judged && !(variables.pod in {}) ? [{rec}] : []",
                lit_list(PodOffloadingStrategy::SUPPORTED)
            )
        }
        RuleId::TermsRequired => {
            format!("[{}]", record(&show(&verdict::missing_terms_error()), None, &[]))
        }
        RuleId::SelectorTooMany => too_many(),
        RuleId::SelectedNameRequired => {
            let e = verdict::name_field_error(
                &RemoteNameError::MissingSelectedName,
                M_NS,
                M_VALUE,
                RemoteNameError::MissingSelectedName.to_string(),
            );
            format!(
                "variables.ms == 'SelectedName' && variables.remote == '' ? [{}] : []",
                record(&show(&e), None, &[])
            )
        }
        RuleId::RemoteNameInvalid => {
            // For a derived name `d` whose problem is `dp`.
            let err = RemoteNameError::InvalidName { name: String::new(), problem: String::new() };
            let e = verdict::name_field_error(&err, M_NS, M_VALUE, names::invalid_name(M_TEXT, N_0, M_NAME));
            let rec = record(
                &show(&e),
                Some((M_VALUE, "variables.remote")),
                &[
                    Slot::raw(M_TEXT, cel::quoted("d")),
                    Slot::number(N_0, &byte_len("d")),
                    Slot::raw(M_NAME, "dp"),
                ],
            );
            format!("dp != '' ? [{rec}] : []")
        }
        RuleId::RemoteNameEverywhere => {
            // For a derived name `d` with no label problem; `same` when it is the namespace's own.
            let rec = |same_name: bool| {
                let err = RemoteNameError::ExistsEverywhere { name: String::new(), same_name };
                let e = verdict::name_field_error(
                    &err,
                    M_NS,
                    M_VALUE,
                    names::exists_everywhere(M_NAME, same_name),
                );
                let value =
                    if same_name { (M_NS, "request.namespace") } else { (M_VALUE, "variables.remote") };
                record(&show(&e), Some(value), &[Slot::debug_plain(M_NAME, "d")])
            };
            format!(
                "d in {} ? [variables.ms == 'EnforceSameName' ? {} : {}] : []",
                lit_list(NAMESPACES_EVERYWHERE),
                rec(true),
                rec(false)
            )
        }
        RuleId::DefaultNameTooLong => {
            // For `d`, `<namespace>-<cluster id>`, with a known cluster id.
            let err = RemoteNameError::DefaultNameTooLong {
                name: String::new(),
                namespace: String::new(),
                cluster_id: String::new(),
                max_namespace: 0,
            };
            let message = names::default_name_too_long(M_NAME, N_0, M_TEXT, N_1, N_2, M_NS, N_3);
            let e = verdict::name_field_error(&err, M_NS, M_VALUE, message);
            let id = "variables.cluster_id";
            let max = names::MAX_LABEL_LEN;
            let rec = record(
                &show(&e),
                Some((M_NS, "request.namespace")),
                &[
                    Slot::debug_plain(M_NAME, "d"),
                    Slot::number(N_0, &byte_len("d")),
                    Slot::debug_plain(M_TEXT, id),
                    Slot::number(N_1, &byte_len(id)),
                    Slot::number(
                        N_2,
                        &format!("({} + 1 > {max} ? 0 : {max} - ({} + 1))", byte_len(id), byte_len(id)),
                    ),
                    Slot::debug_plain(M_NS, "request.namespace"),
                    Slot::number(N_3, &byte_len("request.namespace")),
                ],
            );
            format!("{} > {max} ? [{rec}] : []", byte_len("d"))
        }
        _ => return None,
    })
}

/// `SelectorTooMany`: the `Too many` errors of `selector::too_many`, over `variables.terms`.
fn too_many() -> String {
    let terms = "variables.terms";
    let term_rec =
        record(&show(&selector::too_many_terms(N_0)), None, &[Slot::number(N_0, &format!("size({terms})"))]);
    let list = |name: &str| {
        let reqs_rec = record(
            &show(&selector::too_many_requirements(&selector::term_path(M_I), name, N_0)),
            None,
            &[Slot::raw(M_I, "string(i)"), Slot::number(N_0, "size(l2)")],
        );
        let values_rec = record(
            &show(&selector::too_many_values(
                &selector::requirement_path(&selector::term_path(M_I), name, M_J),
                N_0,
            )),
            None,
            &[
                Slot::raw(M_I, "string(i)"),
                Slot::raw(M_J, "string(j)"),
                Slot::number(N_0, &values_size("l2[j]")),
            ],
        );
        bind(
            &field_list("t", name),
            "l2",
            &format!(
                "size(l2) > {MAX_REQUIREMENTS_PER_TERM} ? [{reqs_rec}] : {}.filter(j, j < size(l2) && {} > {MAX_VALUES_PER_REQUIREMENT}).map(j, {values_rec})",
                cel::range(0, MAX_REQUIREMENTS_PER_TERM),
                values_size("l2[j]")
            ),
        )
    };
    let per_list = cel::flatten(
        &format!(
            "{}.filter(i, i < size({terms})).map(i, {})",
            cel::range(0, MAX_TERMS),
            bind(
                &format!("{terms}[i]"),
                "t",
                &format!("{} + {}", list("matchExpressions"), list("matchFields"))
            )
        ),
        MAX_TERMS,
    );
    let sum = |name: &str| {
        bind(
            &field_list("t", name),
            "l2",
            &format!("size(l2) > {MAX_REQUIREMENTS_PER_TERM} ? 0 : l2.map(r, {}).sum()", values_size("r")),
        )
    };
    let total_rec = record(&show(&selector::too_many_total(N_0)), None, &[Slot::number(N_0, "n")]);
    let total = bind(
        &format!("{terms}.map(t, {} + {}).sum()", sum("matchExpressions"), sum("matchFields")),
        "n",
        &format!("n > {MAX_VALUES} ? [{total_rec}] : []"),
    );
    format!(
        "size({terms}) > {MAX_TERMS} ? [{term_rec}] : {}",
        bind(&per_list, "e", &format!("size(e) > 0 ? e : {total}"))
    )
}

/// `t.name`, or [] when absent.
pub fn field_list(t: &str, name: &str) -> String {
    format!("(has({t}.{name}) ? {t}.{name} : [])")
}

/// The number of values of requirement `r`.
fn values_size(r: &str) -> String {
    format!("size(has({r}.values) ? {r}.values : [])")
}

/// The records of a rule for one matchExpressions requirement (`r`, `p`, `vs`), or for one of
/// its values (`v` at `k`); of a matchFields requirement (`r`, `p`, `vs`).
pub fn requirement_records(id: RuleId, g: Generation) -> Option<String> {
    if !checked_by_policy(id, g) {
        return None;
    }
    let op = || Slot::debug_plain(M_OP, "r.operator");
    let path = || Slot::raw(M_PATH, "p");
    Some(match id {
        RuleId::SelectorKey => {
            let rec = record(
                &show(&selector::key_error(M_PATH, M_VALUE, M_TEXT)),
                Some((M_VALUE, "r.key")),
                &[path(), Slot::raw(M_TEXT, "kp")],
            );
            bind(
                &bind("r.key", "key", &qualified_name_problem("key")),
                "kp",
                &format!("kp == '' ? [] : [{rec}]"),
            )
        }
        RuleId::SelectorValuesRequired => {
            let rec = record(&show(&selector::values_required(M_PATH, M_OP)), None, &[path(), op()]);
            format!("r.operator in ['In', 'NotIn'] && size(vs) == 0 ? [{rec}] : []")
        }
        RuleId::SelectorValuesForbidden => {
            let rec = record(&show(&selector::values_forbidden(M_PATH, M_OP)), None, &[path(), op()]);
            format!("r.operator in ['Exists', 'DoesNotExist'] && size(vs) > 0 ? [{rec}] : []")
        }
        RuleId::SelectorSingleValue => {
            let rec = record(
                &show(&selector::single_value(M_PATH, M_OP, N_0)),
                None,
                &[path(), op(), Slot::number(N_0, "size(vs)")],
            );
            format!("r.operator in ['Gt', 'Lt'] && size(vs) != 1 ? [{rec}] : []")
        }
        RuleId::SelectorInteger => {
            let rec = record(
                &show(&selector::not_integer(M_PATH, M_VALUE, M_OP)),
                Some((M_VALUE, "vs[0]")),
                &[path(), op()],
            );
            format!(
                "r.operator in ['Gt', 'Lt'] && size(vs) == 1 && !{} ? [{rec}] : []",
                bind("vs[0]", "x", &is_i64("x"))
            )
        }
        RuleId::SelectorOperator => {
            let rec = record(
                &show(&selector::unsupported_operator(M_PATH, M_VALUE)),
                Some((M_VALUE, "r.operator")),
                &[path()],
            );
            format!("!(r.operator in {}) ? [{rec}] : []", lit_list(OPERATORS))
        }
        RuleId::SelectorLabelValue => {
            // Over every value: the records of the bad ones, each found again to be shown.
            let rec = record(
                &show(&selector::label_value(M_PATH, M_I, M_VALUE, M_TEXT)),
                Some((M_VALUE, "v")),
                &[path(), Slot::raw(M_I, "string(k)"), Slot::raw(M_TEXT, "vp")],
            );
            let problem = bind("vs[k]", "v", &label_value_problem("v"));
            format!(
                "{}.filter(k, k < size(vs) && {problem} != '').map(k, {})",
                cel::indexes("size(vs)", &[8, 32, MAX_VALUES_PER_REQUIREMENT]),
                bind("vs[k]", "v", &bind(&label_value_problem("v"), "vp", &rec))
            )
        }
        RuleId::FieldKey => {
            let rec =
                record(&show(&selector::field_key(M_PATH, M_VALUE)), Some((M_VALUE, "r.key")), &[path()]);
            format!("r.key != {} ? [{rec}] : []", lit(NODE_NAME_FIELD))
        }
        RuleId::FieldOperator => {
            let rec = record(
                &show(&selector::field_operator(M_PATH, M_VALUE)),
                Some((M_VALUE, "r.operator")),
                &[path()],
            );
            format!("!(r.operator in {}) ? [{rec}] : []", lit_list(FIELD_OPERATORS))
        }
        RuleId::FieldSingleValue => {
            let rec = record(
                &show(&selector::field_single_value(M_PATH, M_OP, N_0)),
                None,
                &[path(), op(), Slot::number(N_0, "size(vs)")],
            );
            format!("r.operator in {} && size(vs) != 1 ? [{rec}] : []", lit_list(FIELD_OPERATORS))
        }
        RuleId::FieldNodeName => {
            let rec = record(
                &show(&selector::field_node_name(M_PATH, M_VALUE, M_TEXT)),
                Some((M_VALUE, "vs[0]")),
                &[path(), Slot::raw(M_TEXT, "np")],
            );
            format!(
                "r.operator in {} && size(vs) == 1 ? {} : []",
                lit_list(FIELD_OPERATORS),
                bind(&subdomain_problem_of("vs[0]"), "np", &format!("np == '' ? [] : [{rec}]"))
            )
        }
        _ => return None,
    })
}

/// The path of requirement `j` of term `i`'s `list`, as a CEL string.
pub fn requirement_path(list: &str) -> String {
    cel::template(
        &selector::requirement_path(&selector::term_path(M_I), list, M_J),
        &[Slot::raw(M_I, "string(i)"), Slot::raw(M_J, "string(j)")],
    )
}

/// The webhook's answer to an object it cannot read: the AdmissionReview's `object` (or
/// `oldObject`) without `spec` (serde's words, as `admission::review` passes them on).
pub fn undecodable(which: &str) -> String {
    format!("the AdmissionReview request could not be read: {which}: missing field `spec`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::NamespaceOffloading;
    use crate::offloading::rules::{Context, VirtualNode, VirtualNodes, review_create, review_update};
    use serde_json::{Value, json};

    #[test]
    fn the_table_has_every_rule_once() {
        for id in RuleId::ALL {
            assert_eq!(RULES.iter().filter(|r| r.id == id).count(), 1, "{id}");
        }
        assert_eq!(RULES.len(), RuleId::ALL.len());
    }

    /// An object that breaks `id` (and perhaps others): namespace, name, spec, old spec.
    fn example(id: RuleId) -> (&'static str, &'static str, Value, Option<Value>) {
        let every = json!({"nodeSelectorTerms": []});
        let expr = |e: Value| json!({"clusterSelector": {"nodeSelectorTerms": [{"matchExpressions": [e]}]}});
        let field = |e: Value| json!({"clusterSelector": {"nodeSelectorTerms": [{"matchFields": [e]}]}});
        let selected = |name: &str| json!({"namespaceMappingStrategy": "SelectedName", "remoteNamespaceName": name, "clusterSelector": every});
        let create = |spec: Value| ("web", "offloading", spec, None);
        match id {
            RuleId::Name => ("web", "my-offloading", json!({"clusterSelector": every}), None),
            RuleId::ImmutableMappingStrategy => (
                "web",
                "offloading",
                json!({"namespaceMappingStrategy": "EnforceSameName", "clusterSelector": every}),
                Some(json!({"clusterSelector": every})),
            ),
            RuleId::ImmutableRemoteName => ("web", "offloading", selected("b"), Some(selected("a"))),
            RuleId::MappingStrategy => {
                create(json!({"namespaceMappingStrategy": "Same", "clusterSelector": every}))
            }
            RuleId::PodOffloadingStrategy => {
                create(json!({"podOffloadingStrategy": "Anywhere", "clusterSelector": every}))
            }
            RuleId::SelectorTooMany => create(json!({"clusterSelector": {"nodeSelectorTerms":
                vec![json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]}); MAX_TERMS + 1]}})),
            RuleId::SelectorKey => create(expr(json!({"key": "bad key", "operator": "Exists"}))),
            RuleId::SelectorOperator => create(expr(json!({"key": "k", "operator": "Equals"}))),
            RuleId::SelectorValuesRequired => create(expr(json!({"key": "k", "operator": "In"}))),
            RuleId::SelectorValuesForbidden => {
                create(expr(json!({"key": "k", "operator": "Exists", "values": ["x"]})))
            }
            RuleId::SelectorSingleValue => {
                create(expr(json!({"key": "k", "operator": "Gt", "values": ["1", "2"]})))
            }
            RuleId::SelectorInteger => {
                create(expr(json!({"key": "k", "operator": "Lt", "values": ["many"]})))
            }
            RuleId::SelectorLabelValue => {
                create(expr(json!({"key": "k", "operator": "In", "values": ["a b"]})))
            }
            RuleId::FieldKey => {
                create(field(json!({"key": "metadata.labels", "operator": "In", "values": ["a"]})))
            }
            RuleId::FieldOperator => create(field(json!({"key": "metadata.name", "operator": "Exists"}))),
            RuleId::FieldSingleValue => {
                create(field(json!({"key": "metadata.name", "operator": "In", "values": ["a", "b"]})))
            }
            RuleId::FieldNodeName => {
                create(field(json!({"key": "metadata.name", "operator": "In", "values": ["Not_A_Node"]})))
            }
            RuleId::TermsRequired => create(json!({})),
            RuleId::SelectorUnmatched => create(json!({"clusterSelector": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "region", "operator": "Equals"}]},
                {"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu"]}]}]}})),
            RuleId::SelectedNameRequired => {
                create(json!({"namespaceMappingStrategy": "SelectedName", "clusterSelector": every}))
            }
            RuleId::RemoteNameInvalid => create(selected("Bad_Name")),
            RuleId::RemoteNameEverywhere => create(selected("kube-system")),
            RuleId::DefaultNameTooLong => {
                ("payments-processing-europe-1", "offloading", json!({"clusterSelector": every}), None)
            }
        }
    }

    /// The webhook's verdict on `example(id)`, with one virtual node in region `us`.
    fn webhook_errors(id: RuleId, g: Generation) -> Vec<FieldError> {
        let (ns, name, spec, old) = example(id);
        let api = match g {
            Generation::V0_3 => "offloading.liqo.io/v1alpha1",
            Generation::V1 => "offloading.liqo.io/v1beta1",
        };
        let obj = |spec: Value| -> NamespaceOffloading {
            serde_json::from_value(json!({"apiVersion": api, "kind": "NamespaceOffloading",
                "metadata": {"name": name, "namespace": ns}, "spec": spec}))
            .unwrap()
        };
        let nodes = VirtualNodes::new(vec![VirtualNode {
            name: "vk-us".into(),
            cluster_id: "us".into(),
            labels: [("region".to_owned(), "us".to_owned())].into(),
        }]);
        let ctx = Context {
            cluster_id: Some("b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a"),
            virtual_nodes: Some(&nodes),
            generation: g,
        };
        match old {
            None => review_create(&obj(spec), ns, &ctx).errors,
            Some(old) => review_update(&obj(old), &obj(spec), ns, &ctx).errors,
        }
    }

    #[test]
    fn every_error_of_the_webhook_names_its_rule_of_the_table() {
        for g in [Generation::V0_3, Generation::V1] {
            for r in &RULES {
                let errors = webhook_errors(r.id, g);
                // The webhook says so exactly on the generations the table gives the rule.
                assert_eq!(
                    errors.iter().any(|e| e.rule == r.id),
                    r.generations.contains(&g),
                    "{} on {g:?}: {errors:?}",
                    r.id
                );
                for e in &errors {
                    assert!(rule(e.rule).generations.contains(&g), "{} on {g:?}: {e}", e.rule);
                }
            }
        }
    }

    #[test]
    fn every_rule_the_policy_checks_has_cel_and_no_other_does() {
        for g in [Generation::V0_3, Generation::V1] {
            for r in &RULES {
                let cel = match r.scope {
                    Scope::Object | Scope::Selector => object_records(r.id, g),
                    Scope::Expression | Scope::ExpressionValue | Scope::Field => requirement_records(r.id, g),
                    Scope::Nodes => None,
                };
                assert_eq!(cel.is_some(), checked_by_policy(r.id, g), "{} on {g:?}", r.id);
                if let Some(cel) = cel {
                    assert!(
                        !cel.contains(MARKS[0]) && !MARKS.iter().any(|m| cel.contains(m)),
                        "{}: {cel}",
                        r.id
                    );
                    assert!(!NUMBERS.iter().any(|n| cel.contains(&n.to_string())), "{}: {cel}", r.id);
                }
            }
        }
    }
}

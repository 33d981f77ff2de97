//! Field errors in the style of Kubernetes' `field.Error`, so that what kubectl prints for us reads
//! like what it prints for the API server's own validation.

use std::fmt;

/// How many errors a message lists in full; the rest are counted (`and N more errors`), so that a
/// selector with thousands of bad values gets a denial of a few KiB, not megabytes.
pub const MAX_LISTED_ERRORS: usize = 10;
/// How much of a value a message quotes.
pub const MAX_QUOTED_CHARS: usize = 128;

/// One problem with one field of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The rule of the verdict it breaks: the same ids name the validations of the
    /// ValidatingAdmissionPolicy that `policy` prints, so that tests can hold the two together.
    pub rule: RuleId,
    /// JSON-ish path from the object root, e.g. `spec.clusterSelector.nodeSelectorTerms[0]`.
    pub path: String,
    pub kind: FieldErrorKind,
}

/// The rules a NamespaceOffloading can break, one id per kind of error the verdict produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    /// `metadata.name` is not `offloading`.
    Name,
    /// A changed `spec.namespaceMappingStrategy` on UPDATE.
    ImmutableMappingStrategy,
    /// A changed `spec.remoteNamespaceName` on UPDATE.
    ImmutableRemoteName,
    /// `spec.namespaceMappingStrategy` outside its enum.
    MappingStrategy,
    /// `spec.podOffloadingStrategy` outside its enum.
    PodOffloadingStrategy,
    /// A clusterSelector list past the `Too many` limits.
    SelectorTooMany,
    /// A matchExpressions key that is not a qualified name.
    SelectorKey,
    /// A matchExpressions operator that is not one of the six.
    SelectorOperator,
    /// In or NotIn without values.
    SelectorValuesRequired,
    /// Exists or DoesNotExist with values.
    SelectorValuesForbidden,
    /// Gt or Lt without exactly one value.
    SelectorSingleValue,
    /// Gt or Lt with a value that is not an integer.
    SelectorInteger,
    /// A matchExpressions value that is not a label value.
    SelectorLabelValue,
    /// A matchFields key other than `metadata.name` (Liqo v0.3's eager rule).
    FieldKey,
    /// A matchFields operator other than In and NotIn.
    FieldOperator,
    /// A matchFields requirement without exactly one value.
    FieldSingleValue,
    /// A matchFields value that is not a node name (Liqo v0.3's eager rule).
    FieldNodeName,
    /// Liqo v1.x: no clusterSelector, or one without nodeSelectorTerms.
    TermsRequired,
    /// Liqo v1.x: a virtual node that matches none of the well-formed terms beside malformed ones
    /// (depends on the virtual nodes known now).
    SelectorUnmatched,
    /// SelectedName without `spec.remoteNamespaceName`.
    SelectedNameRequired,
    /// A derived remote name that is not an RFC 1123 label.
    RemoteNameInvalid,
    /// A derived remote name that every cluster already has.
    RemoteNameEverywhere,
    /// A DefaultName remote name over 63 characters (depends on the local cluster id).
    DefaultNameTooLong,
}

impl RuleId {
    pub const ALL: [RuleId; 23] = [
        Self::Name,
        Self::ImmutableMappingStrategy,
        Self::ImmutableRemoteName,
        Self::MappingStrategy,
        Self::PodOffloadingStrategy,
        Self::SelectorTooMany,
        Self::SelectorKey,
        Self::SelectorOperator,
        Self::SelectorValuesRequired,
        Self::SelectorValuesForbidden,
        Self::SelectorSingleValue,
        Self::SelectorInteger,
        Self::SelectorLabelValue,
        Self::FieldKey,
        Self::FieldOperator,
        Self::FieldSingleValue,
        Self::FieldNodeName,
        Self::TermsRequired,
        Self::SelectorUnmatched,
        Self::SelectedNameRequired,
        Self::RemoteNameInvalid,
        Self::RemoteNameEverywhere,
        Self::DefaultNameTooLong,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::ImmutableMappingStrategy => "immutable-mapping-strategy",
            Self::ImmutableRemoteName => "immutable-remote-namespace-name",
            Self::MappingStrategy => "mapping-strategy",
            Self::PodOffloadingStrategy => "pod-offloading-strategy",
            Self::SelectorTooMany => "selector-too-many",
            Self::SelectorKey => "selector-key",
            Self::SelectorOperator => "selector-operator",
            Self::SelectorValuesRequired => "selector-values-required",
            Self::SelectorValuesForbidden => "selector-values-forbidden",
            Self::SelectorSingleValue => "selector-single-value",
            Self::SelectorInteger => "selector-integer",
            Self::SelectorLabelValue => "selector-label-value",
            Self::FieldKey => "field-key",
            Self::FieldOperator => "field-operator",
            Self::FieldSingleValue => "field-single-value",
            Self::FieldNodeName => "field-node-name",
            Self::TermsRequired => "terms-required",
            Self::SelectorUnmatched => "selector-unmatched",
            Self::SelectedNameRequired => "selected-name-required",
            Self::RemoteNameInvalid => "remote-name-invalid",
            Self::RemoteNameEverywhere => "remote-name-everywhere",
            Self::DefaultNameTooLong => "default-name-too-long",
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// The value is not one of a fixed set.
    Unsupported { value: String, supported: Vec<String> },
    /// A list longer than any real selector needs.
    TooMany { actual: usize, max: usize },
    /// The value is malformed; `detail` says what is expected.
    Invalid { value: String, detail: String },
    /// A value is needed and missing.
    Required { detail: String },
    /// The field may not be set (in this context).
    Forbidden { detail: String },
}

impl FieldError {
    pub fn unsupported(rule: RuleId, path: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        Self {
            rule,
            path: path.into(),
            kind: FieldErrorKind::Unsupported {
                value: clip(value),
                supported: supported.iter().map(|s| (*s).to_owned()).collect(),
            },
        }
    }

    pub fn invalid(rule: RuleId, path: impl Into<String>, value: &str, detail: impl Into<String>) -> Self {
        Self {
            rule,
            path: path.into(),
            kind: FieldErrorKind::Invalid { value: clip(value), detail: detail.into() },
        }
    }

    pub fn required(rule: RuleId, path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { rule, path: path.into(), kind: FieldErrorKind::Required { detail: detail.into() } }
    }

    pub fn forbidden(rule: RuleId, path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { rule, path: path.into(), kind: FieldErrorKind::Forbidden { detail: detail.into() } }
    }

    pub fn too_many(path: impl Into<String>, actual: usize, max: usize) -> Self {
        Self {
            rule: RuleId::SelectorTooMany,
            path: path.into(),
            kind: FieldErrorKind::TooMany { actual, max },
        }
    }
}

/// Keeps at most [`MAX_QUOTED_CHARS`] characters of a value (and says how long it was), so that an
/// error about a huge value stays small from the moment it is made.
fn clip(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED_CHARS) {
        None => value.to_owned(),
        Some((end, _)) => format!("{}... ({} characters in all)", &value[..end], value.chars().count()),
    }
}

/// `s` quoted as `{:?}` quotes it, at most [`MAX_QUOTED_CHARS`] characters of it.
pub fn quoted(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        None => format!("{s:?}"),
        Some((end, _)) => {
            format!("{:?} (truncated: {} characters in all)", format!("{}...", &s[..end]), s.chars().count())
        }
    }
}

/// At most `max` bytes of `s`, cut on a character boundary, marked when cut.
pub fn truncate(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... (truncated from {} bytes)", &s[..end], s.len()).into()
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FieldErrorKind::Unsupported { value, supported } => {
                write!(f, "{}: Unsupported value: {value:?}: supported values: ", self.path)?;
                for (i, s) in supported.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{s:?}")?;
                }
                Ok(())
            }
            FieldErrorKind::Invalid { value, detail } => {
                write!(f, "{}: Invalid value: {value:?}: {detail}", self.path)
            }
            FieldErrorKind::Required { detail } => {
                write!(f, "{}: Required value: {detail}", self.path)
            }
            FieldErrorKind::Forbidden { detail } => write!(f, "{}: Forbidden: {detail}", self.path),
            FieldErrorKind::TooMany { actual, max } => {
                write!(f, "{}: Too many: {actual}: must have at most {max} items", self.path)
            }
        }
    }
}

/// Joins errors as Kubernetes' `ErrorList.ToAggregate()` does: one error alone, several as
/// `[a, b]`; past [`MAX_LISTED_ERRORS`], the rest as `and N more errors`.
pub fn aggregate(errors: &[FieldError]) -> String {
    match errors {
        [] => String::new(),
        [one] => one.to_string(),
        many => {
            let mut parts: Vec<String> =
                many.iter().take(MAX_LISTED_ERRORS).map(ToString::to_string).collect();
            if let Some(more) = more_errors(many.len()) {
                parts.push(more);
            }
            format!("[{}]", parts.join(", "))
        }
    }
}

/// The first error alone, and how many others there are: for places that must stay short (the
/// `liqo.io/scheduling-enabled` annotation, Event messages).
pub fn first_and_count(errors: &[FieldError]) -> String {
    match errors {
        [] => String::new(),
        [one] => one.to_string(),
        [first, rest @ ..] => {
            format!("{first} (and {} more error{})", rest.len(), if rest.len() == 1 { "" } else { "s" })
        }
    }
}

/// `and N more errors` for a list of `total` past what is listed in full.
pub fn more_errors(total: usize) -> Option<String> {
    let more = total.checked_sub(MAX_LISTED_ERRORS).filter(|m| *m > 0)?;
    Some(and_more(more, more == 1))
}

/// `and N more errors` (`one`: N is 1).
pub(crate) fn and_more(more: impl fmt::Display, one: bool) -> String {
    format!("and {more} more error{}", if one { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_kubernetes() {
        let e = FieldError::unsupported(RuleId::Name, "spec.x", "Equals", &["In", "NotIn"]);
        assert_eq!(e.to_string(), r#"spec.x: Unsupported value: "Equals": supported values: "In", "NotIn""#);
        let r = FieldError::required(RuleId::Name, "spec.y", "must be set");
        assert_eq!(r.to_string(), "spec.y: Required value: must be set");
        assert_eq!(aggregate(std::slice::from_ref(&r)), "spec.y: Required value: must be set");
        assert_eq!(
            aggregate(&[r.clone(), FieldError::forbidden(RuleId::Name, "spec.z", "no")]),
            "[spec.y: Required value: must be set, spec.z: Forbidden: no]"
        );
    }

    #[test]
    fn long_lists_and_long_values_stay_short() {
        let many: Vec<FieldError> = (0..100_000)
            .map(|i| FieldError::invalid(RuleId::Name, format!("spec.v[{i}]"), "x y", "bad"))
            .collect();
        let msg = aggregate(&many);
        assert!(msg.starts_with(r#"[spec.v[0]: Invalid value: "x y": bad, spec.v[1]: "#), "{msg}");
        assert!(msg.ends_with(r#"spec.v[9]: Invalid value: "x y": bad, and 99990 more errors]"#), "{msg}");
        assert_eq!(first_and_count(&many[..2]), r#"spec.v[0]: Invalid value: "x y": bad (and 1 more error)"#);
        let huge = "a".repeat(3_000_000);
        let e = FieldError::invalid(RuleId::Name, "spec.k", &huge, "too long");
        let shown = e.to_string();
        assert!(shown.len() < 300, "{}", shown.len());
        assert!(shown.contains("... (3000000 characters in all)"), "{shown}");
        assert_eq!(quoted("short"), r#""short""#);
        assert!(quoted(&huge).ends_with("(truncated: 3000000 characters in all)"));
        assert_eq!(truncate("héllo", 2), "h... (truncated from 6 bytes)");
        assert_eq!(
            FieldError::too_many("spec.x", 300, 256).to_string(),
            "spec.x: Too many: 300: must have at most 256 items"
        );
    }
}

//! Name syntax (RFC 1123 labels, qualified names, label values) and the remote namespace name each
//! mapping strategy derives (docs/behaviour.md, "Derived remote names").

use crate::crd::NamespaceMappingStrategy;

use std::fmt::Display;

/// The longest RFC 1123 label, and so the longest namespace name.
pub const MAX_LABEL_LEN: usize = 63;
pub const MAX_SUBDOMAIN_LEN: usize = 253;

// The words of the name problems, and regular expressions that say what the byte checks below say
// (for the ValidatingAdmissionPolicy, whose CEL has only regular expressions: a test holds them
// equal).
pub const EMPTY: &str = "must not be empty";
pub const LABEL_SHAPE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
     and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')";
pub const SUBDOMAIN_SHAPE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' \
     or '.', and must start and end with an alphanumeric character (e.g. 'example.com')";
pub const PREFIX_EMPTY: &str = "prefix part must be non-empty";
/// Put before a prefix's subdomain problem.
pub const PREFIX_PART: &str = "prefix part";
pub const NAME_EMPTY: &str = "name part must be non-empty";
pub const QUALIFIED_SHAPE: &str = "a qualified name must consist of an optional DNS subdomain prefix, one '/', and a name \
     (e.g. 'topology.liqo.io/region')";
/// What a label key's name part and a label value are called in their problems.
pub const NAME_PART: &str = "name part";
pub const LABEL_VALUE: &str = "a valid label value";
/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, whole.
pub const LABEL_RE: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Labels joined by dots, whole.
pub const SUBDOMAIN_RE: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A name part or a label value of any length, whole.
pub const NAME_PART_RE: &str = "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";

/// `must be no more than MAX characters (it is LEN)`.
pub fn too_long(max: usize, len: impl Display) -> String {
    format!("must be no more than {max} characters (it is {len})")
}

/// The subdomain's length problem: it does not say the length.
pub fn subdomain_too_long() -> String {
    format!("must be no more than {MAX_SUBDOMAIN_LEN} characters")
}

/// A name part's (or label value's) length problem.
pub fn name_part_too_long(what: &str, len: impl Display) -> String {
    format!("{what} {}", too_long(MAX_LABEL_LEN, len))
}

/// A name part's (or label value's) shape problem.
pub fn name_part_shape(what: &str) -> String {
    format!(
        "{what} must consist of alphanumeric characters, '-', '_' or '.', and must start and end \
         with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345')"
    )
}

/// Why a string is not an RFC 1123 label; `None` when it is one.
pub fn rfc1123_label_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some(EMPTY.into());
    }
    if s.len() > MAX_LABEL_LEN {
        return Some(too_long(MAX_LABEL_LEN, s.len()));
    }
    if !label_shaped(s) {
        return Some(LABEL_SHAPE.into());
    }
    None
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, of any length.
fn label_shaped(s: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    s.bytes().all(|b| alnum(&b) || b == b'-')
        && s.as_bytes().first().is_some_and(alnum)
        && s.as_bytes().last().is_some_and(alnum)
}

/// Why a string is not a DNS-1123 subdomain (a node name, a label key prefix); `None` when it is one.
pub fn dns1123_subdomain_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some(EMPTY.into());
    }
    if s.len() > MAX_SUBDOMAIN_LEN {
        return Some(subdomain_too_long());
    }
    // Kubernetes' IsDNS1123Subdomain limits the whole name to 253 characters, not each label to 63:
    // a node name with a 64-character label is valid, and a selector naming it must be too.
    if !s.split('.').all(label_shaped) {
        return Some(SUBDOMAIN_SHAPE.into());
    }
    None
}

/// The name-part rule shared by label keys and label values: at most 63 characters of
/// `[A-Za-z0-9_.-]`, starting and ending alphanumeric.
fn name_part_problem(s: &str, what: &str) -> Option<String> {
    if s.len() > MAX_LABEL_LEN {
        return Some(name_part_too_long(what, s.len()));
    }
    let ok = s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let bytes = s.as_bytes();
    if !ok || !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return Some(name_part_shape(what));
    }
    None
}

/// Why a string is not a qualified name (a label key): `[prefix/]name`; `None` when it is one.
pub fn qualified_name_problem(s: &str) -> Option<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Some(PREFIX_EMPTY.into());
        }
        if let Some(p) = dns1123_subdomain_problem(prefix) {
            return Some(format!("{PREFIX_PART} {p}"));
        }
    }
    if name.is_empty() {
        return Some(NAME_EMPTY.into());
    }
    if name.contains('/') {
        return Some(QUALIFIED_SHAPE.into());
    }
    name_part_problem(name, NAME_PART)
}

/// Why a string is not a valid label value (empty is valid); `None` when it is one.
pub fn label_value_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    name_part_problem(s, LABEL_VALUE)
}

/// Why a remote namespace name cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteNameError {
    #[error("{MISSING_SELECTED_NAME}")]
    MissingSelectedName,
    #[error("{}", default_name_too_long(name, name.len(), cluster_id, cluster_id.len(), *max_namespace, namespace, namespace.len()))]
    DefaultNameTooLong { name: String, namespace: String, cluster_id: String, max_namespace: usize },
    #[error("{}", invalid_name(super::field::quoted(name), name.len(), problem))]
    InvalidName { name: String, problem: String },
    #[error("{}", exists_everywhere(name, *same_name))]
    ExistsEverywhere { name: String, same_name: bool },
    #[error("the local cluster id is not known yet, so the DefaultName remote name cannot be derived")]
    UnknownClusterId,
}

// The words of each RemoteNameError, as functions of what they show, so that the
// ValidatingAdmissionPolicy generator (`crate::policy`) renders them with placeholders.

pub const MISSING_SELECTED_NAME: &str =
    "SelectedName needs spec.remoteNamespaceName, the name of the namespace to create in the remote clusters";

pub(crate) fn default_name_too_long(
    name: &str,
    len: impl Display,
    cluster_id: &str,
    id_len: impl Display,
    max_namespace: impl Display,
    namespace: &str,
    ns_len: impl Display,
) -> String {
    format!(
        "the remote namespace name {name:?} is {len} characters, over the limit of 63 for a \
         namespace name: with cluster id {cluster_id:?} ({id_len} characters) the DefaultName \
         strategy fits local namespaces of at most {max_namespace} characters, and {namespace:?} \
         is {ns_len}; use a shorter namespace, or namespaceMappingStrategy EnforceSameName or \
         SelectedName"
    )
}

/// `shown` is the name as [`super::field::quoted`] shows it.
pub(crate) fn invalid_name(shown: impl Display, len: impl Display, problem: impl Display) -> String {
    format!(
        "the remote namespace name {shown} ({len} characters) is not a valid namespace name: {problem}; \
         choose another spec.remoteNamespaceName"
    )
}

pub(crate) fn exists_everywhere(name: &str, same_name: bool) -> String {
    let fix = if same_name {
        "offload this namespace with namespaceMappingStrategy DefaultName, or SelectedName with \
         another spec.remoteNamespaceName"
    } else {
        "choose another spec.remoteNamespaceName"
    };
    format!(
        "the remote namespace name {name:?} is a namespace every Kubernetes cluster already has: \
         Liqo never owns it, so creating it in the remote clusters always fails \
         (CreationLoopBackOff, phase AllFailed); {fix}"
    )
}

/// Namespaces every Kubernetes cluster has: a remote namespace of that name is never Liqo's.
pub const NAMESPACES_EVERYWHERE: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// The remote namespace name a strategy derives for `namespace` (docs/behaviour.md, "Derived remote names"), checked to be a valid
/// namespace name.
pub fn remote_namespace_name(
    strategy: &NamespaceMappingStrategy,
    namespace: &str,
    selected: Option<&str>,
    cluster_id: Option<&str>,
) -> Result<String, RemoteNameError> {
    let name = match strategy {
        NamespaceMappingStrategy::EnforceSameName => namespace.to_owned(),
        NamespaceMappingStrategy::SelectedName => match selected {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => return Err(RemoteNameError::MissingSelectedName),
        },
        // An unsupported strategy is reported on its own; name it as the default would.
        NamespaceMappingStrategy::DefaultName | NamespaceMappingStrategy::Unsupported(_) => {
            let id = cluster_id.ok_or(RemoteNameError::UnknownClusterId)?;
            let name = [namespace, id].join("-");
            if name.len() > MAX_LABEL_LEN && rfc1123_label_problem(namespace).is_none() {
                return Err(RemoteNameError::DefaultNameTooLong {
                    max_namespace: max_namespace_len(id),
                    namespace: namespace.to_owned(),
                    cluster_id: id.to_owned(),
                    name,
                });
            }
            name
        }
    };
    if let Some(problem) = rfc1123_label_problem(&name) {
        return Err(RemoteNameError::InvalidName { name, problem });
    }
    if NAMESPACES_EVERYWHERE.contains(&name.as_str()) {
        let same_name = *strategy == NamespaceMappingStrategy::EnforceSameName;
        return Err(RemoteNameError::ExistsEverywhere { name, same_name });
    }
    Ok(name)
}

/// How long a local namespace may be for DefaultName with this cluster id.
pub fn max_namespace_len(cluster_id: &str) -> usize {
    MAX_LABEL_LEN.saturating_sub(cluster_id.len() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use NamespaceMappingStrategy::*;

    const UUID: &str = "b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a";

    #[test]
    fn a_subdomain_limits_its_length_not_its_labels() {
        // As k8s.io/apimachinery's IsDNS1123Subdomain: 253 in all, any label length.
        assert_eq!(dns1123_subdomain_problem(&"a".repeat(64)), None);
        assert_eq!(dns1123_subdomain_problem(&format!("{}.example.com", "a".repeat(100))), None);
        assert!(dns1123_subdomain_problem(&"a".repeat(254)).is_some());
        assert!(dns1123_subdomain_problem("a..b").is_some());
        assert!(rfc1123_label_problem(&"a".repeat(64)).is_some());
    }

    #[test]
    fn labels() {
        assert_eq!(rfc1123_label_problem("abc-1"), None);
        assert!(rfc1123_label_problem("-abc").is_some());
        assert!(rfc1123_label_problem("Abc").is_some());
        assert!(rfc1123_label_problem(&"a".repeat(64)).unwrap().contains("63"));
        assert_eq!(rfc1123_label_problem(&"a".repeat(63)), None);
    }

    #[test]
    fn qualified_names_and_values() {
        assert_eq!(qualified_name_problem("topology.liqo.io/region"), None);
        assert_eq!(qualified_name_problem("Region_1"), None);
        assert!(qualified_name_problem("a/b/c").is_some());
        assert!(qualified_name_problem("/b").unwrap().contains("prefix"));
        assert!(qualified_name_problem("Bad_Prefix/x").unwrap().contains("prefix"));
        assert!(qualified_name_problem("bad key").is_some());
        assert!(qualified_name_problem(&"k".repeat(64)).unwrap().contains("63"));
        assert_eq!(label_value_problem(""), None);
        assert_eq!(label_value_problem("eu-west_1.a"), None);
        assert!(label_value_problem("eu west").is_some());
        assert!(label_value_problem("-x").is_some());
    }

    #[test]
    fn derived_names() {
        assert_eq!(
            remote_namespace_name(&DefaultName, "web", None, Some(UUID)).unwrap(),
            format!("web-{UUID}")
        );
        assert_eq!(remote_namespace_name(&EnforceSameName, "web", None, None).unwrap(), "web");
        assert_eq!(remote_namespace_name(&SelectedName, "web", Some("x"), None).unwrap(), "x");
        assert_eq!(
            remote_namespace_name(&SelectedName, "web", Some(""), None),
            Err(RemoteNameError::MissingSelectedName)
        );
        assert_eq!(
            remote_namespace_name(&DefaultName, "web", None, None),
            Err(RemoteNameError::UnknownClusterId)
        );
    }

    #[test]
    fn names_every_cluster_has_are_never_liqo_s() {
        for name in NAMESPACES_EVERYWHERE {
            let err = remote_namespace_name(&SelectedName, "web", Some(name), None).unwrap_err();
            assert_eq!(err, RemoteNameError::ExistsEverywhere { name: name.into(), same_name: false });
            assert!(err.to_string().ends_with("always fails (CreationLoopBackOff, phase AllFailed); choose another spec.remoteNamespaceName"), "{err}");
            let err = remote_namespace_name(&EnforceSameName, name, None, None).unwrap_err();
            assert!(
                err.to_string().contains("offload this namespace with namespaceMappingStrategy DefaultName"),
                "{err}"
            );
        }
        // DefaultName always adds the cluster id.
        assert!(remote_namespace_name(&DefaultName, "default", None, Some(UUID)).is_ok());
        assert!(remote_namespace_name(&SelectedName, "web", Some("kube-system-2"), None).is_ok());
    }

    #[test]
    fn too_long_default_name_says_how_long_the_namespace_may_be() {
        let ns = "a-namespace-name-of-27-char";
        assert_eq!(ns.len(), 27);
        let err = remote_namespace_name(&DefaultName, ns, None, Some(UUID)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the remote namespace name \"{ns}-{UUID}\" is 64 characters, over the limit of 63 for a \
                 namespace name: with cluster id \"{UUID}\" (36 characters) the DefaultName strategy \
                 fits local namespaces of at most 26 characters, and \"{ns}\" is 27; use a shorter \
                 namespace, or namespaceMappingStrategy EnforceSameName or SelectedName"
            )
        );
        // 26 characters fit exactly.
        assert!(remote_namespace_name(&DefaultName, &ns[..26], None, Some(UUID)).is_ok());
    }

    #[test]
    fn selected_name_must_be_a_label() {
        let err = remote_namespace_name(&SelectedName, "web", Some("Web_1"), None).unwrap_err();
        assert!(matches!(err, RemoteNameError::InvalidName { .. }));
        assert!(err.to_string().starts_with("the remote namespace name \"Web_1\" (5 characters) is not a valid namespace name: a lowercase RFC 1123 label"));
    }
}

//! Field errors in the style of Kubernetes' `field.Error`, so that what kubectl prints for us reads
//! like what it prints for the API server's own validation.

use std::fmt;

/// One problem with one field of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON-ish path from the object root, e.g. `spec.clusterSelector.nodeSelectorTerms[0]`.
    pub path: String,
    pub kind: FieldErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// The value is not one of a fixed set.
    Unsupported { value: String, supported: Vec<String> },
    /// The value is malformed; `detail` says what is expected.
    Invalid { value: String, detail: String },
    /// A value is needed and missing.
    Required { detail: String },
    /// The field may not be set (in this context).
    Forbidden { detail: String },
}

impl FieldError {
    pub fn unsupported(path: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        Self {
            path: path.into(),
            kind: FieldErrorKind::Unsupported {
                value: value.to_owned(),
                supported: supported.iter().map(|s| (*s).to_owned()).collect(),
            },
        }
    }

    pub fn invalid(path: impl Into<String>, value: &str, detail: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            kind: FieldErrorKind::Invalid { value: value.to_owned(), detail: detail.into() },
        }
    }

    pub fn required(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { path: path.into(), kind: FieldErrorKind::Required { detail: detail.into() } }
    }

    pub fn forbidden(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { path: path.into(), kind: FieldErrorKind::Forbidden { detail: detail.into() } }
    }
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
        }
    }
}

/// Joins errors as Kubernetes' `ErrorList.ToAggregate()` does: one error alone, several as `[a, b]`.
pub fn aggregate(errors: &[FieldError]) -> String {
    match errors {
        [] => String::new(),
        [one] => one.to_string(),
        many => {
            let parts: Vec<String> = many.iter().map(ToString::to_string).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_kubernetes() {
        let e = FieldError::unsupported("spec.x", "Equals", &["In", "NotIn"]);
        assert_eq!(e.to_string(), r#"spec.x: Unsupported value: "Equals": supported values: "In", "NotIn""#);
        let r = FieldError::required("spec.y", "must be set");
        assert_eq!(r.to_string(), "spec.y: Required value: must be set");
        assert_eq!(aggregate(std::slice::from_ref(&r)), "spec.y: Required value: must be set");
        assert_eq!(
            aggregate(&[r.clone(), FieldError::forbidden("spec.z", "no")]),
            "[spec.y: Required value: must be set, spec.z: Forbidden: no]"
        );
    }
}

//! The objects `plan` is given, read as `kubectl apply -f` reads a file: YAML or JSON, several
//! documents separated by `---`, and `List`s whose items are objects. Pure: text in, items out.

use serde::Deserialize;
use serde_json::Value;

use crate::crd::NamespaceOffloading;
use crate::liqo::{OFFLOADING_GROUP, OFFLOADING_VERSIONS};

/// Why the input could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("could not read {source_name}: {detail}")]
    Read { source_name: String, detail: String },
    #[error(
        "{source_name}, document {document}: not YAML or JSON: {detail}; give objects as kubectl apply -f takes them"
    )]
    Syntax { source_name: String, document: usize, detail: String },
}

/// One object of the input.
#[derive(Debug, Clone)]
pub struct Item {
    /// Where it was read: `FILE, document N` (and `item M` inside a List).
    pub source: String,
    pub what: What,
}

#[derive(Debug, Clone)]
pub enum What {
    /// A NamespaceOffloading, with its apiVersion, as decoded (or why it does not decode, naming
    /// the field: the API server's schema would refuse it).
    Offloading {
        api_version: String,
        name: String,
        namespace: Option<String>,
        object: Result<Box<NamespaceOffloading>, String>,
    },
    /// A Namespace the same apply would create.
    Namespace(String),
    /// Anything else: `kind name`, not judged.
    Other(String),
}

/// Reads every object in `text`, which came from `source_name`.
pub fn read(text: &str, source_name: &str) -> Result<Vec<Item>, InputError> {
    let mut items = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = Value::deserialize(doc).map_err(|e| InputError::Syntax {
            source_name: source_name.to_owned(),
            document,
            detail: e.to_string(),
        })?;
        let source = format!("{source_name}, document {document}");
        add(value, source, &mut items);
    }
    Ok(items)
}

/// Adds one document's objects: itself, or a List's items.
fn add(value: Value, source: String, items: &mut Vec<Item>) {
    if value.is_null() {
        return;
    }
    let kind = value["kind"].as_str().unwrap_or_default().to_owned();
    if kind.ends_with("List")
        && let Some(list) = value.get("items").and_then(Value::as_array)
    {
        for (j, item) in list.iter().enumerate() {
            add(item.clone(), format!("{source}, item {}", j + 1), items);
        }
        return;
    }
    let api_version = value["apiVersion"].as_str().unwrap_or_default().to_owned();
    let name = value["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let what = if kind == "NamespaceOffloading" && api_version.split('/').next() == Some(OFFLOADING_GROUP) {
        let namespace = value["metadata"]["namespace"].as_str().map(str::to_owned);
        let object = serde_path_to_error::deserialize::<_, NamespaceOffloading>(value)
            .map(Box::new)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()));
        What::Offloading { api_version, name, namespace, object }
    } else if kind == "Namespace" && api_version == "v1" {
        What::Namespace(name)
    } else {
        What::Other(format!("{} {name}", if kind.is_empty() { "(no kind)" } else { &kind }))
    };
    items.push(Item { source, what });
}

/// Whether `api_version` is one Liqo ever served NamespaceOffloadings in.
pub fn known_version(api_version: &str) -> bool {
    OFFLOADING_VERSIONS.iter().any(|v| api_version == format!("{OFFLOADING_GROUP}/{v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match &i.what {
                What::Offloading { namespace, name, object, .. } => format!(
                    "nsof {}/{name} {}",
                    namespace.as_deref().unwrap_or("-"),
                    if object.is_ok() { "ok" } else { "undecodable" }
                ),
                What::Namespace(n) => format!("ns {n}"),
                What::Other(o) => format!("other {o}"),
            })
            .collect()
    }

    #[test]
    fn yaml_documents_and_lists_as_kubectl_apply_reads_them() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n---\n---\napiVersion: offloading.liqo.io/v1beta1\nkind: NamespaceOffloading\nmetadata:\n  name: offloading\n  namespace: web\nspec:\n  clusterSelector:\n    nodeSelectorTerms: []\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: offloading.liqo.io/v1alpha1\n  kind: NamespaceOffloading\n  metadata: {name: offloading}\n  spec: {}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n";
        let items = read(text, "f.yaml").unwrap();
        assert_eq!(
            names(&items),
            ["ns web", "nsof web/offloading ok", "nsof -/offloading ok", "other ConfigMap c"]
        );
        assert_eq!(items[2].source, "f.yaml, document 4, item 1");
    }

    #[test]
    fn json_is_yaml_too_and_a_bad_field_is_named() {
        let text = r#"{"apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
            "metadata": {"name": "offloading", "namespace": "web"},
            "spec": {"clusterSelector": {"nodeSelectorTerms": "all"}}}"#;
        let items = read(text, "-").unwrap();
        let What::Offloading { object: Err(e), .. } = &items[0].what else { panic!("{items:?}") };
        assert!(e.starts_with("spec.clusterSelector.nodeSelectorTerms: invalid type"), "{e}");
    }

    #[test]
    fn text_that_is_not_yaml_says_where() {
        let e = read("a: [\n", "f.yaml").unwrap_err().to_string();
        assert!(e.starts_with("f.yaml, document 1: not YAML or JSON: "), "{e}");
        assert!(known_version("offloading.liqo.io/v1beta1") && !known_version("offloading.liqo.io/v2"));
    }
}

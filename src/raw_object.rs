//! Objects as the API server sends them, decoded one at a time: one stored object that does not fit
//! its Rust type (a CRD without this schema, a field written by another tool or Liqo version)
//! becomes a [`DecodeError`] naming the field, rather than making a whole list unreadable. Read so
//! by the reconcile loop's watches and by `diagnose`.

use kube::Resource;
use kube::core::{ApiResource, ObjectMeta};
use serde::de::DeserializeOwned;

/// Why a stored object could not be read as its Rust type: the field and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DecodeError {
    pub path: String,
    pub message: String,
}

/// Decodes one object from its JSON text into `K`, naming the field that does not fit.
/// managedFields are dropped: nobody here reads them, and at scale they are as big as the object
/// (a field per entry).
pub fn decode_text<K: Resource + DeserializeOwned>(text: &str) -> Result<K, DecodeError> {
    match serde_json::from_str::<K>(text) {
        Ok(mut k) => {
            k.meta_mut().managed_fields = None;
            Ok(k)
        }
        // Path tracking allocates per key: it runs only to explain a failure.
        Err(plain) => {
            let mut de = serde_json::Deserializer::from_str(text);
            match serde_path_to_error::deserialize::<_, K>(&mut de) {
                Err(e) => {
                    Err(DecodeError { path: e.path().to_string(), message: e.into_inner().to_string() })
                }
                Ok(_) => Err(DecodeError { path: ".".into(), message: plain.to_string() }),
            }
        }
    }
}

/// An object as the API server sent it: its JSON text, and its metadata read from that text.
/// Unlike [`kube::core::DynamicObject`] (a JSON tree, several times the size of the text), a page of a list
/// waits as text while its objects are decoded one at a time: at 1 000 NamespaceOffloadings with a
/// hundred clusters, a restart's peak memory was the trees of one page.
#[derive(Clone, Debug)]
pub struct RawObject {
    pub metadata: ObjectMeta,
    text: Box<serde_json::value::RawValue>,
}

impl RawObject {
    /// The object's JSON text, as the API server sent it.
    pub fn text(&self) -> &str {
        self.text.get()
    }
}

impl<'de> serde::Deserialize<'de> for RawObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Metadata {
            #[serde(default)]
            metadata: ObjectMeta,
        }
        let text = Box::<serde_json::value::RawValue>::deserialize(d)?;
        let Metadata { mut metadata } =
            serde_json::from_str(text.get()).map_err(<D::Error as serde::de::Error>::custom)?;
        metadata.managed_fields = None;
        Ok(Self { metadata, text })
    }
}

impl Resource for RawObject {
    type DynamicType = ApiResource;
    type Scope = kube::core::DynamicResourceScope;

    fn group(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn kind(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::crd::{MappingPhase, NamespaceMap, NamespaceOffloading};

    #[test]
    fn a_good_object_decodes() {
        let o = raw(json!({
            "apiVersion": "virtualkubelet.liqo.io/v1alpha1", "kind": "NamespaceMap",
            "metadata": {"name": "m", "namespace": "t", "resourceVersion": "7"},
            "spec": {"desiredMapping": {"a": "a-x"}},
            "status": {"currentMapping": {"a": {"remoteNamespace": "a-x", "phase": "SomethingNew"}}}
        }));
        let m: NamespaceMap = decode_text(o.text()).unwrap();
        assert_eq!(m.spec.desired_mapping["a"], "a-x");
        assert_eq!(m.metadata.resource_version.as_deref(), Some("7"));
        // A phase from another Liqo version does not make the map unreadable.
        let phase = &m.status.unwrap().current_mapping["a"].phase;
        assert_eq!(phase, &MappingPhase::Unsupported("SomethingNew".into()));
    }

    #[test]
    fn a_bad_object_names_the_field() {
        let o = raw(json!({
            "apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
            "metadata": {"name": "offloading", "namespace": "n"},
            "spec": {"clusterSelector": {"nodeSelectorTerms": "all"}}
        }));
        let e = decode_text::<NamespaceOffloading>(o.text()).unwrap_err();
        assert_eq!(e.path, "spec.clusterSelector.nodeSelectorTerms");
        assert!(e.message.contains("expected a sequence"), "{e}");
    }

    fn raw(v: serde_json::Value) -> RawObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_raw_object_decodes_as_its_value_does() {
        let v = json!({
            "apiVersion": "virtualkubelet.liqo.io/v1alpha1", "kind": "NamespaceMap",
            "metadata": {"name": "m", "namespace": "t", "resourceVersion": "7",
                         "managedFields": [{"manager": "x", "operation": "Update"}]},
            "spec": {"desiredMapping": {"a": "a-x"}}
        });
        let o = raw(v.clone());
        assert_eq!(o.metadata.name.as_deref(), Some("m"));
        assert_eq!(o.metadata.managed_fields, None);
        let m: NamespaceMap = decode_text(o.text()).unwrap();
        let mut from_value: NamespaceMap = serde_json::from_value(v).unwrap();
        from_value.metadata.managed_fields = None;
        assert_eq!(m, from_value);
        let e = decode_text::<NamespaceOffloading>(
            r#"{"metadata": {"name": "offloading"}, "spec": {"clusterSelector": {"nodeSelectorTerms": "all"}}}"#,
        )
        .unwrap_err();
        assert_eq!(e.path, "spec.clusterSelector.nodeSelectorTerms");
    }
}

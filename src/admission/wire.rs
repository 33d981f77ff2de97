//! The AdmissionReview answer as the API defines it on the wire. kube-core serializes the
//! response's `patch` (a `Vec<u8>`) as an array of numbers (kube-rs/kube#1781), 3.6 bytes per
//! byte; the API's JSON encoding of `[]byte` is a base64 string, which is what every Go webhook
//! sends. Everything else is kube-core's own serialization.

use base64::Engine as _;
use kube::core::admission::{AdmissionResponse, AdmissionReview};
use kube::core::{DynamicObject, TypeMeta};
use serde::Serialize;

#[derive(Serialize)]
struct Review<'a> {
    #[serde(flatten)]
    types: &'a TypeMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<Response<'a>>,
}

#[derive(Serialize)]
struct Response<'a> {
    #[serde(flatten)]
    inner: &'a AdmissionResponse,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
}

/// The JSON body of an answer (an answer carries no request), with the patch in base64.
pub fn to_json(mut review: AdmissionReview<DynamicObject>) -> Result<Vec<u8>, serde_json::Error> {
    let patch = review.response.as_mut().and_then(|r| r.patch.take());
    let wire = Review {
        types: &review.types,
        response: review.response.as_ref().map(|inner| Response {
            inner,
            patch: patch.map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
        }),
    };
    serde_json::to_vec(&wire)
}

#[cfg(test)]
mod tests {
    use super::*;
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{AddOperation, Patch, PatchOperation};
    use kube::core::admission::AdmissionRequest;
    use serde_json::{Value, json};

    #[test]
    fn the_patch_is_a_base64_string_and_the_rest_is_kube_cores() {
        let req: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "X"},
                "resource": {"group": "", "version": "v1", "resource": "xs"},
                "operation": "CREATE", "userInfo": {}, "name": "x", "namespace": "n", "object": {}}
        }))
        .unwrap();
        let req: AdmissionRequest<DynamicObject> = req.try_into().unwrap();
        let op = AddOperation { path: PointerBuf::from_tokens(["a"]), value: json!("b") };
        let resp = AdmissionResponse::from(&req).with_patch(Patch(vec![PatchOperation::Add(op)])).unwrap();
        let expected = serde_json::to_value(resp.clone().into_review()).unwrap();
        let ours: Value = serde_json::from_slice(&to_json(resp.into_review()).unwrap()).unwrap();
        let patch = ours["response"]["patch"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(patch).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&decoded).unwrap(),
            json!([{"op": "add", "path": "/a", "value": "b"}])
        );
        // Every other field as kube-core writes it.
        let (mut a, mut b) = (ours.clone(), expected.clone());
        a["response"].as_object_mut().unwrap().remove("patch");
        b["response"].as_object_mut().unwrap().remove("patch");
        assert_eq!(a, b);
        assert_eq!(ours["response"]["patchType"], "JSONPatch");
        assert_eq!(ours["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(ours["response"]["uid"], "u-1");
    }
}

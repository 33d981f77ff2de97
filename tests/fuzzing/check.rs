//! What every answer must be, whatever came in: a valid AdmissionReview that echoes the
//! request's uid and apiVersion, or a JSON 4xx error; bounded in size; a patch, when there is one,
//! that decodes and applies, and leaves a short annotation.

use base64::Engine as _;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use serde_json::Value;

/// The largest answer allowed, whatever the review held.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The largest `liqo.io/scheduling-enabled` value allowed.
pub const MAX_ANNOTATION_BYTES: usize = 1024;
const ANNOTATION: &str = "liqo.io/scheduling-enabled";

/// One broken property: `kind` is what is counted, `detail` what a person reads.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: &'static str,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: &'static str, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into() }
    }
}

/// What an answer was, for the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Allowed,
    Patched,
    Denied,
    /// An HTTP 4xx with a JSON error body.
    Refused(u16),
}

/// Checks one answer to `input`; every broken property is listed.
pub fn answer(
    input: &[u8],
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> (Option<Verdict>, Vec<Failure>) {
    let mut failures = Vec::new();
    if body.len() >= MAX_ANSWER_BYTES {
        failures.push(Failure::new(
            "answer-too-large",
            format!("{} bytes (limit {MAX_ANSWER_BYTES}) for a {}-byte review", body.len(), input.len()),
        ));
    }
    if content_type != Some("application/json") {
        failures.push(Failure::new("not-json-content-type", format!("{content_type:?} (status {status})")));
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            failures.push(Failure::new("answer-not-json", format!("status {status}: {e}")));
            return (None, failures);
        }
    };
    let verdict = match status {
        200 => review(input, v, &mut failures),
        400..=499 => {
            let ok = v["error"].as_str().is_some_and(|m| !m.is_empty())
                && v["code"].as_u64() == Some(u64::from(status));
            if !ok {
                failures.push(Failure::new("bad-error-body", format!("status {status}: {}", short(&v))));
            }
            Some(Verdict::Refused(status))
        }
        other => {
            failures.push(Failure::new("bad-status", format!("status {other}: {}", short(&v))));
            None
        }
    };
    (verdict, failures)
}

fn review(input: &[u8], mut v: Value, failures: &mut Vec<Failure>) -> Option<Verdict> {
    let root: Value = serde_json::from_slice(input).unwrap_or_default();
    let request = &root["request"];
    let patch = v.get_mut("response").and_then(|r| r.as_object_mut()).and_then(|r| r.remove("patch"));
    let patch_type = v["response"]["patchType"].as_str().map(str::to_owned);
    // The patch is checked on its own: kube-core reads it as bytes, the API defines it as base64.
    let typed: AdmissionReview<DynamicObject> = match serde_json::from_value(v) {
        Ok(r) => r,
        Err(e) => {
            failures.push(Failure::new("not-an-admission-review", e.to_string()));
            return None;
        }
    };
    let Some(resp) = typed.response else {
        failures.push(Failure::new("no-response", "an AdmissionReview without a response"));
        return None;
    };
    if let Some(uid) = request["uid"].as_str()
        && resp.uid != uid
    {
        failures.push(Failure::new(
            "uid-not-echoed",
            format!("request uid {uid:?}, response uid {:?}", resp.uid),
        ));
    }
    // kube-core echoes the request's TypeMeta, as the API server expects.
    if root["apiVersion"].as_str().is_some_and(|a| a != typed.types.api_version)
        || root["kind"].as_str().is_some_and(|k| k != typed.types.kind)
    {
        failures.push(Failure::new(
            "type-meta-not-echoed",
            format!(
                "request {} {}, answer {:?} {:?}",
                root["apiVersion"], root["kind"], typed.types.api_version, typed.types.kind
            ),
        ));
    }
    if !resp.allowed && resp.result.message.is_empty() {
        failures.push(Failure::new("denial-without-message", format!("uid {:?}", resp.uid)));
    }
    let Some(patch) = patch else {
        return Some(if resp.allowed { Verdict::Allowed } else { Verdict::Denied });
    };
    if patch_type.as_deref() != Some("JSONPatch") {
        failures.push(Failure::new("bad-patch-type", format!("{patch_type:?}")));
    }
    let bytes: Vec<u8> = match &patch {
        Value::String(s) => match base64::engine::general_purpose::STANDARD.decode(s) {
            Ok(b) => b,
            Err(e) => {
                failures.push(Failure::new("patch-not-base64", e.to_string()));
                return Some(Verdict::Patched);
            }
        },
        // kube-core's own serialization (kube-rs/kube#1781), until the answer sends base64.
        other => match serde_json::from_value(other.clone()) {
            Ok(b) => b,
            Err(e) => {
                failures.push(Failure::new("patch-not-bytes", e.to_string()));
                return Some(Verdict::Patched);
            }
        },
    };
    let patch: json_patch::Patch = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => {
            failures.push(Failure::new("patch-not-a-json-patch", e.to_string()));
            return Some(Verdict::Patched);
        }
    };
    let mut object = request["object"].clone();
    if let Err(e) = json_patch::patch(&mut object, &patch) {
        failures.push(Failure::new("patch-does-not-apply", e.to_string()));
        return Some(Verdict::Patched);
    }
    match object["metadata"]["annotations"][ANNOTATION].as_str() {
        None => failures.push(Failure::new("patch-without-annotation", short(&object["metadata"]))),
        Some(a) if a.len() >= MAX_ANNOTATION_BYTES => failures.push(Failure::new(
            "annotation-too-large",
            format!("{} bytes (limit {MAX_ANNOTATION_BYTES})", a.len()),
        )),
        Some(_) => {}
    }
    Some(Verdict::Patched)
}

/// The start of a JSON value, for a failure's detail.
pub fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

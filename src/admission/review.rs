//! One AdmissionReview body in, one answer out: the envelope around the pure verdict.
//! No HTTP here, so that the router, the benchmark and tests share exactly this code.

use std::borrow::Cow;
use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, GroupVersionResource, Resource};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use tracing::{error, warn};

use crate::crd::{NamespaceOffloading, NamespaceOffloadingSpec};
use crate::liqo::{NAMESPACE_OFFLOADINGS, OFFLOADING_GROUP, OFFLOADING_VERSIONS, SCHEDULING_ENABLED};
use crate::offloading::field::{MAX_LISTED_ERRORS, truncate};
use crate::offloading::{Context, Verdict, review_create, review_update, scheduling_annotation};

/// What to do with a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Enforcement {
    /// Refuse the object.
    #[default]
    Deny,
    /// Let it in, with every denial as a warning (audit mode for a live cluster).
    Warn,
}

/// Which webhook is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Validate,
    Mutate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validate => "validate",
            Self::Mutate => "mutate",
        }
    }
}

/// The most of a request's own text (a path, a decode error) that a message quotes.
const MAX_QUOTED_BYTES: usize = 512;

/// A body that is not an AdmissionReview at all: answered with HTTP 400, not a review.
#[derive(Debug, thiserror::Error)]
pub enum BadBody {
    #[error("the request body is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the request body is not an AdmissionReview: {0}")]
    NotReview(serde_json::Error),
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

/// How a review ended, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Denied,
    /// Denied, but let in with warnings (`--enforcement=warn`).
    Warned,
    /// The object could not be read.
    Invalid,
    /// Not ours to judge (DELETE, CONNECT, another resource).
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Warned => "warned",
            Self::Invalid => "invalid",
            Self::Skipped => "skipped",
        }
    }
}

/// The answer to one review, with what metrics and logs need.
pub struct Answer {
    pub review: AdmissionReview<DynamicObject>,
    pub outcome: Outcome,
    pub operation: &'static str,
}

/// Answers one review body.
pub fn answer(
    body: &[u8],
    endpoint: Endpoint,
    ctx: &Context<'_>,
    enforcement: Enforcement,
) -> Result<Answer, BadBody> {
    // Path tracking costs an allocation per key (a third of a review's CPU time under load), so it
    // runs only to explain a body that failed to decode.
    // Valid UTF-8 checked once for the whole body (SIMD-fast) rather than string by string as
    // `from_slice` does; a body that is not UTF-8 gets `from_slice`'s own error.
    let decoded = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    };
    let review: AdmissionReview<Reviewed> = match decoded {
        Ok(review) => review,
        // Not JSON at all (trailing bytes after a review included): nothing to explain by path.
        Err(e) if e.is_syntax() || e.is_eof() => return Err(BadBody::NotJson(e)),
        Err(_) => match serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body)) {
            Ok(review) => review,
            Err(e) => return undecodable(body, endpoint, &e),
        },
    };
    let req: AdmissionRequest<Reviewed> = review.try_into().map_err(|_| BadBody::NoRequest)?;
    let operation = operation_name(&req.operation);
    let resp = AdmissionResponse::from(&req);
    if !is_ours(&req.resource, req.sub_resource.as_deref()) {
        return Ok(not_ours(resp, &req.resource, req.sub_resource.as_deref(), operation));
    }
    let (object, old_object) = (req.object.map(|o| o.0), req.old_object.map(|o| o.0));
    let (resp, outcome) = match (&req.operation, &object) {
        (Operation::Create | Operation::Update, Some(obj)) => {
            let ns = req.namespace.as_deref().or(obj.metadata.namespace.as_deref()).unwrap_or_default();
            match endpoint {
                Endpoint::Validate => {
                    let verdict = match (&req.operation, &old_object) {
                        (Operation::Update, Some(old)) => review_update(old, obj, ns, ctx),
                        _ => review_create(obj, ns, ctx),
                    };
                    judge(resp, verdict, enforcement)
                }
                Endpoint::Mutate => (mutate(resp, obj, ctx), Outcome::Allowed),
            }
        }
        (Operation::Create | Operation::Update, None) => {
            let mut resp = resp.deny("the AdmissionReview has no object to judge");
            resp.result.code = 400;
            (resp, Outcome::Invalid)
        }
        _ => (resp, Outcome::Skipped),
    };
    Ok(Answer { review: resp.into_review(), outcome, operation })
}

/// A NamespaceOffloading as a review carries it, read for what is judged: its name, namespace,
/// annotations and spec. The rest is skipped unread: the API server has already checked it, and
/// its managedFields (a JSON tree per field manager, in object and oldObject alike) were most of
/// the time a review took to decode. The status is not the user's to fix and the API server drops
/// a change to it on this path.
///
/// Boxed: kube-core's request holds two of them (object, oldObject) inline, and the request is
/// moved several times on its way from the decoder; a pointer each keeps those copies small.
#[derive(Clone, Debug)]
pub struct Reviewed(pub Box<NamespaceOffloading>);

impl<'de> Deserialize<'de> for Reviewed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Names, field names and required fields as NamespaceOffloading's own, so that a decode
        // error says what it said.
        #[derive(Deserialize)]
        #[serde(expecting = "struct NamespaceOffloading")]
        struct Wire {
            metadata: Meta,
            spec: NamespaceOffloadingSpec,
        }
        #[derive(Deserialize)]
        #[serde(expecting = "ObjectMeta")]
        struct Meta {
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            namespace: Option<String>,
            #[serde(default)]
            annotations: Option<BTreeMap<String, String>>,
        }
        let Wire { metadata: m, spec } = Wire::deserialize(d)?;
        let metadata = ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            annotations: m.annotations,
            ..ObjectMeta::default()
        };
        Ok(Self(Box::new(NamespaceOffloading { metadata, spec, status: None })))
    }
}

impl Resource for Reviewed {
    type DynamicType = ();
    type Scope = <NamespaceOffloading as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        NamespaceOffloading::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        NamespaceOffloading::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        NamespaceOffloading::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        NamespaceOffloading::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.0.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

fn judge(
    resp: AdmissionResponse,
    verdict: Verdict,
    enforcement: Enforcement,
) -> (AdmissionResponse, Outcome) {
    let mut warnings = bounded(verdict.warnings.iter().cloned(), verdict.warnings.len(), "warnings");
    let outcome = if verdict.allowed() {
        Outcome::Allowed
    } else if enforcement == Enforcement::Warn {
        let would = verdict.errors.iter().map(|e| format!("would be denied (enforcement=warn): {e}"));
        let would = bounded(would, verdict.errors.len(), "errors that would deny it");
        warnings.splice(0..0, would);
        Outcome::Warned
    } else {
        Outcome::Denied
    };
    // No status reason: with one (e.g. "Invalid") kubectl swaps its "Error from server:" prefix
    // for a generic sentence; the API server fills in code 403 itself.
    let mut resp = if outcome == Outcome::Denied { resp.deny(verdict.message()) } else { resp };
    if !warnings.is_empty() {
        resp.warnings = Some(warnings);
    }
    (resp, outcome)
}

/// At most [`MAX_LISTED_ERRORS`] of `total` items, then one line counting the rest: kubectl prints
/// each warning on its own line, and the API server keeps only a few KiB of them.
fn bounded(items: impl Iterator<Item = String>, total: usize, what: &str) -> Vec<String> {
    let mut out: Vec<String> = items.take(MAX_LISTED_ERRORS).collect();
    if total > MAX_LISTED_ERRORS {
        out.push(format!("... and {} more {what}", total - MAX_LISTED_ERRORS));
    }
    out
}

/// Sets `liqo.io/scheduling-enabled`, and nothing else, when it does not already hold the value.
fn mutate(resp: AdmissionResponse, obj: &NamespaceOffloading, ctx: &Context<'_>) -> AdmissionResponse {
    let value = scheduling_annotation(&obj.spec, ctx.generation);
    let annotations = obj.metadata.annotations.as_ref();
    if annotations.and_then(|a| a.get(SCHEDULING_ENABLED)) == Some(&value) {
        return resp;
    }
    let op = match annotations {
        Some(_) => AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations", SCHEDULING_ENABLED]),
            value: Value::String(value),
        },
        None => AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations"]),
            value: json!({ SCHEDULING_ENABLED: value }),
        },
    };
    match resp.clone().with_patch(Patch(vec![PatchOperation::Add(op)])) {
        Ok(r) => r,
        Err(e) => {
            // Serializing a two-string patch cannot fail; if it ever does, admit unpatched.
            error!(error = %e, "could not serialize the annotation patch");
            resp
        }
    }
}

fn is_ours(gvr: &GroupVersionResource, sub_resource: Option<&str>) -> bool {
    gvr.group == OFFLOADING_GROUP
        && gvr.resource == NAMESPACE_OFFLOADINGS
        && OFFLOADING_VERSIONS.contains(&gvr.version.as_str())
        && sub_resource.is_none_or(str::is_empty)
}

/// A registration that sends us something else: let it through, and say so loudly.
fn not_ours(
    resp: AdmissionResponse,
    gvr: &GroupVersionResource,
    sub: Option<&str>,
    operation: &'static str,
) -> Answer {
    let what = match sub {
        Some(s) if !s.is_empty() => format!("{}/{}/{}", gvr.group, gvr.resource, s),
        _ => format!("{}/{} {}", gvr.group, gvr.resource, gvr.version),
    };
    // A hand-made review may carry anything here; what we quote stays short.
    let what = truncate(&what, MAX_QUOTED_BYTES);
    error!(resource = %what, "received a review for a resource this webhook does not judge: check the webhook configuration's rules");
    let mut resp = resp;
    resp.warnings = Some(vec![format!(
        "offloading-webhook does not judge {what}: allowed unchecked; the webhook configuration's rules should name only {NAMESPACE_OFFLOADINGS}.{OFFLOADING_GROUP}"
    )]);
    Answer { review: resp.into_review(), outcome: Outcome::Skipped, operation }
}

/// The typed decode failed: read the envelope loosely to answer with the uid and the field path.
fn undecodable(
    body: &[u8],
    endpoint: Endpoint,
    typed_err: &serde_path_to_error::Error<serde_json::Error>,
) -> Result<Answer, BadBody> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
        .map_err(|e| if e.is_syntax() || e.is_eof() { BadBody::NotJson(e) } else { BadBody::NotReview(e) })?;
    let req: AdmissionRequest<DynamicObject> = review.try_into().map_err(|_| BadBody::NoRequest)?;
    let operation = operation_name(&req.operation);
    let resp = AdmissionResponse::from(&req);
    if !is_ours(&req.resource, req.sub_resource.as_deref()) {
        return Ok(not_ours(resp, &req.resource, req.sub_resource.as_deref(), operation));
    }
    let path = typed_err.path().to_string();
    let path = truncate(&path, MAX_QUOTED_BYTES).into_owned();
    let (which, field) = match path.split_once('.') {
        Some(("request", rest)) => match rest.split_once('.') {
            Some((w @ ("object" | "oldObject"), field)) => (w, field.to_owned()),
            _ => ("request", rest.to_owned()),
        },
        _ => ("request", path.clone()),
    };
    // The position is in the review body, which the person at kubectl never saw; serde quotes the
    // offending value, which may be megabytes long.
    let inner = typed_err.inner().to_string();
    let inner = inner.rsplit_once(" at line ").map_or(inner.as_str(), |(head, _)| head);
    let inner = truncate(inner, MAX_QUOTED_BYTES);
    let message = if which == "request" {
        format!("the AdmissionReview request could not be read: {field}: {inner}")
    } else {
        format!("the NamespaceOffloading ({which}) could not be read: {field}: {inner}")
    };
    warn!(uid = %truncate(&req.uid, 64), endpoint = endpoint.as_str(), %message, "undecodable object");
    let mut resp = resp.deny(&message);
    resp.result.code = 400;
    resp.result.reason = "BadRequest".into();
    Ok(Answer { review: resp.into_review(), outcome: Outcome::Invalid, operation })
}

fn operation_name(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(object: Value) -> Vec<u8> {
        let mut old = object.clone();
        old["metadata"]["labels"] = json!({"step": "before"});
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1",
                "kind": {"group": OFFLOADING_GROUP, "version": "v1beta1", "kind": "NamespaceOffloading"},
                "resource": {"group": OFFLOADING_GROUP, "version": "v1beta1", "resource": NAMESPACE_OFFLOADINGS},
                "name": "offloading", "namespace": "web", "operation": "UPDATE", "userInfo": {},
                "object": object, "oldObject": old}
        }))
        .unwrap()
    }

    /// What is judged is read; the rest of the object, however odd, is not, and changes nothing.
    #[test]
    fn a_reviewed_object_is_read_for_what_is_judged_only() {
        let object = json!({"apiVersion": "offloading.liqo.io/v1beta1", "kind": "NamespaceOffloading",
            "metadata": {"name": "offloading", "namespace": "web", "uid": "x", "generation": 3,
                "labels": {"step": "after"}, "annotations": {SCHEDULING_ENABLED: "true", "a": "b"},
                "managedFields": [{"manager": "m", "operation": "Update", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:step": {}}}}}]},
            "spec": {"podOffloadingStrategy": "Local", "clusterSelector": {"nodeSelectorTerms": []}},
            // Not this webhook's to judge, and the API server drops it on this path anyway.
            "status": {"offloadingPhase": 5, "remoteNamespacesConditions": "not a map"}});
        let r: Reviewed = serde_json::from_value(object.clone()).unwrap();
        assert_eq!(r.0.metadata.name.as_deref(), Some("offloading"));
        assert_eq!(r.0.metadata.namespace.as_deref(), Some("web"));
        assert_eq!(r.0.metadata.annotations.as_ref().map(|a| a.len()), Some(2));
        assert_eq!((r.0.metadata.labels, r.0.metadata.managed_fields, r.0.status), (None, None, None));
        assert_eq!(r.0.spec.pod_offloading_strategy, crate::crd::PodOffloadingStrategy::Local);
        let ctx = Context {
            cluster_id: Some("c"),
            generation: crate::offloading::Generation::V1,
            ..Default::default()
        };
        let a = answer(&update(object), Endpoint::Validate, &ctx, Enforcement::Deny).unwrap();
        assert_eq!(a.outcome, Outcome::Allowed);
    }

    /// Whatever of an object is read, it fails as the whole NamespaceOffloading failed.
    #[test]
    fn a_reviewed_object_fails_with_the_words_of_the_whole_object() {
        for bad in [
            json!(5),
            json!({"metadata": 5, "spec": {}}),
            json!({"metadata": {"name": 5}, "spec": {}}),
            json!({"metadata": {"annotations": ["a"]}, "spec": {}}),
            json!({"metadata": {}}),
            json!({"metadata": {}, "spec": {"podOffloadingStrategy": 1}}),
            json!({"metadata": {}, "spec": {"clusterSelector": {"nodeSelectorTerms": "x"}}}),
        ] {
            let whole = serde_json::from_value::<NamespaceOffloading>(bad.clone()).unwrap_err().to_string();
            let read = serde_json::from_value::<Reviewed>(bad.clone()).unwrap_err().to_string();
            assert_eq!(read, whole, "{bad}");
        }
    }

    /// A body that is not UTF-8 is refused as before, with serde_json's own error.
    #[test]
    fn a_body_that_is_not_utf8_is_not_json() {
        let mut body = update(json!({"metadata": {"name": "offloading"}, "spec": {}}));
        let at = body.windows(10).position(|w| w == b"offloading").unwrap();
        body[at] = 0xff;
        let e = answer(&body, Endpoint::Validate, &Context::default(), Enforcement::Deny).err().unwrap();
        assert!(matches!(e, BadBody::NotJson(_)), "{e}");
        assert!(
            e.to_string().starts_with("the request body is not valid JSON: invalid unicode code point"),
            "{e}"
        );
    }

    /// Required where NamespaceOffloading requires it, so that the message is the one it gave.
    #[test]
    fn an_object_without_spec_is_reported_by_path() {
        let body = update(json!({"metadata": {"name": "offloading"}}));
        let a = answer(&body, Endpoint::Validate, &Context::default(), Enforcement::Deny).unwrap();
        let message = &a.review.response.unwrap().result.message;
        assert_eq!(message, "the AdmissionReview request could not be read: object: missing field `spec`");
    }
}

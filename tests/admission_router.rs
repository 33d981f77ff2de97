//! The admission router driven in memory (no sockets, no TLS) with review fixtures.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use offloading_webhook::admission::{AdmissionState, Enforcement, MAX_BODY_BYTES, router};
use offloading_webhook::cluster::ClusterView;
use offloading_webhook::metrics::Metrics;
use serde_json::{Value, json};
use tower::ServiceExt;

const CLUSTER_ID: &str = "b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a";

fn state(enforcement: Enforcement) -> AdmissionState {
    AdmissionState {
        enforcement,
        cluster: ClusterView::fixed(Some(CLUSTER_ID.into())),
        metrics: Metrics::new(),
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

async fn post_with(state: AdmissionState, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let req = Request::post(path).header("content-type", "application/json").body(Body::from(body)).unwrap();
    let resp = router(state).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes:?}")))
}

async fn validate(name: &str) -> Value {
    let (status, v) =
        post_with(state(Enforcement::Deny), "/validate/namespace-offloading", fixture(name)).await;
    assert_eq!(status, StatusCode::OK);
    v
}

async fn mutate(name: &str) -> Value {
    let (status, v) =
        post_with(state(Enforcement::Deny), "/mutate/namespace-offloading", fixture(name)).await;
    assert_eq!(status, StatusCode::OK);
    v
}

/// Applies the response's JSONPatch to the request's object.
fn patched(review_in: &[u8], review_out: &Value) -> Value {
    let input: Value = serde_json::from_slice(review_in).unwrap();
    let mut obj = input["request"]["object"].clone();
    // The API defines `patch` as base64 in JSON, as Go's encoding of []byte.
    use base64::Engine as _;
    let encoded = review_out["response"]["patch"].as_str().expect("the patch is a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    json_patch::patch(&mut obj, &patch).unwrap();
    obj
}

#[tokio::test]
async fn a_good_object_is_allowed_and_the_envelope_echoes_uid_and_api_version() {
    let v = validate("create-valid.json").await;
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], "7a8b0c1d-0000-4000-8000-000000000001");
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"].get("warnings").is_none());
}

#[tokio::test]
async fn a_bad_selector_is_denied_with_its_field_path_in_both_api_versions() {
    for f in ["create-bad-selector.json", "create-bad-selector-v1beta1.json"] {
        let v = validate(f).await;
        assert_eq!(v["response"]["allowed"], false, "{f}");
        assert_eq!(
            v["response"]["status"]["message"],
            r#"spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[1].operator: Unsupported value: "Equals": supported values: "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt""#
        );
    }
}

#[tokio::test]
async fn a_too_long_namespace_is_denied_with_the_limit() {
    let v = validate("create-long-namespace.json").await;
    let msg = v["response"]["status"]["message"].as_str().unwrap();
    assert!(msg.starts_with(r#"metadata.namespace: Invalid value: "payments-processing-europe-1": the remote namespace name "payments-processing-europe-1-b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a" is 65 characters"#), "{msg}");
    assert!(msg.contains("at most 26 characters"), "{msg}");
}

#[tokio::test]
async fn wrong_name_and_immutable_strategy() {
    let v = validate("create-wrong-name.json").await;
    assert!(
        v["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with(r#"metadata.name: Invalid value: "my-offloading""#)
    );
    let v = validate("update-strategy-change.json").await;
    assert_eq!(v["response"]["allowed"], false);
    assert!(v["response"]["status"]["message"].as_str().unwrap().starts_with(
        r#"spec.namespaceMappingStrategy: Invalid value: "EnforceSameName": field is immutable (it was "DefaultName")"#
    ));
}

#[tokio::test]
async fn an_invalid_object_can_still_get_its_finalizer_and_be_deleted() {
    assert_eq!(validate("update-finalizer-on-invalid.json").await["response"]["allowed"], true);
    let v = validate("delete.json").await;
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"].get("patch").is_none());
}

#[tokio::test]
async fn an_undecodable_object_is_refused_with_code_400_naming_the_field() {
    let v = validate("create-undecodable.json").await;
    assert_eq!(v["response"]["uid"], "7a8b0c1d-0000-4000-8000-000000000001");
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(v["response"]["status"]["code"], 400);
    assert_eq!(
        v["response"]["status"]["message"],
        "the NamespaceOffloading (object) could not be read: spec.clusterSelector.nodeSelectorTerms[0].matchExpressions: invalid type: string \"region=eu\", expected a sequence"
    );
}

#[tokio::test]
async fn another_resource_is_allowed_with_a_warning() {
    for f in ["create-pod.json", "status-subresource.json"] {
        let v = validate(f).await;
        assert_eq!(v["response"]["allowed"], true, "{f}");
        let w = v["response"]["warnings"][0].as_str().unwrap();
        assert!(w.starts_with("offloading-webhook does not judge"), "{w}");
    }
}

#[tokio::test]
async fn warn_mode_turns_denials_into_warnings() {
    let (_, v) = post_with(
        state(Enforcement::Warn),
        "/validate/namespace-offloading",
        fixture("create-bad-selector.json"),
    )
    .await;
    assert_eq!(v["response"]["allowed"], true);
    assert_eq!(
        v["response"]["warnings"][0],
        r#"would be denied (enforcement=warn): spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[1].operator: Unsupported value: "Equals": supported values: "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt""#
    );
}

#[tokio::test]
async fn mutation_sets_only_the_annotation() {
    for f in ["create-valid.json", "create-valid-no-annotations.json"] {
        let input = fixture(f);
        let out = mutate(f).await;
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        let mut expected: Value =
            serde_json::from_slice::<Value>(&input).unwrap()["request"]["object"].clone();
        let anns = expected["metadata"].as_object_mut().unwrap().entry("annotations").or_insert(json!({}));
        anns["liqo.io/scheduling-enabled"] = json!("true");
        assert_eq!(patched(&input, &out), expected, "{f}");
    }
    let input = fixture("create-bad-selector.json");
    let out = mutate("create-bad-selector.json").await;
    assert_eq!(
        patched(&input, &out)["metadata"]["annotations"]["liqo.io/scheduling-enabled"],
        r#"Invalid Cluster Selector : spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[1].operator: Unsupported value: "Equals": supported values: "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt""#
    );
}

#[tokio::test]
async fn mutation_is_a_no_op_when_the_annotation_already_holds_the_value() {
    let mut review: Value = serde_json::from_slice(&fixture("create-valid.json")).unwrap();
    review["request"]["object"]["metadata"]["annotations"]["liqo.io/scheduling-enabled"] = json!("true");
    let (_, v) = post_with(
        state(Enforcement::Deny),
        "/mutate/namespace-offloading",
        serde_json::to_vec(&review).unwrap(),
    )
    .await;
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"].get("patch").is_none());
}

#[tokio::test]
async fn bodies_that_are_not_reviews_get_http_errors_in_json() {
    let s = || state(Enforcement::Deny);
    let (status, v) = post_with(s(), "/validate/namespace-offloading", b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().starts_with("the request body is not valid JSON"), "{v}");

    let (status, v) =
        post_with(s(), "/validate/namespace-offloading", br#"{"hello": "world"}"#.to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["error"],
        "the request body is not an AdmissionReview: missing field `apiVersion` at line 1 column 18"
    );

    let (status, v) = post_with(
        s(),
        "/validate/namespace-offloading",
        br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"], "the AdmissionReview has no request");

    let (status, v) = post_with(s(), "/mutate/namespace-offloading", br#"{"request": 5}"#.to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().starts_with("the request body is not an AdmissionReview"), "{v}");

    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let (status, v) = post_with(s(), "/validate/namespace-offloading", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(v["error"].as_str().unwrap().contains("larger than 3145728 bytes"));
}

#[tokio::test]
async fn metrics_count_reviews_by_endpoint_operation_and_result() {
    let st = state(Enforcement::Deny);
    post_with(st.clone(), "/validate/namespace-offloading", fixture("create-bad-selector.json")).await;
    post_with(st.clone(), "/validate/namespace-offloading", fixture("create-valid.json")).await;
    let text = st.metrics.encode();
    assert!(text.contains(r#"offloading_webhook_admission_reviews_total{endpoint="validate",operation="CREATE",result="denied"} 1"#), "{text}");
    assert!(text.contains(r#"offloading_webhook_admission_reviews_total{endpoint="validate",operation="CREATE",result="allowed"} 1"#));
    assert!(
        text.contains("offloading_webhook_admission_review_duration_seconds_count{endpoint=\"validate\"} 2")
    );
}

/// A review of a CREATE whose one `In` expression lists `n` bad values.
fn review_with_values(n: usize, operation: &str) -> Vec<u8> {
    let values: Vec<String> = (0..n).map(|i| format!("bad value {i}")).collect();
    let obj = json!({
        "apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
        "metadata": {"name": "offloading", "namespace": "web"},
        "spec": {"clusterSelector": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "region", "operator": "In", "values": values}]}]}}
    });
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "big-1",
            "kind": {"group": "offloading.liqo.io", "version": "v1alpha1", "kind": "NamespaceOffloading"},
            "resource": {"group": "offloading.liqo.io", "version": "v1alpha1", "resource": "namespaceoffloadings"},
            "operation": operation, "userInfo": {"username": "admin"},
            "name": "offloading", "namespace": "web", "object": obj
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn a_huge_selector_gets_a_short_too_many_answer_and_a_short_annotation() {
    let body = review_with_values(100_000, "CREATE");
    assert!(body.len() > 1_000_000, "{}", body.len());
    let (status, v) =
        post_with(state(Enforcement::Deny), "/validate/namespace-offloading", body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(
        v["response"]["status"]["message"],
        "spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].values: Too many: 100000: must have at most 256 items"
    );
    assert!(v.to_string().len() < 1024);

    let (status, v) = post_with(state(Enforcement::Deny), "/mutate/namespace-offloading", body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let obj = patched(&body, &v);
    let annotation = obj["metadata"]["annotations"]["liqo.io/scheduling-enabled"].as_str().unwrap();
    assert!(annotation.len() < 1024, "{}", annotation.len());
    assert!(annotation.starts_with("Invalid Cluster Selector : spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].values: Too many: 100000"), "{annotation}");
}

#[tokio::test]
async fn many_bad_values_under_the_limit_list_ten_and_count_the_rest() {
    let body = review_with_values(200, "CREATE");
    let (_, v) = post_with(state(Enforcement::Deny), "/validate/namespace-offloading", body.clone()).await;
    let msg = v["response"]["status"]["message"].as_str().unwrap();
    assert!(msg.starts_with(r#"[spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].values[0]: Invalid value: "bad value 0": a valid label value must consist of"#), "{msg}");
    assert!(msg.ends_with(", and 190 more errors]"), "{msg}");
    assert!(msg.len() < 4096, "{}", msg.len());

    let (_, v) = post_with(state(Enforcement::Deny), "/mutate/namespace-offloading", body.clone()).await;
    let obj = patched(&body, &v);
    let annotation = obj["metadata"]["annotations"]["liqo.io/scheduling-enabled"].as_str().unwrap();
    assert!(annotation.ends_with("(and 199 more errors)"), "{annotation}");
    assert!(annotation.len() < 1024);

    let (_, v) = post_with(state(Enforcement::Warn), "/validate/namespace-offloading", body).await;
    let warnings = v["response"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 11);
    assert_eq!(warnings[10], "... and 190 more errors that would deny it");
}

#[tokio::test]
async fn a_huge_value_is_quoted_short() {
    let obj_value = "x".repeat(2_000_000);
    let body = String::from_utf8(review_with_values(1, "CREATE")).unwrap().replace("bad value 0", &obj_value);
    let (_, v) =
        post_with(state(Enforcement::Deny), "/validate/namespace-offloading", body.into_bytes()).await;
    let msg = v["response"]["status"]["message"].as_str().unwrap();
    assert!(msg.len() < 1024, "{}", msg.len());
    assert!(msg.contains("(2000000 characters in all)"), "{msg}");
}

#[tokio::test]
async fn every_error_answer_is_json() {
    let get = |path: &str, method: &str, ct: Option<&str>| {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        let req = b.body(Body::from("{}")).unwrap();
        async move {
            let resp = router(state(Enforcement::Deny)).oneshot(req).await.unwrap();
            let status = resp.status();
            let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            let v: Value =
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes:?}"));
            (status, ctype, v)
        }
    };
    let (status, ctype, v) = get("/nowhere", "POST", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(ctype.as_deref(), Some("application/json"));
    assert_eq!(v["code"], 404);
    assert!(v["error"].as_str().unwrap().starts_with(r#"no such path "/nowhere""#), "{v}");
    let (status, _, v) = get("/validate/namespace-offloading", "GET", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["error"], "method GET is not allowed here: send the AdmissionReview with POST");
    let (status, _, v) = get("/mutate/namespace-offloading", "POST", Some("text/plain")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        v["error"],
        r#"content type "text/plain" is not supported: send the AdmissionReview as application/json"#
    );
}

/// A v1beta1 review whose object has no clusterSelector, judged as a Liqo v1.x and a v0.3 cluster.
#[tokio::test]
async fn liqo_v1_never_marks_an_object_without_node_selector_terms_true() {
    let mut review: Value = serde_json::from_slice(&fixture("create-valid-v1beta1.json")).unwrap();
    review["request"]["object"]["spec"].as_object_mut().unwrap().remove("clusterSelector");
    let body = serde_json::to_vec(&review).unwrap();
    let v1 = |enforcement| AdmissionState {
        enforcement,
        cluster: ClusterView::fixed(Some("frosty-bird".into()))
            .with_generation(offloading_webhook::offloading::Generation::V1),
        metrics: Metrics::new(),
    };

    let (_, out) = post_with(v1(Enforcement::Warn), "/mutate/namespace-offloading", body.clone()).await;
    let annotation = patched(&body, &out)["metadata"]["annotations"]["liqo.io/scheduling-enabled"].clone();
    assert!(
        annotation.as_str().unwrap().starts_with("Invalid Cluster Selector : spec.clusterSelector.nodeSelectorTerms: Required value: Liqo v1.x needs it"),
        "{annotation}"
    );
    let (_, out) = post_with(v1(Enforcement::Deny), "/validate/namespace-offloading", body.clone()).await;
    assert_eq!(out["response"]["allowed"], false);
    assert!(
        out["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .ends_with("to offload to every remote cluster set clusterSelector: {nodeSelectorTerms: []}")
    );

    // Liqo v0.3 selects every cluster with it.
    let (_, out) = post_with(state(Enforcement::Deny), "/mutate/namespace-offloading", body.clone()).await;
    assert_eq!(patched(&body, &out)["metadata"]["annotations"]["liqo.io/scheduling-enabled"], "true");
    let (_, out) = post_with(state(Enforcement::Deny), "/validate/namespace-offloading", body).await;
    assert_eq!(out["response"]["allowed"], true);
}

#[tokio::test]
async fn a_review_followed_by_more_bytes_is_not_json() {
    let mut body = fixture("create-bad-selector.json");
    body.extend_from_slice(b"}");
    let (status, v) = post_with(state(Enforcement::Deny), "/validate/namespace-offloading", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"].as_str().unwrap().starts_with("the request body is not valid JSON: trailing characters"),
        "{v}"
    );
}

// The budget of request bytes in flight: every path gives back what it reserved.

use axum::body::Bytes;
use futures::SinkExt as _;
use offloading_webhook::admission::{Budget, router_with};
use std::time::Duration;

/// A router whose budget is `limit` bytes, with the budget to watch.
fn budgeted(limit: usize) -> (axum::Router, Budget, std::sync::Arc<Metrics>) {
    let st = state(Enforcement::Deny);
    let metrics = st.metrics.clone();
    let budget = Budget::new(limit, metrics.review_bytes_in_flight.clone());
    (router_with(st, budget.clone()), budget, metrics)
}

type Chunks = futures::channel::mpsc::Sender<Result<Bytes, std::io::Error>>;

/// A request whose body arrives as the test sends chunks, without a Content-Length.
fn chunked(path: &str) -> (Request<Body>, Chunks) {
    let (tx, rx) = futures::channel::mpsc::channel(4);
    let req =
        Request::post(path).header("content-type", "application/json").body(Body::from_stream(rx)).unwrap();
    (req, tx)
}

async fn answer(app: axum::Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = app.oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes:?}")))
}

fn post(body: Vec<u8>) -> Request<Body> {
    Request::post("/validate/namespace-offloading")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn a_review_that_finds_no_room_waits_then_gets_a_429_in_json_and_holds_nothing() {
    let body = fixture("create-valid.json");
    let (app, budget, metrics) = budgeted(MAX_BODY_BYTES);
    // Someone else's large review holds all but a few bytes.
    let mut held = budget.reservation();
    held.grow(MAX_BODY_BYTES - 10, Duration::from_secs(1)).await.unwrap();
    let started = std::time::Instant::now();
    let (status, headers, v) = answer(app.clone(), post(body.clone())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    assert_eq!(v["code"], 429);
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "this replica is at its budget of review bytes in flight (3145728 bytes of request bodies waiting for or under judgment; --max-review-bytes-in-flight): this review needed {} bytes more and found no room within 2.0 s, so it was not judged; the API server applies the webhook's failure policy to this one request",
            body.len()
        )),
        "{msg}"
    );
    assert_eq!(budget.in_flight(), MAX_BODY_BYTES - 10);
    let text = metrics.encode();
    assert!(text.contains("offloading_webhook_review_budget_refusals_total 1"), "{text}");
    assert!(
        text.contains(&format!("offloading_webhook_review_bytes_in_flight {}", MAX_BODY_BYTES - 10)),
        "{text}"
    );
    assert!(text.contains("offloading_webhook_review_bytes_budget 3145728"), "{text}");

    // Room again: the same review is judged, and gives its bytes back.
    drop(held);
    let (status, _, v) = answer(app, post(body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["response"]["allowed"], true);
    assert_eq!(budget.in_flight(), 0);
    assert!(metrics.encode().contains("offloading_webhook_review_bytes_in_flight 0"));
}

#[tokio::test]
async fn a_review_waiting_for_room_is_judged_once_room_is_freed() {
    let (app, budget, _) = budgeted(MAX_BODY_BYTES);
    let mut held = budget.reservation();
    held.grow(MAX_BODY_BYTES, Duration::from_secs(1)).await.unwrap();
    let waiting = tokio::spawn(answer(app, post(fixture("create-valid.json"))));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    drop(held);
    let (status, _, _) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(budget.in_flight(), 0);
}

#[tokio::test]
async fn too_large_bodies_give_back_what_they_reserved() {
    // Declared too large: refused before anything is reserved or read.
    let (app, budget, _) = budgeted(MAX_BODY_BYTES * 2);
    let (status, _, _) = answer(app.clone(), post(vec![b' '; MAX_BODY_BYTES + 1])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(budget.in_flight(), 0);
    // Chunked past the limit: refused once it gets there, its reservation given back.
    let (req, mut tx) = chunked("/validate/namespace-offloading");
    let sending = tokio::spawn(async move {
        for _ in 0..4 {
            if tx.send(Ok(Bytes::from(vec![b' '; 1024 * 1024]))).await.is_err() {
                break;
            }
        }
    });
    let (status, _, v) = answer(app, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    sending.await.unwrap();
    assert_eq!(budget.in_flight(), 0);
}

#[tokio::test]
async fn a_chunked_review_is_judged_and_a_client_gone_mid_body_gives_back_its_bytes() {
    let (app, budget, _) = budgeted(MAX_BODY_BYTES);
    let body = fixture("create-valid.json");
    let (req, mut tx) = chunked("/validate/namespace-offloading");
    let (head, tail) = body.split_at(body.len() / 2);
    tx.send(Ok(Bytes::copy_from_slice(head))).await.unwrap();
    tx.send(Ok(Bytes::copy_from_slice(tail))).await.unwrap();
    drop(tx);
    let (status, _, v) = answer(app.clone(), req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["response"]["allowed"], true);
    assert_eq!(budget.in_flight(), 0);

    // The connection fails mid-body: 400, nothing held.
    let (req, mut tx) = chunked("/validate/namespace-offloading");
    tx.send(Ok(Bytes::from(vec![b' '; 100_000]))).await.unwrap();
    tx.send(Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset"))).await.unwrap();
    let (status, _, v) = answer(app.clone(), req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().starts_with("could not read the request body"), "{v}");
    assert_eq!(budget.in_flight(), 0);

    // The client goes away mid-body and the server drops the request (as hyper does when the
    // connection closes): what it held goes back.
    let (req, mut tx) = chunked("/validate/namespace-offloading");
    let mut pending = Box::pin(app.oneshot(req));
    tx.send(Ok(Bytes::from(vec![b' '; 100_000]))).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(50), &mut pending).await.is_err());
    assert!(budget.in_flight() >= 100_000, "{}", budget.in_flight());
    drop(pending);
    assert_eq!(budget.in_flight(), 0);
}

/// (Waits out the 10 s body timeout.)
#[tokio::test]
async fn a_body_that_stalls_gets_408_and_holds_nothing() {
    let (app, budget, _) = budgeted(MAX_BODY_BYTES);
    let (req, mut tx) = chunked("/validate/namespace-offloading");
    tx.send(Ok(Bytes::from_static(b"{"))).await.unwrap();
    let (status, _, _) = answer(app, req).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(budget.in_flight(), 0);
    drop(tx);
}

#[tokio::test]
async fn large_reviews_judged_on_the_blocking_pool_give_back_their_bytes() {
    let (app, budget, _) = budgeted(MAX_BODY_BYTES * 2);
    let body = review_with_values(100_000, "CREATE");
    let answers = futures::future::join_all((0..3).map(|_| answer(app.clone(), post(body.clone())))).await;
    for (status, _, v) in answers {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["response"]["allowed"], false);
    }
    assert_eq!(budget.in_flight(), 0);
}

#[tokio::test]
async fn a_small_review_is_not_held_up_behind_a_large_one_waiting_for_room() {
    let (app, budget, _) = budgeted(MAX_BODY_BYTES);
    let mut held = budget.reservation();
    held.grow(MAX_BODY_BYTES - 64 * 1024, Duration::from_secs(1)).await.unwrap();
    let large = tokio::spawn(answer(app.clone(), post(review_with_values(100_000, "CREATE"))));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _, _) = answer(app, post(fixture("create-valid.json"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!large.is_finished());
    drop(held);
    assert_eq!(large.await.unwrap().0, StatusCode::OK);
    assert_eq!(budget.in_flight(), 0);
}

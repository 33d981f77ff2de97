//! The admission HTTP routes, built apart from any listener so tests drive them with `oneshot`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tracing::{debug, error, info, warn};

use super::review::{self, Endpoint, Enforcement};
use super::wire;
use crate::cluster::ClusterView;
use crate::metrics::{EndpointLabels, Metrics, ReviewLabels};
use crate::offloading::Context;
use crate::offloading::field::truncate;

/// The largest review body accepted (docs/behaviour.md, "Bad requests").
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// How long a client may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers share.
#[derive(Clone)]
pub struct AdmissionState {
    pub enforcement: Enforcement,
    pub cluster: ClusterView,
    pub metrics: Arc<Metrics>,
}

/// `POST /validate/namespace-offloading`, `POST /mutate/namespace-offloading`.
/// (`server` adds the probes next to them.)
pub fn router(state: AdmissionState) -> Router {
    Router::new()
        .route("/validate/namespace-offloading", post(validate).fallback(method_not_allowed))
        .route("/mutate/namespace-offloading", post(mutate).fallback(method_not_allowed))
        .fallback(not_found)
        // One Arc to clone per request, not every handle of the cluster view.
        .with_state(Arc::new(state))
}

/// A JSON error body, as every answer that is not an AdmissionReview gets.
pub fn json_error(code: StatusCode, message: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": message, "code": code.as_u16() }).to_string(),
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    let path = truncate(uri.path(), 256);
    json_error(
        StatusCode::NOT_FOUND,
        &format!(
            "no such path {path:?}: the webhooks are POST /validate/namespace-offloading and POST \
             /mutate/namespace-offloading; probes GET /healthz, /readyz, /livez"
        ),
    )
}

async fn method_not_allowed(method: axum::http::Method) -> Response {
    let mut resp = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method {method} is not allowed here: send the AdmissionReview with POST"),
    );
    resp.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    resp
}

// The whole request rather than a `HeaderMap` extractor, which would copy every header.
async fn validate(State(s): State<Arc<AdmissionState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    handle(&s, Endpoint::Validate, &parts.headers, body).await
}

async fn mutate(State(s): State<Arc<AdmissionState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    handle(&s, Endpoint::Mutate, &parts.headers, body).await
}

/// The API server sends `application/json`; no content type at all is taken as JSON too.
fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_none_or(|v| {
        v.to_str().is_ok_and(|v| {
            let mime = v.split(';').next().unwrap_or_default().trim();
            mime.eq_ignore_ascii_case("application/json")
        })
    })
}

async fn handle(s: &Arc<AdmissionState>, endpoint: Endpoint, headers: &HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    if !is_json(headers) {
        let got =
            headers.get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        return bad_body(
            s,
            endpoint,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {:?} is not supported: send the AdmissionReview as application/json",
                truncate(got.as_deref().unwrap_or_default(), 128)
            ),
        );
    }
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return bad_body(
                s,
                endpoint,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is larger than {MAX_BODY_BYTES} bytes; an AdmissionReview of a NamespaceOffloading is a few KiB"
                ),
            );
        }
        Ok(Err(e)) => {
            return bad_body(
                s,
                endpoint,
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            );
        }
        Err(_) => {
            return bad_body(
                s,
                endpoint,
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time".into(),
            );
        }
    };
    if bytes.len() <= LARGE_REVIEW_BYTES {
        return judge(s, endpoint, started, &bytes);
    }
    // A large review is judged alone, and the memory its decoding took goes back to the system
    // afterwards: a few hostile reviews at once, each decoded into tens of MiB, would otherwise add
    // up (and stay, in the allocator's per-thread arenas) past the pod's memory limit. It is judged
    // off the connection threads (server::lanes), which go on answering the others meanwhile.
    let _alone = LARGE_REVIEWS.acquire().await.ok();
    let judged = tokio::task::spawn_blocking({
        let s = s.clone();
        move || {
            let response = judge(&s, endpoint, started, &bytes);
            drop(bytes);
            release_memory();
            response
        }
    });
    judged.await.unwrap_or_else(|e| {
        error!(error = %e, "judging a large review failed");
        json_error(StatusCode::INTERNAL_SERVER_ERROR, "the review could not be judged")
    })
}

/// Bodies above this are judged one at a time.
const LARGE_REVIEW_BYTES: usize = 256 * 1024;
static LARGE_REVIEWS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Returns freed heap memory to the system (glibc keeps it in its arenas otherwise).
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointer of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn judge(s: &AdmissionState, endpoint: Endpoint, started: Instant, bytes: &[u8]) -> Response {
    let nodes = s.cluster.virtual_nodes();
    let cluster_id = s.cluster.cluster_id();
    let ctx = Context {
        cluster_id: cluster_id.as_deref(),
        virtual_nodes: nodes.as_deref(),
        generation: s.cluster.generation(),
    };
    let answer = match review::answer(bytes, endpoint, &ctx, s.enforcement) {
        Ok(a) => a,
        Err(e) => return bad_body(s, endpoint, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let resp = answer.review.response.as_ref();
    // The API server's uids are UUIDs; a hand-made review's may be anything, and logs stay short.
    let uid = truncate(resp.map(|r| r.uid.as_str()).unwrap_or_default(), 64);
    let allowed = resp.is_some_and(|r| r.allowed);
    let uid = uid.as_ref();
    let (endpoint_name, operation, outcome) = (endpoint.as_str(), answer.operation, answer.outcome.as_str());
    // Denials and warnings are what an operator looks for; a plain allow is logged at debug, so
    // that a busy webhook does not spend its time writing log lines.
    match resp {
        Some(r) if !r.allowed => {
            info!(uid, endpoint = endpoint_name, operation, allowed, outcome, message = %r.result.message, "denied")
        }
        Some(r) if r.warnings.is_some() => {
            info!(uid, endpoint = endpoint_name, operation, allowed, outcome, warnings = ?r.warnings, "allowed with warnings")
        }
        _ => debug!(uid, endpoint = endpoint_name, operation, allowed, outcome, "answered"),
    }
    s.metrics
        .reviews
        .get_or_create(&ReviewLabels {
            endpoint: endpoint.as_str(),
            operation: answer.operation,
            result: answer.outcome.as_str(),
        })
        .inc();
    s.metrics
        .review_seconds
        .get_or_create(&EndpointLabels { endpoint: endpoint.as_str() })
        .observe(started.elapsed().as_secs_f64());
    match wire::to_json(answer.review) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            // Our own types always serialize; if that ever breaks, say so rather than answer nothing.
            error!(error = %e, "could not serialize an AdmissionReview answer");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "could not serialize the answer")
        }
    }
}

fn bad_body(s: &AdmissionState, endpoint: Endpoint, code: StatusCode, message: String) -> Response {
    let message = truncate(&message, 1024);
    warn!(endpoint = endpoint.as_str(), status = code.as_u16(), %message, "rejected a request body");
    s.metrics
        .reviews
        .get_or_create(&ReviewLabels { endpoint: endpoint.as_str(), operation: "unknown", result: "invalid" })
        .inc();
    json_error(code, &message)
}

//! The admission HTTP routes, built apart from any listener so tests drive them with `oneshot`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt;
use serde_json::json;
use tracing::{debug, error, info, warn};

use super::budget::{Budget, DEFAULT_BUDGET_BYTES, Exhausted, Reservation};
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
/// How long a review waits for room in the budget of bytes in flight before it is refused: a
/// burst passes, a flood is answered quickly (the API server's own timeout is 10 s by default).
pub const BUDGET_WAIT: Duration = Duration::from_secs(2);

/// What the handlers share.
#[derive(Clone)]
pub struct AdmissionState {
    pub enforcement: Enforcement,
    pub cluster: ClusterView,
    pub metrics: Arc<Metrics>,
}

/// What the handlers see: the state and the replica's budget of bytes in flight.
struct Shared {
    state: AdmissionState,
    budget: Budget,
}

impl std::ops::Deref for Shared {
    type Target = AdmissionState;
    fn deref(&self) -> &AdmissionState {
        &self.state
    }
}

/// `POST /validate/namespace-offloading`, `POST /mutate/namespace-offloading`, with the default
/// budget of request bytes in flight. (`server` adds the probes next to them.)
pub fn router(state: AdmissionState) -> Router {
    let budget = Budget::new(DEFAULT_BUDGET_BYTES, state.metrics.review_bytes_in_flight.clone());
    router_with(state, budget)
}

/// The same, with `budget` shared by every request body waiting for or under judgment.
pub fn router_with(state: AdmissionState, budget: Budget) -> Router {
    state.metrics.review_bytes_budget.set(i64::try_from(budget.limit()).unwrap_or(i64::MAX));
    Router::new()
        .route("/validate/namespace-offloading", post(validate).fallback(method_not_allowed))
        .route("/mutate/namespace-offloading", post(mutate).fallback(method_not_allowed))
        .fallback(not_found)
        // One Arc to clone per request, not every handle of the cluster view.
        .with_state(Arc::new(Shared { state, budget }))
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
async fn validate(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    handle(&s, Endpoint::Validate, &parts.headers, body).await
}

async fn mutate(State(s): State<Arc<Shared>>, req: Request) -> Response {
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

async fn handle(s: &Arc<Shared>, endpoint: Endpoint, headers: &HeaderMap, body: Body) -> Response {
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
    let (bytes, reservation) = match tokio::time::timeout(BODY_TIMEOUT, read_body(&s.budget, body)).await {
        Ok(Ok(read)) => read,
        Ok(Err(Unread::TooLarge)) => {
            return bad_body(
                s,
                endpoint,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is larger than {MAX_BODY_BYTES} bytes; an AdmissionReview of a NamespaceOffloading is a few KiB"
                ),
            );
        }
        Ok(Err(Unread::Failed(e))) => {
            return bad_body(
                s,
                endpoint,
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            );
        }
        Ok(Err(Unread::NoRoom(e))) => return no_room(s, endpoint, e),
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
        let response = judge(s, endpoint, started, &bytes);
        drop(reservation);
        return response;
    }
    // A large review is judged alone, and the memory its decoding took goes back to the system
    // afterwards: a few hostile reviews at once, each decoded into tens of MiB, would otherwise add
    // up (and stay, in the allocator's per-thread arenas) past the pod's memory limit. It is judged
    // off the connection threads (server::lanes), which go on answering the others meanwhile. Its
    // body stays in the budget until then (however the wait ends: the reservation goes with it).
    let _alone = LARGE_REVIEWS.acquire().await.ok();
    let judged = tokio::task::spawn_blocking({
        let s = s.clone();
        move || {
            let response = judge(&s, endpoint, started, &bytes);
            drop(bytes);
            release_memory();
            drop(reservation);
            response
        }
    });
    judged.await.unwrap_or_else(|e| {
        error!(error = %e, "judging a large review failed");
        json_error(StatusCode::INTERNAL_SERVER_ERROR, "the review could not be judged")
    })
}

/// Why a body was not read.
enum Unread {
    TooLarge,
    Failed(String),
    NoRoom(Exhausted),
}

/// Reads a body into memory reserved from `budget` first: all of a declared Content-Length up
/// front, else as the buffer grows with the chunks that arrive.
async fn read_body(budget: &Budget, mut body: Body) -> Result<(Vec<u8>, Reservation), Unread> {
    use axum::body::HttpBody as _;
    let mut reservation = budget.reservation();
    let mut buf = Vec::new();
    if let Some(len) = body.size_hint().exact() {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_BODY_BYTES {
            return Err(Unread::TooLarge);
        }
        reservation.grow(len, BUDGET_WAIT).await.map_err(Unread::NoRoom)?;
        buf.reserve_exact(len);
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Unread::Failed(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        let need = buf.len() + data.len();
        if need > MAX_BODY_BYTES {
            return Err(Unread::TooLarge);
        }
        if need > buf.capacity() {
            // Grown as a Vec grows (doubling), and reserved before it is allocated, so that what
            // the budget counts is what the buffer holds.
            let target = need.max(buf.capacity() * 2).clamp(CHUNKED_START_BYTES, MAX_BODY_BYTES);
            let more = target.saturating_sub(reservation.bytes());
            reservation.grow(more, BUDGET_WAIT).await.map_err(Unread::NoRoom)?;
            buf.reserve_exact(target - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf, reservation))
}

/// The first allocation for a body of unknown length.
const CHUNKED_START_BYTES: usize = 16 * 1024;

/// HTTP 429: the review was not read, and the API server applies the webhook's failure policy to
/// this one request (a retry, its own or the client's, is judged as usual).
fn no_room(s: &Shared, endpoint: Endpoint, e: Exhausted) -> Response {
    s.metrics.review_budget_refusals.inc();
    let message = format!(
        "this replica is at its budget of review bytes in flight ({} bytes of request bodies waiting \
         for or under judgment; --max-review-bytes-in-flight): this review needed {} bytes more and \
         found no room within {:.1} s, so it was not judged; the API server applies the webhook's \
         failure policy to this one request, and a retry is judged as usual",
        e.limit,
        e.wanted,
        e.waited.as_secs_f64()
    );
    warn!(
        endpoint = endpoint.as_str(),
        status = 429,
        wanted = e.wanted,
        limit = e.limit,
        "refused a review: no room in the budget of bytes in flight"
    );
    let mut resp = json_error(StatusCode::TOO_MANY_REQUESTS, &message);
    resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    resp
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

fn judge(s: &Shared, endpoint: Endpoint, started: Instant, bytes: &[u8]) -> Response {
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

fn bad_body(s: &Shared, endpoint: Endpoint, code: StatusCode, message: String) -> Response {
    let message = truncate(&message, 1024);
    warn!(endpoint = endpoint.as_str(), status = code.as_u16(), %message, "rejected a request body");
    s.metrics
        .reviews
        .get_or_create(&ReviewLabels { endpoint: endpoint.as_str(), operation: "unknown", result: "invalid" })
        .inc();
    json_error(code, &message)
}

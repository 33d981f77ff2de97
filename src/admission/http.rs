//! The admission HTTP routes, built apart from any listener so tests drive them with `oneshot`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tracing::{debug, info, warn};

use super::review::{self, Endpoint, Enforcement};
use crate::cluster::ClusterView;
use crate::metrics::{EndpointLabels, Metrics, ReviewLabels};
use crate::offloading::Context;

/// The largest review body accepted (SPEC §3).
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
        .route("/validate/namespace-offloading", post(validate))
        .route("/mutate/namespace-offloading", post(mutate))
        .with_state(state)
}

async fn validate(State(s): State<AdmissionState>, body: Body) -> Response {
    handle(s, Endpoint::Validate, body).await
}

async fn mutate(State(s): State<AdmissionState>, body: Body) -> Response {
    handle(s, Endpoint::Mutate, body).await
}

async fn handle(s: AdmissionState, endpoint: Endpoint, body: Body) -> Response {
    let started = Instant::now();
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return bad_body(
                &s,
                endpoint,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is larger than {MAX_BODY_BYTES} bytes; an AdmissionReview of a NamespaceOffloading is a few KiB"
                ),
            );
        }
        Ok(Err(e)) => {
            return bad_body(
                &s,
                endpoint,
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            );
        }
        Err(_) => {
            return bad_body(
                &s,
                endpoint,
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time".into(),
            );
        }
    };
    let nodes = s.cluster.virtual_nodes();
    let cluster_id = s.cluster.cluster_id();
    let ctx = Context {
        cluster_id: cluster_id.as_deref(),
        virtual_nodes: nodes.as_deref(),
        generation: s.cluster.generation(),
    };
    let answer = match review::answer(&bytes, endpoint, &ctx, s.enforcement) {
        Ok(a) => a,
        Err(e) => return bad_body(&s, endpoint, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let resp = answer.review.response.as_ref();
    let (uid, allowed) = (resp.map(|r| r.uid.as_str()).unwrap_or_default(), resp.is_some_and(|r| r.allowed));
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
    axum::Json(answer.review).into_response()
}

fn bad_body(s: &AdmissionState, endpoint: Endpoint, code: StatusCode, message: String) -> Response {
    warn!(endpoint = endpoint.as_str(), status = code.as_u16(), %message, "rejected a request body");
    s.metrics
        .reviews
        .get_or_create(&ReviewLabels { endpoint: endpoint.as_str(), operation: "unknown", result: "invalid" })
        .inc();
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": message, "code": code.as_u16() }).to_string(),
    )
        .into_response()
}

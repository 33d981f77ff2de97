//! The server benchmark's baseline: the same TLS stack (rustls, hyper, h2 + http/1.1) with a
//! handler that only parses the JSON and echoes the uid. `scripts/bench.sh` runs it beside the
//! real webhook so the ratio between them shows what the webhook's own work costs.
//! Usage: bench_baseline_server ADDR CERT KEY

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use offloading_webhook::metrics::Metrics;
use offloading_webhook::server::lanes::Lanes;
use offloading_webhook::server::liveness::Liveness;
use offloading_webhook::server::{Drain, serve_tls, tls};
use tokio_util::sync::CancellationToken;

async fn echo(body: Bytes) -> axum::Json<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    axum::Json(serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": v["request"]["uid"], "allowed": true}
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 4, "usage: bench_baseline_server ADDR CERT KEY");
    let metrics = Metrics::new();
    let store = tls::CertStore::load(args[2].as_ref(), args[3].as_ref(), metrics.clone())?;
    let listener = tokio::net::TcpListener::bind(&args[1]).await?;
    let app = Router::new().route("/validate/namespace-offloading", post(echo));
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s.cancel();
    });
    serve_tls(
        listener,
        tls::server_config(store)?,
        app,
        metrics,
        stop,
        Drain { delay: Duration::ZERO, timeout: Duration::from_secs(1) },
        // As `serve` by default (--webhook-threads 1).
        Lanes::start(1),
        Liveness::default(),
    )
    .await;
    Ok(())
}

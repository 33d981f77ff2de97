//! The server benchmark's floor: a bare hyper + rustls JSON echo, with none of `serve_tls`
//! (no lanes, no drain, no router, no timeouts): one single-threaded runtime, each connection a
//! task, a `service_fn` that reads the body, parses the JSON and echoes the uid, as
//! `bench_baseline_server` does behind the webhook's own serving stack. `scripts/bench.sh` runs it
//! beside both, so that what the serving stack costs shows apart from what the handler costs.
//! Usage: bench_bare_server ADDR CERT KEY

use std::convert::Infallible;

use axum::body::Bytes;
use axum::http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use offloading_webhook::metrics::Metrics;
use offloading_webhook::server::tls;
use tokio_rustls::TlsAcceptor;

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let answer = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": v["request"]["uid"], "allowed": true}
    });
    let mut resp = Response::new(Full::new(Bytes::from(serde_json::to_vec(&answer).unwrap_or_default())));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 4, "usage: bench_bare_server ADDR CERT KEY");
    let store = tls::CertStore::load(args[2].as_ref(), args[3].as_ref(), Metrics::new())?;
    let acceptor = TlsAcceptor::from(tls::server_config(store)?);
    let listener = tokio::net::TcpListener::bind(&args[1]).await?;
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let (acceptor, builder) = (acceptor.clone(), builder.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else { return };
            let _ = builder.serve_connection(TokioIo::new(stream), service_fn(echo)).await;
        });
    }
}

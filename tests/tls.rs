//! The HTTPS server with real handshakes on loopback: ALPN h2 and http/1.1, certificate rotation,
//! half-written files, and bad clients that must not disturb good ones.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use offloading_webhook::admission::{AdmissionState, Enforcement, router};
use offloading_webhook::certs;
use offloading_webhook::cluster::ClusterView;
use offloading_webhook::metrics::Metrics;
use offloading_webhook::server::lanes::Lanes;
use offloading_webhook::server::liveness::Liveness;
use offloading_webhook::server::{Drain, Health, probe_router, serve_tls, tls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

struct Server {
    addr: std::net::SocketAddr,
    store: Arc<tls::CertStore>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
    liveness: Liveness,
}

async fn start() -> Server {
    start_with(axum::Router::new()).await
}

/// The webhook, the probes as `serve` merges them, and `extra` routes, on two lanes.
async fn start_with(extra: axum::Router) -> Server {
    let dir = tempfile::tempdir().unwrap();
    certs::write_dir(dir.path(), &["localhost".into(), "127.0.0.1".into()], 30).unwrap();
    let metrics = Metrics::new();
    let store =
        tls::CertStore::load(&dir.path().join("tls.crt"), &dir.path().join("tls.key"), metrics.clone())
            .unwrap();
    let config = tls::server_config(store.clone()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cluster = ClusterView::fixed(Some("b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a".into()));
    let liveness = Liveness::default();
    let health = Health {
        cluster: cluster.clone(),
        draining: Default::default(),
        certificate: store.clone(),
        liveness: liveness.clone(),
    };
    let app = router(AdmissionState { enforcement: Enforcement::Deny, cluster, metrics: metrics.clone() })
        .merge(probe_router(health))
        .merge(extra);
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve_tls(
        listener,
        config,
        app,
        metrics.clone(),
        stop.clone(),
        Drain { delay: Duration::ZERO, timeout: Duration::from_secs(5) },
        Lanes::start(2),
        liveness.clone(),
    ));
    Server { addr, store, metrics, stop, task, dir, liveness }
}

fn client(ca_dir: &Path, http1: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_dir.join("ca.crt")).unwrap()).unwrap();
    let b = reqwest::Client::builder().add_root_certificate(ca).timeout(Duration::from_secs(10));
    let b = if http1 { b.http1_only() } else { b };
    b.build().unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

async fn review(c: &reqwest::Client, s: &Server) -> (reqwest::Version, serde_json::Value) {
    let resp = c
        .post(format!("https://localhost:{}/validate/namespace-offloading", s.addr.port()))
        .body(fixture("create-bad-selector.json"))
        .send()
        .await
        .unwrap();
    (resp.version(), resp.json().await.unwrap())
}

/// The leaf certificate the server presents on a fresh connection.
async fn served_cert(s: &Server) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(s.dir.path().join("ca.crt")).unwrap()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    conn.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn cert_file_der(dir: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(dir.join("tls.crt")).unwrap().to_vec()
}

#[tokio::test]
async fn speaks_h2_and_http1_over_tls() {
    let s = start().await;
    let (version, v) = review(&client(s.dir.path(), false), &s).await;
    assert_eq!(version, reqwest::Version::HTTP_2);
    assert_eq!(v["response"]["allowed"], false);
    let (version, v) = review(&client(s.dir.path(), true), &s).await;
    assert_eq!(version, reqwest::Version::HTTP_11);
    assert_eq!(v["response"]["uid"], "7a8b0c1d-0000-4000-8000-000000000001");
    s.stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), s.task).await.unwrap().unwrap();
}

#[tokio::test]
async fn picks_up_a_rotated_certificate_and_ignores_half_written_files() {
    let s = start().await;
    let first = served_cert(&s).await;
    assert_eq!(first, cert_file_der(s.dir.path()));

    // Rotation with the same CA (what `certs` and cert-manager do): served on the next connection.
    certs::write_dir(s.dir.path(), &["localhost".into(), "127.0.0.1".into()], 30).unwrap();
    assert!(s.store.reload());
    let second = served_cert(&s).await;
    assert_ne!(second, first);
    assert_eq!(second, cert_file_der(s.dir.path()));

    // A half-written certificate: the last good one keeps serving, and the failure is counted.
    let pem = std::fs::read_to_string(s.dir.path().join("tls.crt")).unwrap();
    std::fs::write(s.dir.path().join("tls.crt"), &pem[..pem.len() / 2]).unwrap();
    assert!(!s.store.reload());
    assert_eq!(served_cert(&s).await, second);
    assert!(s.metrics.encode().contains("offloading_webhook_certificate_reload_failures_total 1"));
    // The same bad content is not reported again on every poll.
    assert!(!s.store.reload());
    assert!(s.metrics.encode().contains("offloading_webhook_certificate_reload_failures_total 1"));

    // Once the file is whole again, it is served.
    std::fs::write(s.dir.path().join("tls.crt"), &pem).unwrap();
    assert!(s.store.reload());
    assert_eq!(served_cert(&s).await, second);
    s.stop.cancel();
}

#[tokio::test]
async fn bad_handshakes_and_idle_clients_do_not_disturb_others() {
    let s = start().await;
    // Garbage instead of a ClientHello.
    let mut garbage = TcpStream::connect(s.addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // A client that connects and says nothing, and one that half-closes at once.
    let _idle = TcpStream::connect(s.addr).await.unwrap();
    let mut half = TcpStream::connect(s.addr).await.unwrap();
    half.shutdown().await.unwrap();

    let c = client(s.dir.path(), true);
    for _ in 0..3 {
        let (_, v) = review(&c, &s).await;
        assert_eq!(v["response"]["allowed"], false);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = s.metrics.encode();
    assert!(text.contains("offloading_webhook_tls_handshake_failures_total 2"), "{text}");
    drop(c);
    s.stop.cancel();
    // Shutdown is not held up by the idle client that never finished its handshake.
    tokio::time::timeout(Duration::from_secs(10), s.task).await.unwrap().unwrap();
}

#[tokio::test]
async fn refuses_a_key_that_does_not_match_the_certificate() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    certs::write_dir(a.path(), &["localhost".into()], 1).unwrap();
    certs::write_dir(b.path(), &["localhost".into()], 1).unwrap();
    let err = tls::CertStore::load(&a.path().join("tls.crt"), &b.path().join("tls.key"), Metrics::new())
        .unwrap_err();
    assert!(err.to_string().contains("do not belong together"), "{err}");
    let err = tls::CertStore::load(&a.path().join("tls.key"), &a.path().join("tls.crt"), Metrics::new())
        .unwrap_err();
    assert!(err.to_string().contains("holds no PEM certificate (is it the key file?)"), "{err}");
}

async fn livez(c: &reqwest::Client, s: &Server) -> (reqwest::StatusCode, String) {
    let resp = c.get(format!("https://localhost:{}/livez", s.addr.port())).send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// `/livez` asks every thread serving the port: one blocked by a handler fails it, by name, for
/// as long as it is blocked; the threads and the accept loop answering, it passes.
#[tokio::test]
async fn livez_fails_while_a_handler_blocks_its_lane_and_recovers() {
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let blocked = Arc::new(std::sync::Mutex::new(blocked));
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel::<()>();
    let block = axum::Router::new().route(
        "/block",
        axum::routing::get(move || {
            let (blocked, entered_tx) = (blocked.clone(), entered_tx.clone());
            async move {
                let _ = entered_tx.send(());
                // Blocks the lane's thread, as blocking work in a handler would.
                let _ = blocked.lock().unwrap().recv();
                "unblocked"
            }
        }),
    );
    let s = start_with(block).await;
    let (status, text) = livez(&client(s.dir.path(), true), &s).await;
    assert_eq!((status.as_u16(), text.as_str()), (200, "ok\n"));
    assert_eq!(s.liveness.check().await, Ok(()));

    // The first connection goes to the first lane (both are idle once the livez client is gone).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let blocker = client(s.dir.path(), true);
    let url = format!("https://localhost:{}/block", s.addr.port());
    let blocking = tokio::spawn(async move { blocker.get(url).send().await.unwrap().text().await.unwrap() });
    entered.recv().await.unwrap();
    // A fresh connection goes to the other lane, which answers: /livez names the blocked one.
    let (status, text) = livez(&client(s.dir.path(), false), &s).await;
    assert_eq!(status.as_u16(), 503, "{text}");
    assert_eq!(
        text,
        "not live: the webhook thread webhook-0 did not answer within 500 ms (something blocks it)\n"
    );

    release.send(()).unwrap();
    assert_eq!(blocking.await.unwrap(), "unblocked");
    let (status, text) = livez(&client(s.dir.path(), false), &s).await;
    assert_eq!((status.as_u16(), text.as_str()), (200, "ok\n"));
    s.stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), s.task).await.unwrap().unwrap();
    // Stopped on purpose, the lanes and the accept loop owe no answer.
    assert_eq!(s.liveness.check().await, Ok(()));
}

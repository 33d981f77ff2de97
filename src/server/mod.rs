//! The edge: listeners, TLS, the threads connections run on ([`lanes`]), probes, metrics, graceful
//! shutdown.
//!
//! [`serve_tls`] takes a bound listener and a cancellation token (tests bind port 0); [`run`] wires
//! a whole `serve` process from a [`ServeConfig`](crate::cli::ServeConfig).

pub mod lanes;
pub mod liveness;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use futures::FutureExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::Service;
use tracing::{debug, info, warn};

use crate::admission::{self, AdmissionState};
use crate::cli::ServeConfig;
use crate::cluster::ClusterView;
use crate::metrics::Metrics;
use lanes::Lanes;
use liveness::Liveness;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/1.1 client that has not sent its request headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// What an h2 client may send before its request bodies are read (per stream, per connection):
/// bodies are read only once the budget of bytes in flight has room for them
/// ([`crate::admission::Budget`]), and hyper's 1 MiB windows would let each connection park a
/// MiB beside it. A review is a few KiB; a 3 MiB one still streams in at loopback speed.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONNECTION_WINDOW: u32 = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("could not listen on {addr}: {cause}")]
    Bind { addr: SocketAddr, cause: std::io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("could not connect to the Kubernetes API: {0}")]
    Kube(kube::Error),
    #[error(transparent)]
    KubeClient(#[from] crate::kube_client::KubeClientError),
    #[error(transparent)]
    LiqoApi(#[from] crate::liqo_api::LiqoApiError),
    #[error(transparent)]
    Managed(#[from] crate::certs::managed::ManagedError),
    #[error("{0}")]
    Registration(&'static str),
}

/// How a stopping server hands its clients over (docs/behaviour.md, "Shutdown").
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    /// After `stop`, keep accepting and answering this long (with /readyz failing and HTTP/1.1
    /// answers saying `Connection: close`), so that the API server, which learns of the endpoint
    /// change late and keeps pooled keep-alive connections, has moved elsewhere before the
    /// listener closes.
    pub delay: Duration,
    /// Then at most this long for in-flight reviews to finish.
    pub timeout: Duration,
}

impl From<kube::Error> for ServeError {
    fn from(e: kube::Error) -> Self {
        Self::Kube(e)
    }
}

/// Serves `app` over TLS on `listener` until `stop` is cancelled, then drains (see [`Drain`]):
/// answers go on for `drain.delay`, each HTTP/1.1 connection closed after its next answer; then
/// the listener closes, h2 clients get GOAWAY, idle connections are closed and in-flight requests
/// finish (at most `drain.timeout`). Each connection is its own task, on one of `lanes`: a bad or
/// slow handshake touches nothing else. `liveness` asks the lanes and the accept loop.
#[allow(clippy::too_many_arguments)]
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    drain: Drain,
    lanes: Lanes,
    liveness: Liveness,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    // h2 streams are spawned where their connection runs: on its lane.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW);
    let app = CloseWhileDraining { inner: app, stop: stop.clone() };
    // Cancelled when the listener closes, `drain.delay` after `stop`.
    let closing = CancellationToken::new();
    tokio::spawn({
        let (stop, closing) = (stop.clone(), closing.clone());
        async move {
            stop.cancelled().await;
            if !drain.delay.is_zero() {
                info!(
                    delay_seconds = drain.delay.as_secs_f64(),
                    "draining: /readyz fails, reviews are still answered until the API server routes elsewhere"
                );
                tokio::time::sleep(drain.delay).await;
            }
            closing.cancel();
        }
    });
    lanes.watch(&liveness);
    // The accept loop answers pings between accepts; the sender is held here, so that once the
    // loop ends (a drain) it owes no answer.
    let (pinger, mut pings) = tokio::sync::mpsc::unbounded_channel::<liveness::Ping>();
    let ask = pinger.downgrade();
    liveness.watch("the accept loop of the webhook port", move |ping| match ask.upgrade() {
        None => liveness::Asked::Stopped,
        Some(tx) => match tx.send(ping) {
            Ok(()) => liveness::Asked::Sent,
            Err(_) => liveness::Asked::Gone,
        },
    });
    loop {
        let (tcp, peer) = tokio::select! {
            _ = closing.cancelled() => break,
            Some(ping) = pings.recv() => {
                let _ = ping.send(());
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, metrics, builder, watcher, closing) = (
            acceptor.clone(),
            app.clone(),
            metrics.clone(),
            builder.clone(),
            graceful.watcher(),
            closing.clone(),
        );
        lanes.hand_over(tcp, move |tcp| async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
            // A client still handshaking when the listener closes has sent no request: drop it.
            let handshake = tokio::select! {
                _ = closing.cancelled() => return,
                h = handshake => h,
            };
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    metrics.tls_handshake_failures.inc();
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics.tls_handshake_failures.inc();
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let conn =
                builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(app));
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop((listener, pinger, pings));
    info!("stopped accepting; closing idle connections, GOAWAY to h2 clients, finishing in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => info!("all connections closed"),
        _ = tokio::time::sleep(drain.timeout) => warn!(drain_seconds = drain.timeout.as_secs(), "connections still open after the drain period; closing them"),
    }
    lanes.stop().await;
}

/// While draining, every HTTP/1.1 answer closes its connection: a pooled keep-alive connection is
/// retired after a request it was already carrying, never closed under a request in flight (Go's
/// client does not retry a POST on a reused connection). h2 has GOAWAY for this, sent when the
/// listener closes. A plain service around the router rather than axum middleware, which boxes a
/// future and clones the router on every request.
#[derive(Clone)]
struct CloseWhileDraining {
    inner: Router,
    stop: CancellationToken,
}

type Answered = Result<axum::response::Response, Infallible>;

impl<B> Service<axum::http::Request<B>> for CloseWhileDraining
where
    Router: Service<axum::http::Request<B>, Response = axum::response::Response, Error = Infallible>,
{
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future =
        futures::future::Map<<Router as Service<axum::http::Request<B>>>::Future, fn(Answered) -> Answered>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<axum::http::Request<B>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let close = req.version() < axum::http::Version::HTTP_2 && self.stop.is_cancelled();
        let then: fn(Answered) -> Answered =
            if close { with_connection_close } else { std::convert::identity };
        self.inner.call(req).map(then)
    }
}

fn with_connection_close(answered: Answered) -> Answered {
    answered.map(|mut resp| {
        resp.headers_mut()
            .insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        resp
    })
}

/// What the probes report.
#[derive(Clone)]
pub struct Health {
    pub cluster: ClusterView,
    pub draining: Arc<AtomicBool>,
    /// The serving certificate: with a managed one, a replica may start before the Secret holds it.
    pub certificate: Arc<tls::CertStore>,
    /// The loops serving the HTTPS port, which `/livez` asks.
    pub liveness: Liveness,
}

/// `/healthz`, `/livez`, `/readyz` for the plain-HTTP probe port.
pub fn probe_router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(health)
}

/// 503 with the reason when a thread serving the HTTPS port (or its accept loop) does not answer:
/// the kubelet then restarts the container.
async fn livez(State(h): State<Health>) -> (StatusCode, String) {
    match h.liveness.check().await {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not live: {why}\n")),
    }
}

/// Ready = this replica answers reviews correctly: its serving certificate is loaded (from files,
/// `serve` does not start without one; a managed one, once the Secret holds it; a failed reload
/// keeps the last good one), the facts the verdicts use
/// have been read, and it is not shutting down. Nothing else: a fault of the reconcile loop, the
/// Lease, a remote cluster, or a watch that fails after its first sync is reported (log,
/// `offloading_webhook_problem`), never here, since every replica would fail together and the
/// API server would then refuse every NamespaceOffloading write in the cluster. `?verbose` lists
/// the checks, and the faults beside them.
async fn readyz(State(h): State<Health>, RawQuery(query): RawQuery) -> (StatusCode, String) {
    let draining = h.draining.load(Ordering::Acquire);
    let certificate = h.certificate.is_loaded();
    let synced = h.cluster.synced();
    let ready = !draining && certificate && synced.is_ok();
    let verbose = query.is_some_and(|q| q.split('&').any(|p| p == "verbose" || p.starts_with("verbose=")));
    if !verbose {
        return match (draining, certificate, synced) {
            (true, _, _) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into()),
            (false, false, _) => {
                (StatusCode::SERVICE_UNAVAILABLE, "not ready: no serving certificate loaded yet\n".into())
            }
            (false, true, Ok(())) => (StatusCode::OK, "ok\n".into()),
            (false, true, Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
        };
    }
    let mut out = String::from(if certificate {
        "[+]certificate ok\n"
    } else {
        "[-]certificate failed: no serving certificate loaded yet\n"
    });
    match &synced {
        Ok(()) => out.push_str("[+]cluster-facts ok\n"),
        Err(why) => out.push_str(&format!("[-]cluster-facts failed: {why}\n")),
    }
    out.push_str(if draining { "[-]shutdown failed: shutting down\n" } else { "[+]shutdown ok\n" });
    out.push_str(if ready { "readyz check passed\n" } else { "readyz check failed\n" });
    let faults = h.cluster.faults().all();
    if !faults.is_empty() {
        out.push_str("reported, not a readiness check (offloading_webhook_problem{part}):\n");
        for (part, problem) in faults {
            out.push_str(&format!("  {part}: {problem}\n"));
        }
    }
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, out)
}

/// How the API server reaches the webhooks (`--webhook-service`, `--webhook-url`), when registered.
fn registration_target(cfg: &ServeConfig) -> Result<Option<crate::webhook_config::Target>, ServeError> {
    let r = &cfg.registration;
    match (&r.service, &r.url) {
        (Some(t), _) => Ok(Some(t.clone())),
        (None, Some(url)) => Ok(Some(crate::webhook_config::Target::Url(url.clone()))),
        (None, None) if r.configuration.is_some() => Err(ServeError::Registration(
            "--webhook-configuration needs --webhook-service or --webhook-url: how the API server reaches the webhooks",
        )),
        (None, None) => Ok(None),
    }
}

/// The registration this replica keeps (`--webhook-configuration`), if any.
fn registration(
    cfg: &ServeConfig,
    client: Option<&kube::Client>,
    target: Option<crate::webhook_config::Target>,
    managed: bool,
) -> Result<Option<crate::registration::Registration>, ServeError> {
    let (Some(configuration), Some(target)) = (&cfg.registration.configuration, target) else {
        return Ok(None);
    };
    let Some(client) = client else {
        return Err(ServeError::Registration(
            "--webhook-configuration needs a cluster to register in: drop --no-cluster, or register with `webhook-config`",
        ));
    };
    let ca = if managed {
        crate::registration::CaSource::Managed {
            api: Box::new(kube::Api::namespaced(client.clone(), &cfg.lease_namespace)),
            namespace: cfg.lease_namespace.clone(),
            secret: cfg.certificate.secret.clone(),
        }
    } else {
        let Some(file) = cfg.certificate.ca_bundle_file.clone() else {
            return Err(ServeError::Registration(
                "--webhook-configuration with --certificate-source=files needs --ca-bundle-file: the CA the registrations must trust (or --certificate-source=managed)",
            ));
        };
        crate::registration::CaSource::File(file)
    };
    Ok(Some(crate::registration::Registration {
        configuration: configuration.clone(),
        target,
        settings: cfg.registration.hooks.settings(),
        namespace: cfg.lease_namespace.clone(),
        ca,
        every: cfg.cert_reload_interval(),
    }))
}

/// The keeper of the managed certificate.
fn keeper(
    cfg: &ServeConfig,
    client: &kube::Client,
    target: Option<&crate::webhook_config::Target>,
    store: &Arc<tls::CertStore>,
    health: &Health,
    changed: &Arc<tokio::sync::watch::Sender<u64>>,
) -> Result<crate::certs::managed::Keeper, ServeError> {
    let mut names: Vec<String> = target.map(|t| t.certificate_names()).unwrap_or_default();
    names.extend(cfg.certificate.names.iter().filter(|n| !names.contains(n)).cloned().collect::<Vec<_>>());
    let policy = crate::certs::managed::Policy::new(
        cfg.certificate.ca_validity,
        cfg.certificate.cert_validity,
        cfg.cert_reload_interval(),
        names,
    )?;
    let trusted: Option<crate::certs::managed::TrustCheck> =
        cfg.registration.configuration.clone().map(|name| {
            let client = client.clone();
            let check: crate::certs::managed::TrustCheck = Arc::new(move |der: Vec<u8>| {
                let (client, name) = (client.clone(), name.clone());
                Box::pin(async move { crate::registration::trusts(&client, &name, &der).await })
            });
            check
        });
    Ok(crate::certs::managed::Keeper {
        api: kube::Api::namespaced(client.clone(), &cfg.lease_namespace),
        secret: cfg.certificate.secret.clone(),
        namespace: cfg.lease_namespace.clone(),
        policy,
        store: store.clone(),
        faults: health.cluster.faults().clone(),
        trusted,
        changed: changed.clone(),
        seen: Default::default(),
    })
}

/// `/metrics` for the plain-HTTP metrics port.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }),
        )
        .with_state(metrics)
}

/// Binds `addr`; an IPv6 address takes IPv4 clients too (mapped). `[::]` on a host without IPv6
/// falls back to `0.0.0.0`, which serves the same clients there.
fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    match listen(addr) {
        Ok(l) => Ok(l),
        Err(e)
            if addr.ip() == std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                && matches!(e.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)) =>
        {
            let v4 = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), addr.port());
            info!(%addr, fallback = %v4, "no IPv6 on this host: listening on IPv4 only");
            listen(v4).map_err(|cause| ServeError::Bind { addr: v4, cause })
        }
        Err(cause) => Err(ServeError::Bind { addr, cause }),
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Serves a plain-HTTP router until `stop`.
async fn serve_plain(listener: TcpListener, app: Router, stop: CancellationToken) {
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
        warn!(error = %e, "plain HTTP server failed");
    }
}

/// The clients of the local cluster, `None` when none is configured (`--no-cluster`, or nothing
/// to infer a configuration from: the webhook then serves alone).
async fn local_clients(cfg: &ServeConfig) -> Result<Option<crate::kube_client::KubeClients>, ServeError> {
    use crate::kube_client::{self, KubeClientError};
    if cfg.no_cluster {
        return Ok(None);
    }
    let config = match kube_client::config(cfg.kubeconfig.as_deref()).await {
        Ok(config) => config,
        Err(KubeClientError::NotConfigured(e)) => {
            debug!(error = %e, "no cluster configuration found");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Some(kube_client::KubeClients::new(config, cfg.api_rate_limit())?))
}

/// The Lease settings: renew deadline and retry period in client-go's proportions; the identity
/// is the pod's name, else this host's name and PID.
fn lease_config(cfg: &ServeConfig) -> crate::reconcile::lease::LeaseConfig {
    let duration = Duration::from_secs(cfg.lease_seconds.max(3));
    let identity = cfg.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    crate::reconcile::lease::LeaseConfig::new(
        "offloading-webhook-reconciler".into(),
        cfg.lease_namespace.clone(),
        identity,
        duration,
    )
}

/// The `serve` command: webhooks, probes, metrics, caches. Returns once `stop` is cancelled and
/// in-flight reviews are answered.
pub async fn run(cfg: ServeConfig, stop: CancellationToken) -> Result<(), ServeError> {
    let metrics = Metrics::new();
    let target = registration_target(&cfg)?;
    let clients = local_clients(&cfg).await?;
    let client = clients.as_ref().map(|c| c.limited.clone());
    let lease_client = clients.map(|c| c.lease);
    let managed = cfg.certificate.source == crate::cli::CertificateSource::Managed;
    let store = if managed {
        if client.is_none() {
            return Err(crate::certs::managed::ManagedError::NoCluster.into());
        }
        let origin = format!("Secret {}/{}", cfg.lease_namespace, cfg.certificate.secret);
        tls::CertStore::empty(&origin, metrics.clone())
    } else {
        tls::CertStore::load(&cfg.tls_cert_file, &cfg.tls_key_file, metrics.clone())?
    };
    let tls = tls::server_config_with_client_ca(store.clone(), cfg.client_ca_file.as_deref())?;
    let mut reconciler = None;
    let cluster = match (client.clone(), lease_client) {
        (Some(client), Some(lease_client)) => {
            let generation = crate::liqo_api::resolve(&client, cfg.liqo_api).await?;
            let reconcile = crate::liqo_api::reconcile_allowed(generation, cfg.reconcile)?;
            let (view, tasks) = ClusterView::with_cluster(
                client.clone(),
                cfg.cluster_id.clone(),
                &cfg.liqo_namespace,
                generation,
            );
            view.faults().export(&metrics);
            for t in tasks {
                tokio::spawn(t);
            }
            if reconcile {
                let remotes = crate::remote_clients::RemoteClients::new(
                    cfg.remote_kubeconfigs.iter().cloned().collect(),
                )
                .with_rate_limit(cfg.api_rate_limit())
                .with_kubeconfig_secrets(cfg.remote_kubeconfig_secrets);
                let rc =
                    crate::reconcile::ReconcileConfig { lease: lease_config(&cfg), lease_client, remotes };
                let task = crate::reconcile::run(client, view.clone(), metrics.clone(), rc, stop.clone());
                reconciler = Some(tokio::spawn(task));
            }
            view
        }
        _ => {
            info!("no Kubernetes cluster configured: serving the webhooks alone");
            let generation = match cfg.liqo_api {
                crate::cli::LiqoApi::V1 => crate::offloading::Generation::V1,
                _ => crate::offloading::Generation::V0_3,
            };
            ClusterView::fixed(cfg.cluster_id.clone()).with_generation(generation)
        }
    };

    let draining = Arc::new(AtomicBool::new(false));
    let liveness = Liveness::default();
    let health = Health {
        cluster: cluster.clone(),
        draining: draining.clone(),
        certificate: store.clone(),
        liveness: liveness.clone(),
    };
    // The certificate's keeper and the registration, checked before anything listens.
    let (changed, _) = tokio::sync::watch::channel(0u64);
    let changed = Arc::new(changed);
    let keeper = match (&client, managed) {
        (Some(client), true) => {
            cluster
                .faults()
                .set(crate::certs::managed::FAULT, "the managed certificate is not loaded yet".into());
            Some(keeper(&cfg, client, target.as_ref(), &store, &health, &changed)?)
        }
        _ => None,
    };
    let registration = registration(&cfg, client.as_ref(), target, managed)?;

    let webhook = bind(cfg.webhook_addr)?;
    let probes = bind(cfg.probe_addr)?;
    let metrics_l = bind(cfg.metrics_addr)?;
    info!(webhook = %cfg.webhook_addr, probes = %cfg.probe_addr, metrics = %cfg.metrics_addr,
        enforcement = ?cfg.enforcement, cluster_id = cluster.cluster_id().as_deref().unwrap_or("<from ConfigMap>"), "serving");

    // The probes answer on the TLS port too, for checks that only reach the Service.
    let budget =
        admission::Budget::new(cfg.max_review_bytes_in_flight, metrics.review_bytes_in_flight.clone());
    let state = AdmissionState { enforcement: cfg.enforcement, cluster, metrics: metrics.clone() };
    let app = admission::router_with(state, budget).merge(probe_router(health.clone()));
    let plain_stop = CancellationToken::new();
    let probe_task = tokio::spawn(serve_plain(probes, probe_router(health.clone()), plain_stop.clone()));
    let metrics_task =
        tokio::spawn(serve_plain(metrics_l, metrics_router(metrics.clone()), plain_stop.clone()));
    let reload = match keeper {
        Some(k) => tokio::spawn(k.run(cfg.cert_reload_interval(), plain_stop.clone())),
        None => tokio::spawn(store.clone().reload_every(cfg.cert_reload_interval(), plain_stop.clone())),
    };
    let registering = match (registration, &client) {
        (Some(registration), Some(client)) => {
            let store = store.clone();
            let ready = move || {
                store.is_loaded()
                    && !health.draining.load(Ordering::Acquire)
                    && health.cluster.synced().is_ok()
            };
            Some(tokio::spawn(registration.run(client.clone(), ready, changed.subscribe(), stop.clone())))
        }
        _ => None,
    };

    let webhook_stop = CancellationToken::new();
    let mark_draining = {
        let (stop, webhook_stop, draining) = (stop.clone(), webhook_stop.clone(), draining.clone());
        async move {
            stop.cancelled().await;
            draining.store(true, Ordering::Release);
            webhook_stop.cancel();
        }
    };
    tokio::spawn(mark_draining);
    let drain = Drain { delay: cfg.shutdown_delay(), timeout: cfg.drain_timeout() };
    let lanes = match cfg.webhook_threads {
        0 => Lanes::per_core(),
        n => Lanes::start(n),
    };
    serve_tls(webhook, tls, app, metrics, webhook_stop, drain, lanes, liveness).await;
    if let Some(r) = reconciler {
        let _ = r.await;
    }
    if let Some(r) = registering {
        let _ = r.await;
    }
    plain_stop.cancel();
    let _ = tokio::join!(probe_task, metrics_task, reload);
    info!("stopped");
    Ok(())
}

//! TLS for the webhook: rustls (TLS 1.2 and 1.3, ALPN h2 and http/1.1) with a certificate that
//! is reloaded when it changes: from files (polled: a Secret mount swaps a `..data` symlink, which
//! inotify on the files misses), or handed over by the managed certificate's keeper
//! ([`CertStore::set`]). Either way the last good pair is kept on any failure.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// Each message carries its cause in full (and none is a `source`), so that `{:#}` in `main` does
/// not print it twice.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not read {what} {path}: {cause}")]
    Read { what: &'static str, path: PathBuf, cause: std::io::Error },
    #[error("the client CA file {path} (--client-ca-file) cannot be used: {detail}")]
    ClientCa { path: PathBuf, detail: String },
    #[error("{path} holds no PEM certificate (is it the key file?): {detail}")]
    NoCertificate { path: PathBuf, detail: String },
    #[error("{path} holds no PEM private key (is it the certificate file?): {detail}")]
    NoKey { path: PathBuf, detail: String },
    #[error("the private key in {path} cannot be used: {cause}")]
    BadKey { path: PathBuf, cause: rustls::Error },
    #[error("the certificate in {cert} and the key in {key} do not belong together: {cause}")]
    Mismatch { cert: PathBuf, key: PathBuf, cause: rustls::Error },
    #[error("the certificate in {path} cannot be parsed: {detail}")]
    BadCertificate { path: PathBuf, detail: String },
    #[error("TLS configuration failed: {0}")]
    Config(rustls::Error),
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        Self::Config(e)
    }
}

/// The crypto provider used everywhere (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A loaded certificate pair and when its leaf expires (Unix seconds).
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub not_after: i64,
}

/// Parses a PEM certificate chain and key, checking that they belong together.
pub fn load_pair(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<Loaded, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::NoCertificate { path: cert_path.to_owned(), detail: e.to_string() })?;
    let Some(leaf) = certs.first() else {
        return Err(TlsError::NoCertificate { path: cert_path.to_owned(), detail: "empty".into() });
    };
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| TlsError::BadCertificate { path: cert_path.to_owned(), detail: e.to_string() })?
        .1
        .validity()
        .not_after
        .timestamp();
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::NoKey { path: key_path.to_owned(), detail: e.to_string() })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|cause| TlsError::BadKey { path: key_path.to_owned(), cause })?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|cause| TlsError::Mismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        cause,
    })?;
    Ok(Loaded { key: Arc::new(certified), not_after })
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|cause| TlsError::Read { what, path: path.to_owned(), cause })
}

const CERT_FILE: &str = "the serving certificate (--tls-cert-file)";
const KEY_FILE: &str = "the serving key (--tls-key-file)";

/// The serving certificate, swapped in place when the files change (or when [`CertStore::set`]).
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    /// `None` until a managed certificate is first handed over: handshakes fail meanwhile.
    current: RwLock<Option<Arc<CertifiedKey>>>,
    /// File contents last seen (good or bad), so a bad pair is reported once, not every poll.
    seen: Mutex<(Vec<u8>, Vec<u8>)>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore").field("cert_path", &self.cert_path).finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads the pair once; the server does not start without a good one.
    pub fn load(cert_path: &Path, key_path: &Path, metrics: Arc<Metrics>) -> Result<Arc<Self>, TlsError> {
        let (c, k) = (read(CERT_FILE, cert_path)?, read(KEY_FILE, key_path)?);
        let loaded = load_pair(cert_path, &c, key_path, &k)?;
        metrics.cert_expiry_seconds.set(loaded.not_after);
        Ok(Arc::new(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(Some(loaded.key)),
            seen: Mutex::new((c, k)),
            metrics,
        }))
    }

    /// A store with no certificate yet, filled by [`CertStore::set`]; `origin` names where the
    /// pairs come from, in messages (e.g. `Secret ns/name`).
    pub fn empty(origin: &str, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            cert_path: PathBuf::from(format!("{origin} key tls.crt")),
            key_path: PathBuf::from(format!("{origin} key tls.key")),
            current: RwLock::new(None),
            seen: Mutex::new((Vec::new(), Vec::new())),
            metrics,
        })
    }

    /// Whether a certificate is served.
    pub fn is_loaded(&self) -> bool {
        self.current.read().is_ok_and(|c| c.is_some())
    }

    /// Serves this pair if it differs from the last one handed over and is good; returns whether
    /// it is new. A bad pair is reported once and the last good one kept.
    pub fn set(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<bool, TlsError> {
        let Ok(mut seen) = self.seen.lock() else { return Ok(false) };
        if seen.0 == cert_pem && seen.1 == key_pem {
            return Ok(false);
        }
        *seen = (cert_pem.to_vec(), key_pem.to_vec());
        match load_pair(&self.cert_path, cert_pem, &self.key_path, key_pem) {
            Ok(loaded) => {
                if let Ok(mut cur) = self.current.write() {
                    *cur = Some(loaded.key);
                }
                self.metrics.cert_expiry_seconds.set(loaded.not_after);
                info!(origin = %self.cert_path.display(), not_after = loaded.not_after, "serving a new certificate");
                Ok(true)
            }
            Err(e) => {
                self.metrics.cert_reload_failures.inc();
                warn!(error = %e, "the new certificate is not usable; keeping the last good certificate");
                Err(e)
            }
        }
    }

    /// Reads the files again and swaps the pair if they changed and are good.
    /// Returns whether a new certificate is now served.
    pub fn reload(&self) -> bool {
        let files = read(CERT_FILE, &self.cert_path).and_then(|c| Ok((c, read(KEY_FILE, &self.key_path)?)));
        let (c, k) = match files {
            Ok(f) => f,
            Err(e) => {
                self.metrics.cert_reload_failures.inc();
                warn!(error = %e, "certificate reload failed; keeping the last good certificate");
                return false;
            }
        };
        let Ok(mut seen) = self.seen.lock() else { return false };
        if seen.0 == c && seen.1 == k {
            return false;
        }
        *seen = (c, k);
        match load_pair(&self.cert_path, &seen.0, &self.key_path, &seen.1) {
            Ok(loaded) => {
                if let Ok(mut cur) = self.current.write() {
                    *cur = Some(loaded.key);
                }
                self.metrics.cert_expiry_seconds.set(loaded.not_after);
                info!(cert = %self.cert_path.display(), not_after = loaded.not_after, "serving a new certificate");
                true
            }
            Err(e) => {
                self.metrics.cert_reload_failures.inc();
                warn!(error = %e, "new certificate files are not usable (yet); keeping the last good certificate");
                false
            }
        }
    }

    /// Polls the files until cancelled.
    pub async fn reload_every(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => { self.reload(); }
            }
        }
    }
}

/// The managed certificate's keeper serves through the store.
impl crate::certs::managed::Serving for CertStore {
    fn serves_a_pair(&self) -> bool {
        self.is_loaded()
    }

    fn serve(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<bool, String> {
        self.set(cert_pem, key_pem).map_err(|e| e.to_string())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().and_then(|k| k.clone())
    }
}

/// rustls server config: TLS 1.3 and 1.2, ALPN h2 then http/1.1, certificate from the store.
pub fn server_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with_client_ca(store, None)
}

/// The same, and with `client_ca`, mutual TLS: only a client (the API server) presenting a
/// certificate signed by that CA completes the handshake.
pub fn server_config_with_client_ca(
    store: Arc<CertStore>,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(path)?),
    };
    let mut cfg = builder.with_cert_resolver(store);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn client_verifier(path: &Path) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let bad = |detail: String| TlsError::ClientCa { path: path.to_owned(), detail };
    let pem = read("the client CA (--client-ca-file)", path)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("it holds no PEM certificate".into()));
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| bad(e.to_string()))
}

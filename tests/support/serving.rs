//! Helpers for the e2e of serving under change and misconfiguration: `serve` processes on chosen
//! loopback addresses (whose logs are kept), a selectorless Service with EndpointSlices that the
//! test manages as the kubelet and the EndpointSlice controller would, registration by Service,
//! and client certificates and kubeconfigs made with openssl.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use super::{ControlPlane, Printed, free_port, http_get_full, webhook_bin};

/// One `serve` process listening on a chosen address, its stderr in a log file; SIGKILL on drop
/// (a test that failed half-way leaves nothing running).
pub struct Replica {
    pub child: Child,
    pub addr: SocketAddr,
    pub probe_port: u16,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Replica {
    /// Starts `serve --kubeconfig` of `cp` with the serving pair in `certs` on `addr`, probes and
    /// metrics on free 127.0.0.1 ports, and `extra`; does not wait for anything.
    pub fn spawn(cp: &ControlPlane, certs: &Path, addr: SocketAddr, extra: &[&str]) -> Self {
        let mut args: Vec<String> = vec!["--kubeconfig".into(), cp.kubeconfig.display().to_string()];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Self::spawn_args(&cp.dir.path().join("logs"), certs, addr, &args)
    }

    /// Starts `serve` with exactly these arguments besides the addresses and the serving pair;
    /// the log goes to `log_dir/webhook-IP-PORT-N.log`.
    pub fn spawn_args(log_dir: &Path, certs: &Path, addr: SocketAddr, args: &[String]) -> Self {
        let (probe_port, metrics_port) = (free_port(), free_port());
        std::fs::create_dir_all(log_dir).unwrap();
        let log = (0..)
            .map(|n| log_dir.join(format!("webhook-{}-{}-{n}.log", addr.ip(), addr.port())))
            .find(|p| !p.exists())
            .unwrap();
        let child = Command::new(webhook_bin())
            .arg("serve")
            .arg("--tls-cert-file")
            .arg(certs.join("tls.crt"))
            .arg("--tls-key-file")
            .arg(certs.join("tls.key"))
            .args(["--webhook-addr", &addr.to_string()])
            .args(["--probe-addr", &format!("127.0.0.1:{probe_port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, addr, probe_port, metrics_port, log }
    }

    /// The raw answer of the probe port's `/readyz` (status line, headers, body), if any.
    pub fn readyz(&self) -> Option<String> {
        http_get_full(self.probe_port, "/readyz")
    }

    /// The value of a metric without labels (e.g. `offloading_webhook_reconcile_up`), or of one
    /// series given with its labels (`offloading_webhook_problem{part="lease"}`).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = http_get_full(self.metrics_port, "/metrics")?;
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Waits until `/readyz` answers 200; panics with the log's end otherwise.
    pub async fn ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.readyz().unwrap_or_default();
            if r.starts_with("HTTP/1.1 200") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the replica on {} exited ({status}) before ready:\n{}", self.addr, self.log_tail(30));
            }
            assert!(
                Instant::now() < deadline,
                "the replica on {} was not ready within {timeout:?}; /readyz: {r:?}\n{}",
                self.addr,
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn sigterm(&self) {
        let st = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(st.success(), "could not SIGTERM {}", self.child.id());
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub async fn exited(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the replica on {} did not exit within {timeout:?} of SIGTERM:\n{}",
                self.addr,
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The log as a person reads it (without terminal colour codes).
    /// Waits for the process to exit after a SIGTERM sent at `since`, watching `/readyz` meanwhile:
    /// when it first failed (not 200), and when the process exited.
    pub async fn drained(&mut self, since: Instant, timeout: Duration) -> Drained {
        let mut not_ready_after = None;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Drained { status, not_ready_after, exited_after: since.elapsed() };
            }
            if not_ready_after.is_none() && self.readyz().is_some_and(|r| !r.starts_with("HTTP/1.1 200")) {
                not_ready_after = Some(since.elapsed());
            }
            assert!(
                since.elapsed() < timeout,
                "the replica on {} did not exit within {timeout:?} of SIGTERM:\n{}",
                self.addr,
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The log as written: plain text, since `serve` colours only a terminal.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// How a replica went after SIGTERM.
#[derive(Debug, Clone, Copy)]
pub struct Drained {
    pub status: ExitStatus,
    /// When `/readyz` first answered other than 200 (or not at all), if it was seen.
    pub not_ready_after: Option<Duration>,
    pub exited_after: Duration,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `offloading-webhook certs --out dir` for these names (IP literals or DNS names); run again on the
/// same dir it keeps the CA and writes a new serving pair over the files (a rotation).
pub fn issue_certs(dir: &Path, names: &[&str]) {
    let mut cmd = Command::new(webhook_bin());
    cmd.args(["certs", "--out"]).arg(dir);
    for n in names {
        let flag = if n.parse::<std::net::IpAddr>().is_ok() { "--ip" } else { "--dns" };
        cmd.args([flag, n]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "certs failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Applies the binary's `webhook-config` output (`--url URL` or `--service NS/NAME`) with the CA in
/// `certs/ca.crt`.
pub fn register(cp: &ControlPlane, target: (&str, &str), certs: &Path) {
    let out = Command::new(webhook_bin())
        .args(["webhook-config", target.0, target.1, "--ca-file"])
        .arg(certs.join("ca.crt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let yaml = String::from_utf8(out.stdout).unwrap();
    let p = cp.kubectl_stdin(&["apply", "-f", "-"], Some(&yaml));
    assert!(p.ok, "{}", p.stderr);
}

/// One endpoint as the EndpointSlice controller publishes it for a pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub ready: bool,
    pub terminating: bool,
}

/// A selectorless ClusterIP Service on port 443 named `port_name`, and one `addressType: FQDN`
/// EndpointSlice per target port (a slice has one port list for all its endpoints, and a rolling
/// update here moves a replica to the other port of its IP). FQDN because an IPv4 slice refuses
/// loopback addresses; the API server's resolver uses the IP literal as written. Only `ready`
/// decides whether it routes to an endpoint.
pub struct ServiceEndpoints {
    api: Api<EndpointSlice>,
    pub namespace: String,
    pub name: String,
    ports: Vec<u16>,
    pub endpoints: Vec<Endpoint>,
}

impl ServiceEndpoints {
    pub async fn create(
        client: kube::Client,
        namespace: &str,
        name: &str,
        port_name: &str,
        ports: &[u16],
    ) -> Self {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": "ClusterIP", "ports": [{"name": port_name, "port": 443, "protocol": "TCP"}]},
        }))
        .unwrap();
        Api::<Service>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &svc)
            .await
            .unwrap();
        let api = Api::<EndpointSlice>::namespaced(client, namespace);
        for port in ports {
            let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
                "metadata": {
                    "name": format!("{name}-{port}"),
                    "namespace": namespace,
                    "labels": {
                        "kubernetes.io/service-name": name,
                        "endpointslice.kubernetes.io/managed-by": "e2e.offloading-webhook",
                    },
                },
                "addressType": "FQDN",
                "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
                "endpoints": [],
            }))
            .unwrap();
            api.create(&PostParams::default(), &slice).await.unwrap();
        }
        Self { api, namespace: namespace.into(), name: name.into(), ports: ports.to_vec(), endpoints: vec![] }
    }

    /// Adds (ready) or updates the endpoint at `addr`, and publishes its slice.
    pub async fn set(&mut self, addr: SocketAddr, ready: bool, terminating: bool) {
        let ep = Endpoint { addr, ready, terminating };
        match self.endpoints.iter_mut().find(|e| e.addr == addr) {
            Some(e) => *e = ep,
            None => self.endpoints.push(ep),
        }
        self.publish(addr.port()).await;
    }

    /// Removes the endpoint at `addr` (its pod is gone), and publishes its slice.
    pub async fn remove(&mut self, addr: SocketAddr) {
        self.endpoints.retain(|e| e.addr != addr);
        self.publish(addr.port()).await;
    }

    async fn publish(&self, port: u16) {
        assert!(self.ports.contains(&port), "no EndpointSlice for port {port}");
        let endpoints: Vec<_> = self
            .endpoints
            .iter()
            .filter(|e| e.addr.port() == port)
            .map(|e| {
                serde_json::json!({
                    "addresses": [e.addr.ip().to_string()],
                    // A terminating pod keeps serving (it drains) but is not ready.
                    "conditions": {"ready": e.ready, "serving": e.ready || e.terminating, "terminating": e.terminating},
                })
            })
            .collect();
        // A merge patch replaces the whole list, as the controller's update does.
        let patch = serde_json::json!({"endpoints": endpoints});
        self.api
            .patch(&format!("{}-{port}", self.name), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
}

/// Runs openssl, panicking with its stderr on failure.
fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl is needed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A new self-signed CA in `dir/NAME.{crt,key}`.
pub fn openssl_ca(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (crt, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "30",
        "-subj",
        &format!("/CN={cn}"),
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        crt.to_str().unwrap(),
    ]);
    (crt, key)
}

/// A client certificate (`subject` like `/O=group/CN=user`) signed by `ca`, in `dir/NAME.{crt,key}`.
pub fn openssl_client_cert(ca: (&Path, &Path), dir: &Path, name: &str, subject: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let p = |ext: &str| dir.join(format!("{name}.{ext}"));
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    std::fs::write(
        p("ext"),
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        subject,
        "-keyout",
        &s(&p("key")),
        "-out",
        &s(&p("csr")),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&p("csr")),
        "-CA",
        &s(ca.0),
        "-CAkey",
        &s(ca.1),
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        &s(&p("ext")),
        "-out",
        &s(&p("crt")),
    ]);
    (p("crt"), p("key"))
}

impl ControlPlane {
    /// The API server's `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> String {
        let ports = std::fs::read_to_string(self.dir.path().join("ports")).unwrap();
        let port = ports.lines().find_map(|l| l.strip_prefix("apiserver=")).unwrap();
        format!("https://127.0.0.1:{}", port.trim())
    }

    /// A kubeconfig at `path` for a user authenticated by this client certificate and key.
    pub fn kubeconfig_for(&self, path: &Path, cert: &Path, key: &Path) {
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: user\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: user\ncurrent-context: test\n",
            self.server_url(),
            self.dir.path().join("pki/ca.crt").display(),
            cert.display(),
            key.display()
        );
        std::fs::write(path, yaml).unwrap();
    }
}

/// Files that give kube-apiserver a client certificate for calls to the webhook at `host` (the
/// `host:port` of its URL, or `NAME.NS.svc`): an AdmissionConfiguration for both webhook plugins
/// whose `kubeConfigFile` has a user named after that host. Returns the AdmissionConfiguration's
/// path, for `--admission-control-config-file`.
pub fn admission_config_with_client_cert(dir: &Path, host: &str, cert: &Path, key: &Path) -> PathBuf {
    let kubeconfig = dir.join("webhook-client-kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nusers:\n- name: \"{host}\"\n  user:\n    client-certificate: {}\n    client-key: {}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let plugin = |name: &str| {
        format!(
            "- name: {name}\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    kind: WebhookAdmissionConfiguration\n    kubeConfigFile: {}\n",
            kubeconfig.display()
        )
    };
    let path = dir.join("admission-config.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n{}{}",
            plugin("ValidatingAdmissionWebhook"),
            plugin("MutatingAdmissionWebhook")
        ),
    )
    .unwrap();
    path
}

/// Runs the binary with `args` to its end (killed after `timeout`): what it printed and its status.
pub fn run_to_exit(args: &[&str], timeout: Duration) -> (Option<ExitStatus>, Printed) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(webhook_bin())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let printed = Printed {
        ok: status.is_some_and(|s| s.success()),
        stdout: std::fs::read_to_string(out).unwrap_or_default(),
        stderr: std::fs::read_to_string(err).unwrap_or_default(),
    };
    (status, printed)
}

//! Test support: a real control plane (etcd + kube-apiserver + kube-controller-manager on
//! loopback, from `tests/go/controlplane/`), the real kubectl, and teardown that runs also when a
//! test panics (Drop). Each test that needs a cluster starts its own: a start takes seconds, and no
//! test sees another's objects.
//!
//! Every test file includes it as `mod support;` and nothing else: the submodules below are
//! declared here only, and reached as `support::chart`, `support::liqo`, `support::serving`.
#![allow(dead_code)]

pub mod audit;
pub mod chart;
pub mod liqo;
pub mod readme;
pub mod serving;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The local cluster id the tests give the webhook.
pub const CLUSTER_ID: &str = "b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a";

/// The binary under test (cargo builds it for integration tests).
pub fn webhook_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_offloading-webhook"))
}

/// Runs `script` (a `tests/go/*/build.sh`, relative to the repository root) with `args` once per
/// test process and returns the path it printed. The script builds only when its stamp is stale and
/// waits on a lock while another process builds; this saves running it again for every test.
pub fn built_once(script: &str, args: &[&str]) -> &'static Path {
    static BUILT: Mutex<BTreeMap<(String, Vec<String>), &'static Path>> = Mutex::new(BTreeMap::new());
    let key = (script.to_owned(), args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>());
    // Held while building: two tests wanting the same binaries wait for one build.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(&key) {
        return path;
    }
    let out = Command::new("bash")
        .arg(format!("{ROOT}/{script}"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("could not run {script}: {e}"));
    assert!(out.status.success(), "{script} {args:?} failed ({})", out.status);
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!printed.is_empty(), "{script} {args:?} printed no path");
    // Leaked once per script and arguments: a handful of paths per test process.
    let path: &'static Path = Box::leak(PathBuf::from(printed).into_boxed_path());
    built.insert(key, path);
    path
}

/// The default release's control-plane binaries (`tests/go/controlplane/build.sh`): their dir.
pub fn bin_dir() -> &'static Path {
    built_once("tests/go/controlplane/build.sh", &[])
}

/// The control plane of another Kubernetes release than the default one:
/// `tests/go/controlplane/build.sh VERSION`, e.g. `v1.30`, the oldest release the chart claims.
/// Returns its bin directory.
pub fn bin_dir_for(version: &str) -> PathBuf {
    built_once("tests/go/controlplane/build.sh", &[version]).to_path_buf()
}

/// What a command printed.
#[derive(Debug)]
pub struct Printed {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Printed {
    fn from(o: Output) -> Self {
        Self {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Held while a control plane starts and while one restarts its API server: a restarting server's
/// port is free for a moment, and a control plane starting then could pick it.
static PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ports_lock() -> std::sync::MutexGuard<'static, ()> {
    PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// One running control plane, stopped on drop.
pub struct ControlPlane {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    /// Its binaries (kubectl among them): the default release's, or another's (`start_release`).
    pub bin: PathBuf,
}

impl ControlPlane {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts one with extra environment for up.sh, e.g.
    /// `[("UP_APISERVER_ARGS", "--enable-aggregator-routing=true")]`.
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        Self::start_from(bin_dir(), env)
    }

    /// Starts one of another Kubernetes release (see [`bin_dir_for`]), driven by that release's
    /// kubectl.
    pub fn start_release(version: &str, env: &[(&str, &str)]) -> Self {
        Self::start_from(&bin_dir_for(version), env)
    }

    fn start_from(bin: &Path, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new().prefix("cp-").tempdir().unwrap();
        let ports = ports_lock();
        let out = Command::new("bash")
            .arg(format!("{ROOT}/tests/go/controlplane/up.sh"))
            .arg(dir.path())
            .env("CONTROLPLANE_BIN", bin)
            .envs(env.iter().copied())
            .stderr(Stdio::inherit())
            .output()
            .expect("could not run tests/go/controlplane/up.sh");
        drop(ports);
        let cp = Self { kubeconfig: dir.path().join("kubeconfig"), dir, bin: bin.to_owned() };
        assert!(out.status.success(), "tests/go/controlplane/up.sh failed");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), cp.kubeconfig.to_str().unwrap());
        cp
    }

    /// Runs the real kubectl against this control plane.
    pub fn kubectl(&self, args: &[&str]) -> Printed {
        self.kubectl_stdin(args, None)
    }

    /// Runs kubectl with `stdin` as its standard input (for `apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Printed {
        use std::io::Write;
        let mut child = Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("could not run kubectl");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap().into()
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let p = self.kubectl(args);
        assert!(p.ok, "kubectl {args:?} failed:\n{}{}", p.stdout, p.stderr);
        p.stdout
    }

    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
        kube::Client::try_from(cfg).unwrap()
    }

    /// PIDs of what `up.sh` started (from its PID files).
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pid"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
            .collect()
    }

    pub fn stop(&self) {
        let _ = Command::new("bash")
            .arg(format!("{ROOT}/tests/go/controlplane/down.sh"))
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
        // A failed test keeps its logs (control plane, webhook) for the person reading the failure.
        if std::thread::panicking() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!("test failed: logs kept in {}", kept.display());
        }
    }
}

/// Whether a process with this PID is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The webhook binary as a child process; SIGTERM on drop.
pub struct Webhook {
    pub child: Child,
    pub port: u16,
    pub probe_port: u16,
    pub metrics_port: u16,
}

impl Webhook {
    pub fn start(cp: &ControlPlane, certs: &Path, extra: &[&str]) -> Self {
        let (port, probe_port, metrics_port) = (free_port(), free_port(), free_port());
        let log_path = cp.dir.path().join(format!("webhook-{port}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(webhook_bin())
            .args(["serve", "--kubeconfig"])
            .arg(&cp.kubeconfig)
            .arg("--tls-cert-file")
            .arg(certs.join("tls.crt"))
            .arg("--tls-key-file")
            .arg(certs.join("tls.key"))
            .args(["--webhook-addr", &format!("127.0.0.1:{port}")])
            .args(["--probe-addr", &format!("127.0.0.1:{probe_port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            // Tests stop webhooks often; the shutdown delay is for rollouts, which set their own.
            .args(if extra.iter().any(|a| a.starts_with("--shutdown-delay-seconds")) {
                &[][..]
            } else {
                &["--shutdown-delay-seconds", "0"][..]
            })
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut w = Self { child, port, probe_port, metrics_port };
        eventually(Duration::from_secs(30), "the webhook's /readyz to answer 200", || {
            // A replica that refused its arguments is not worth waiting for: say why it stopped.
            if let Ok(Some(status)) = w.child.try_wait() {
                let said = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("the webhook exited ({status}) before it was ready; its log:\n{said}");
            }
            (http_get(w.probe_port, "/readyz").as_deref() == Some("200")).then_some(())
        });
        w
    }

    /// Registers both webhooks by URL (replacing an earlier registration).
    pub fn register(&self, cp: &ControlPlane, certs: &Path) {
        let out = Command::new(webhook_bin())
            .args(["webhook-config", "--url", &format!("https://127.0.0.1:{}", self.port), "--ca-file"])
            .arg(certs.join("ca.crt"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let yaml = String::from_utf8(out.stdout).unwrap();
        let p = cp.kubectl_stdin(&["apply", "-f", "-"], Some(&yaml));
        assert!(p.ok, "{}", p.stderr);
    }

    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status code of a plain-HTTP GET on loopback, without an HTTP client crate.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    http_get_full(port, path).map(|r| r.split_whitespace().nth(1).unwrap_or_default().to_owned())
}

/// The whole raw response of a plain-HTTP GET.
pub fn http_get_full(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some(buf)
}

pub fn nsof(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: offloading.liqo.io/v1alpha1\nkind: NamespaceOffloading\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{spec}"
    )
}

pub fn apply(cp: &ControlPlane, yaml: &str, extra: &[&str]) -> Printed {
    let mut args = vec!["apply", "-f", "-"];
    args.extend_from_slice(extra);
    cp.kubectl_stdin(&args, Some(yaml))
}

pub fn install_crds(cp: &ControlPlane) {
    cp.kubectl_ok(&["apply", "-f", &format!("{}/manifests/crds.yaml", ROOT)]);
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/namespaceoffloadings.offloading.liqo.io",
        "crd/namespacemaps.virtualkubelet.liqo.io",
    ]);
}

pub fn certs_for_loopback(dir: &Path) {
    let st = Command::new(webhook_bin())
        .args(["certs", "--out"])
        .arg(dir)
        .args(["--ip", "127.0.0.1", "--dns", "localhost"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

impl ControlPlane {
    /// Kills kube-apiserver (a crash: SIGKILL; on SIGTERM it waits 60 s for open watches) and starts
    /// it again with the same command line, ports and data; waits until it serves again. etcd keeps
    /// the data meanwhile.
    pub fn restart_apiserver(&self) {
        let pid_file = self.dir.path().join("kube-apiserver.pid");
        let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let ports = ports_lock();
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        eventually(Duration::from_secs(30), "kube-apiserver to stop", || (!alive(pid)).then_some(()));
        // Relaunch until it binds: right after a SIGKILL its port can still be taken for a moment
        // ("bind: address already in use"), as a supervisor's restart would find too.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("kube-apiserver-restarted.log"))
                .unwrap();
            let mut child = Command::new(&args[0])
                .args(&args[1..])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            std::fs::write(&pid_file, child.id().to_string()).unwrap();
            std::thread::sleep(Duration::from_secs(3));
            match child.try_wait() {
                Ok(Some(_)) if std::time::Instant::now() < deadline => continue,
                // Running (or out of retries): down.sh stops it by PID; the handle is not needed.
                _ => {
                    std::mem::forget(child);
                    break;
                }
            }
        }
        drop(ports);
        let log_path = self.dir.path().join("kube-apiserver-restarted.log");
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually(Duration::from_secs(120), "kube-apiserver to serve again", || {
                let p = self.kubectl(&["get", "--raw", "/readyz"]);
                (p.ok && p.stdout.trim() == "ok").then_some(())
            })
        }));
        if served.is_err() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let readyz = self.kubectl(&["get", "--raw", "/readyz?verbose"]);
            panic!(
                "kube-apiserver did not serve again within 120 s after a restart\n/readyz: {}{}\nlast log lines:\n{}",
                readyz.stdout,
                readyz.stderr,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// A control plane with the CRDs, dev certificates, and the webhook binary running (with `extra`
/// arguments) and registered by URL. Drop order: the webhook before the control plane.
pub fn cluster_with_webhook(extra: &[&str]) -> (ControlPlane, PathBuf, Webhook) {
    let cp = ControlPlane::start();
    install_crds(&cp);
    let certs = cp.dir.path().join("certs");
    certs_for_loopback(&certs);
    let wh = Webhook::start(&cp, &certs, extra);
    wh.register(&cp, &certs);
    (cp, certs, wh)
}

/// Creates a Liqo virtual node for remote cluster `id` with a region label.
pub fn virtual_node(cp: &ControlPlane, id: &str, region: &str) {
    let yaml = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: liqo-{id}\n  labels:\n    liqo.io/type: virtual-node\n    liqo.io/remote-cluster-id: {id}\n    topology.liqo.io/region: {region}\n"
    );
    let p = apply(cp, &yaml, &[]);
    assert!(p.ok, "{}", p.stderr);
}

/// What a kubectl command printed, or "" when it failed (e.g. NotFound).
pub fn get(cp: &ControlPlane, args: &[&str]) -> String {
    let p = cp.kubectl(args);
    if p.ok { p.stdout } else { String::new() }
}

/// Polls `f` until it returns `want`; the panic says what was last seen.
pub fn wait_eq(timeout: Duration, what: &str, want: &str, mut f: impl FnMut() -> String) {
    let mut last = String::new();
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(timeout, what, || {
            last = f();
            (last == want).then_some(())
        })
    }));
    assert!(ok.is_ok(), "{what}: wanted {want:?}, last saw {last:?}");
}

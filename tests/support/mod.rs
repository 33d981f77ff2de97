//! Test support: a real control plane (etcd + kube-apiserver + kube-controller-manager on
//! loopback, from `tests/controlplane/`), the real kubectl, and teardown that runs also when a test
//! panics (Drop). Each test that needs a cluster starts its own: a start takes seconds, and no
//! test sees another's objects.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Builds (once per test binary; cached on disk) the control-plane binaries and returns their dir.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new("bash")
            .arg(format!("{ROOT}/tests/controlplane/build.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("could not run tests/controlplane/build.sh");
        assert!(out.status.success(), "tests/controlplane/build.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
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

/// One running control plane, stopped on drop.
pub struct ControlPlane {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    pub fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("cp-").tempdir().unwrap();
        let out = Command::new("bash")
            .arg(format!("{ROOT}/tests/controlplane/up.sh"))
            .arg(dir.path())
            .env("CONTROLPLANE_BIN", bin)
            .stderr(Stdio::inherit())
            .output()
            .expect("could not run tests/controlplane/up.sh");
        let cp = Self { kubeconfig: dir.path().join("kubeconfig"), dir };
        assert!(out.status.success(), "tests/controlplane/up.sh failed");
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
        let mut child = Command::new(bin_dir().join("kubectl"))
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
            .arg(format!("{ROOT}/tests/controlplane/down.sh"))
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
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

//! Real Liqo v1.2 beside the test control planes: its CRDs (from the Go module), its own
//! NamespaceOffloading webhook, its offloading reconcilers, the NamespaceMap copying of its
//! crd-replicator, and liqoctl, all built by `tests/liqo/build.sh` (cached under target/liqo/bin).
//! A remote cluster is stood up the v1.x way: tenant namespace, VirtualNode, optionally a Node.
//! Every process is a child killed on drop; its log is kept in the control plane's directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::{ControlPlane, ROOT, apply, eventually, free_port};

/// The consumer's cluster id in the Liqo tests: a UUID, as the Helm chart generates one when none
/// is given (36 characters, so a namespace of 26 makes a 63-character remote name).
pub const CONSUMER_ID: &str = "6c2a4a1e-54c1-4d2e-9b51-2f3c8e7d9a10";
/// The provider's cluster id: a name as liqoctl generates them.
pub const PROVIDER_ID: &str = "frosty-bird";

/// Builds (once per test binary; cached on disk) Liqo's binaries and returns their dir.
/// `LIQO_SKIP_LIQOCTL=1` leaves liqoctl out (see [`liqoctl`]).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new("bash")
            .arg(format!("{ROOT}/tests/liqo/build.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("could not run tests/liqo/build.sh");
        assert!(out.status.success(), "tests/liqo/build.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// liqoctl, when build.sh built it (not with LIQO_SKIP_LIQOCTL=1).
pub fn liqoctl() -> Option<PathBuf> {
    let p = bin_dir().join("liqoctl");
    (std::env::var("LIQO_SKIP_LIQOCTL").as_deref() != Ok("1") && p.is_file()).then_some(p)
}

/// Liqo's CRD directory inside the Go module cache (`go mod download` fetches the module if needed).
pub fn crd_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new(std::env::var("GO").unwrap_or_else(|_| "go".into()))
            .args(["mod", "download", "-json", "github.com/liqotech/liqo@v1.2.0"])
            .current_dir(format!("{ROOT}/tests/liqo"))
            .stderr(Stdio::inherit())
            .output()
            .expect("could not run go mod download (Go is needed for the Liqo tests)");
        assert!(out.status.success(), "go mod download github.com/liqotech/liqo@v1.2.0 failed");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let dir = json["Dir"].as_str().expect("go mod download -json printed no Dir");
        let crds = Path::new(dir).join("deployments/liqo/charts/liqo-crds/crds");
        assert!(crds.is_dir(), "{} is missing", crds.display());
        crds
    })
}

/// Installs all of Liqo v1.2's CRDs, server-side (the virtualnodes CRD is too large for a
/// client-side apply's annotation), and waits for the offloading ones.
pub fn install_crds(cp: &ControlPlane) {
    cp.kubectl_ok(&["apply", "--server-side", "-f", crd_dir().to_str().unwrap()]);
    // Retried: `kubectl wait` fails outright on a CRD that has no status yet.
    eventually(Duration::from_secs(90), "Liqo's offloading CRDs to be Established", || {
        cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/namespaceoffloadings.offloading.liqo.io",
            "crd/namespacemaps.offloading.liqo.io",
            "crd/virtualnodes.offloading.liqo.io",
        ])
        .ok
        .then_some(())
    });
}

fn apply_ok(cp: &ControlPlane, yaml: &str) {
    let p = apply(cp, yaml, &["--server-side"]);
    assert!(p.ok, "applying\n{yaml}\nfailed: {}{}", p.stdout, p.stderr);
}

fn yaml_labels(indent: &str, labels: &[(&str, &str)]) -> String {
    labels.iter().map(|(k, v)| format!("{indent}{k}: \"{v}\"\n")).collect()
}

/// Liqo v1.x's cluster-id ConfigMap (namespace `liqo`), found by its label.
pub fn cluster_id_configmap(cp: &ControlPlane, id: &str) {
    apply_ok(cp, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: liqo\n");
    apply_ok(
        cp,
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: liqo-clusterid-configmap\n  namespace: liqo\n  labels:\n    app.kubernetes.io/name: clusterid-configmap\ndata:\n  CLUSTER_ID: {id}\n"
        ),
    );
}

/// The tenant namespace Liqo v1.x keeps for remote cluster `id`.
pub fn tenant_namespace(cp: &ControlPlane, id: &str) -> String {
    let name = format!("liqo-tenant-{id}");
    apply_ok(
        cp,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    liqo.io/tenant-namespace: \"true\"\n    liqo.io/remote-cluster-id: {id}\n"
        ),
    );
    name
}

/// A remote cluster the v1.x way: tenant namespace `liqo-tenant-<id>` and a VirtualNode `<id>` in
/// it with `spec.labels` = `labels` (what the cluster selector sees while no Node exists). The
/// VirtualNode reconciler then makes the cluster's NamespaceMap. `template` and `createNode` are set
/// because the reconciler dereferences them (Liqo's virtualnode webhook fills them in a real
/// installation); the virtual kubelet Deployment it makes stays at 0 replicas.
pub fn remote_cluster_v1(cp: &ControlPlane, id: &str, labels: &[(&str, &str)]) {
    let ns = tenant_namespace(cp, id);
    let spec_labels = if labels.is_empty() {
        "  labels: {}\n".to_owned()
    } else {
        format!("  labels:\n{}", yaml_labels("    ", labels))
    };
    apply_ok(
        cp,
        &format!(
            "apiVersion: offloading.liqo.io/v1beta1
kind: VirtualNode
metadata:
  name: {id}
  namespace: {ns}
  labels:
    liqo.io/remote-cluster-id: {id}
spec:
  clusterID: {id}
  createNode: true
{spec_labels}  template:
    metadata:
      name: vk-{id}
      namespace: {ns}
    spec:
      replicas: 0
      selector:
        matchLabels:
          app.kubernetes.io/name: vk-{id}
      template:
        metadata:
          labels:
            app.kubernetes.io/name: vk-{id}
        spec:
          containers:
          - name: virtual-kubelet
            image: ghcr.io/liqotech/virtual-kubelet:v1.2.0
"
        ),
    );
}

/// The Node of remote cluster `id`'s VirtualNode (when it exists, its labels are what the cluster
/// selector sees).
pub fn virtual_node_v1(cp: &ControlPlane, id: &str, labels: &[(&str, &str)]) {
    apply_ok(
        cp,
        &format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {id}\n  labels:\n    liqo.io/type: virtual-node\n    liqo.io/remote-cluster-id: {id}\n{}",
            yaml_labels("    ", labels)
        ),
    );
}

/// The NamespaceMap the VirtualNode reconciler made for remote cluster `id`, once it exists.
pub fn wait_namespace_map(cp: &ControlPlane, id: &str) {
    eventually(
        Duration::from_secs(90),
        &format!("NamespaceMap {id} from Liqo's VirtualNode reconciler"),
        || {
            let p = cp.kubectl(&[
                "get",
                "namespacemaps.offloading.liqo.io",
                "-n",
                &format!("liqo-tenant-{id}"),
                id,
                "-o",
                "name",
            ]);
            p.ok.then_some(())
        },
    );
}

/// One of Liqo's processes; killed on drop. Its log is `<control plane dir>/<name>.log`.
pub struct LiqoProcess {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl LiqoProcess {
    fn spawn(dir: &Path, name: &str, bin: &str, args: &[String], kubeconfig: Option<&Path>) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin_dir().join(bin));
        // controller-runtime's GetConfigOrDie reads $KUBECONFIG (its --kubeconfig is a Go flag,
        // which a pflag main does not parse).
        match kubeconfig {
            Some(k) => cmd.env("KUBECONFIG", k),
            None => cmd.env_remove("KUBECONFIG"),
        };
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {bin}: {e}"));
        Self { child, name: name.to_owned(), log }
    }

    /// What the process wrote so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics, with the end of the log, when the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "{} exited ({status}); last log lines:\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

impl Drop for LiqoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Liqo's offloading reconcilers on `cp` for local cluster `cluster_id`: `controllers` among
/// `namespaceoffloading`, `virtualnode` (a consumer) and `namespacemap` (a provider); `extra` e.g.
/// `--client-qps=20`.
pub fn start_controllers(
    cp: &ControlPlane,
    cluster_id: &str,
    controllers: &[&str],
    extra: &[&str],
) -> LiqoProcess {
    let mut args =
        vec![format!("--cluster-id={cluster_id}"), format!("--controllers={}", controllers.join(","))];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let name = format!("liqo-controllers-{}", controllers.join("-"));
    let mut p = LiqoProcess::spawn(cp.dir.path(), &name, "liqo-controllers", &args, Some(&cp.kubeconfig));
    eventually(Duration::from_secs(60), "Liqo's controllers to start", || {
        p.assert_running();
        p.log_text().contains("Starting workers").then_some(())
    });
    p
}

/// The NamespaceMap copying of Liqo's crd-replicator between `consumer` and `provider`.
pub fn start_replicator(consumer: &ControlPlane, provider: &ControlPlane) -> LiqoProcess {
    let args = vec![
        format!("--consumer-kubeconfig={}", consumer.kubeconfig.display()),
        format!("--provider-kubeconfig={}", provider.kubeconfig.display()),
        format!("--consumer-cluster-id={CONSUMER_ID}"),
        format!("--provider-cluster-id={PROVIDER_ID}"),
    ];
    let mut p = LiqoProcess::spawn(consumer.dir.path(), "liqo-replicator", "liqo-replicator", &args, None);
    eventually(Duration::from_secs(60), "the replicator to sync", || {
        p.assert_running();
        p.log_text().contains("replicating NamespaceMaps").then_some(())
    });
    p
}

/// Liqo's own NamespaceOffloading webhook, serving `certs/tls.{crt,key}` on loopback.
pub struct LiqoWebhook {
    pub process: LiqoProcess,
    pub port: u16,
}

impl LiqoWebhook {
    pub fn start(cp: &ControlPlane, certs: &Path) -> Self {
        let port = free_port();
        let args = vec![
            "--host=127.0.0.1".to_owned(),
            format!("--webhook-port={port}"),
            format!("--cert-dir={}", certs.display()),
        ];
        let mut process =
            LiqoProcess::spawn(cp.dir.path(), &format!("liqo-webhook-{port}"), "liqo-webhook", &args, None);
        eventually(Duration::from_secs(30), "Liqo's webhook to listen", || {
            process.assert_running();
            std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        Self { process, port }
    }

    /// Registers it by URL with its CA (`certs/ca.crt`), named as Liqo's chart names it
    /// (configuration `liqo-webhook`, webhook `nsoff.validate.liqo.io`; ours is
    /// `validate.offloading-webhook.io`, so kubectl's refusal says whose it is).
    pub fn register(&self, cp: &ControlPlane, certs: &Path) {
        // base64 by coreutils: no encoder crate for one test helper.
        let out = Command::new("base64").arg("-w0").arg(certs.join("ca.crt")).output().unwrap();
        assert!(out.status.success(), "base64 of ca.crt failed");
        let ca = String::from_utf8(out.stdout).unwrap();
        let yaml = format!(
            "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: liqo-webhook
webhooks:
- name: nsoff.validate.liqo.io
  admissionReviewVersions: [v1, v1beta1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 10
  clientConfig:
    url: https://127.0.0.1:{}/validate/namespace-offloading
    caBundle: {ca}
  rules:
  - apiGroups: [offloading.liqo.io]
    apiVersions: [v1beta1]
    operations: [CREATE, UPDATE]
    resources: [namespaceoffloadings]
  objectSelector:
    matchExpressions:
    - key: liqo.io/webhook-skip
      operator: NotIn
      values: [\"true\"]
",
            self.port
        );
        apply_ok(cp, &yaml);
    }
}

/// A NamespaceOffloading in Liqo v1.x's API.
pub fn nsof_v1(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: offloading.liqo.io/v1beta1\nkind: NamespaceOffloading\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{spec}"
    )
}

/// A consumer and a provider control plane, peered the v1.x way as far as offloading goes: Liqo's
/// CRDs and cluster-id ConfigMap on both; on the consumer a remote cluster for the provider
/// (tenant namespace, VirtualNode with `provider_labels`) and Liqo's NamespaceOffloading and
/// VirtualNode reconcilers; on the provider the tenant namespace for the consumer and Liqo's
/// NamespaceMap reconciler; the replicator between them. Drop order: the processes, then the
/// control planes.
pub struct Pair {
    pub replicator: LiqoProcess,
    pub consumer_ctrl: LiqoProcess,
    pub provider_ctrl: LiqoProcess,
    pub consumer: ControlPlane,
    pub provider: ControlPlane,
}

impl Pair {
    pub fn start(provider_labels: &[(&str, &str)], consumer_extra: &[&str]) -> Self {
        bin_dir();
        let (consumer, provider) = std::thread::scope(|s| {
            let c = s.spawn(|| {
                let cp = ControlPlane::start();
                install_crds(&cp);
                cp
            });
            let p = s.spawn(|| {
                let cp = ControlPlane::start();
                install_crds(&cp);
                cp
            });
            (c.join().unwrap(), p.join().unwrap())
        });
        cluster_id_configmap(&consumer, CONSUMER_ID);
        cluster_id_configmap(&provider, PROVIDER_ID);
        tenant_namespace(&provider, CONSUMER_ID);
        remote_cluster_v1(&consumer, PROVIDER_ID, provider_labels);
        let consumer_ctrl = start_controllers(
            &consumer,
            CONSUMER_ID,
            &["namespaceoffloading", "virtualnode"],
            consumer_extra,
        );
        let provider_ctrl = start_controllers(&provider, PROVIDER_ID, &["namespacemap"], &[]);
        wait_namespace_map(&consumer, PROVIDER_ID);
        let replicator = start_replicator(&consumer, &provider);
        Self { replicator, consumer_ctrl, provider_ctrl, consumer, provider }
    }

    /// Panics, with the log's end, when one of Liqo's processes died.
    pub fn assert_running(&mut self) {
        self.consumer_ctrl.assert_running();
        self.provider_ctrl.assert_running();
        self.replicator.assert_running();
    }
}

/// A `kubectl get -o jsonpath=...` value ("" when the object is missing).
pub fn jsonpath(cp: &ControlPlane, args: &[&str], path: &str) -> String {
    let mut a: Vec<&str> = args.to_vec();
    let p = format!("jsonpath={path}");
    a.extend(["-o", &p]);
    super::get(cp, &a)
}

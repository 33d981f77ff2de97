//! A control plane whose API server keeps an audit log, read back request by request; and
//! identities for the webhook to run as (a client certificate's user, a ServiceAccount's token).

use std::path::PathBuf;

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::ControlPlane;
use super::serving::openssl_client_cert;

/// A control plane whose API server writes an audit log: every write by anyone, and every
/// request of one user (reads too), with who, what and the answer's code.
pub struct Audited {
    pub cp: ControlPlane,
    pub log: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl Audited {
    /// Audits every request of `user` (e.g. `offloading-webhook`, or
    /// `system:serviceaccount:NS:NAME`) and every write.
    pub fn start(user: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("audit-").tempdir().unwrap();
        let policy = dir.path().join("audit-policy.yaml");
        std::fs::write(
            &policy,
            format!(
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [\"RequestReceived\"]\nrules:\n\
                 - level: Metadata\n  users: [\"{user}\"]\n\
                 - level: Metadata\n  verbs: [\"create\", \"update\", \"patch\", \"delete\", \"deletecollection\"]\n\
                 - level: None\n"
            ),
        )
        .unwrap();
        let log = dir.path().join("audit.log");
        let args = format!(
            "--audit-policy-file={} --audit-log-path={} --audit-log-maxsize=0 --audit-log-format=json",
            policy.display(),
            log.display()
        );
        let cp = ControlPlane::start_with(&[("UP_APISERVER_ARGS", &args)]);
        Self { cp, log, dir: Some(dir) }
    }

    /// Every request of `user` the audit log holds so far.
    pub fn requests_by(&self, user: &str) -> Vec<Audit> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["stage"] == "ResponseComplete" && e["user"]["username"] == user)
            .map(|e| {
                let r = &e["objectRef"];
                let mut resource = r["resource"].as_str().unwrap_or("?").to_owned();
                if let Some(sub) = r["subresource"].as_str() {
                    resource = format!("{resource}/{sub}");
                }
                Audit {
                    verb: e["verb"].as_str().unwrap_or_default().to_owned(),
                    resource,
                    namespace: r["namespace"].as_str().map(str::to_owned),
                    uri: e["requestURI"].as_str().unwrap_or_default().to_owned(),
                    code: e["responseStatus"]["code"].as_u64().unwrap_or(0),
                    at: e["requestReceivedTimestamp"]
                        .as_str()
                        .and_then(|t| t.parse::<Timestamp>().ok())
                        .unwrap_or(Timestamp::UNIX_EPOCH),
                }
            })
            .collect()
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        self.cp.stop();
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("audit log kept in {}", dir.keep().display());
        }
    }
}

/// One request in the audit log.
#[derive(Debug)]
pub struct Audit {
    pub verb: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    pub namespace: Option<String>,
    pub uri: String,
    pub code: u64,
    pub at: Timestamp,
}

impl Audit {
    pub fn is_write(&self) -> bool {
        matches!(self.verb.as_str(), "create" | "update" | "patch" | "delete" | "deletecollection")
    }
}

/// A kubeconfig for the user of this certificate subject (e.g. `/CN=offloading-webhook`).
pub fn user_kubeconfig(cp: &ControlPlane, name: &str, subject: &str) -> PathBuf {
    let pki = cp.dir.path().join("pki");
    let dir = cp.dir.path().join("users");
    let (crt, key) = openssl_client_cert((&pki.join("ca.crt"), &pki.join("ca.key")), &dir, name, subject);
    let path = dir.join(format!("{name}.kubeconfig"));
    cp.kubeconfig_for(&path, &crt, &key);
    path
}

/// A kubeconfig that authenticates as ServiceAccount `namespace/name` (a token from the
/// TokenRequest API, as a pod's projected token), so that exactly its bindings apply.
pub fn service_account_kubeconfig(cp: &ControlPlane, namespace: &str, name: &str) -> PathBuf {
    let token = cp.kubectl_ok(&["create", "token", name, "-n", namespace, "--duration", "2h"]);
    let ca = cp.dir.path().join("pki").join("ca.crt");
    let path = cp.dir.path().join(format!("sa-{namespace}-{name}.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
             users:\n- name: sa\n  user:\n    token: {}\ncontexts:\n- name: sa\n  context:\n    cluster: local\n    user: sa\n\
             current-context: sa\n",
            cp.server_url(),
            ca.display(),
            token.trim()
        ),
    )
    .unwrap();
    path
}

/// The ServiceAccount's user name in the audit log and in RBAC.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

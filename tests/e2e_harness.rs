//! The harness itself, against a real kube-apiserver: version, a namespace created and read back
//! through kube::Client and kubectl, deleted by the real namespace controller, and no process left.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use support::{ControlPlane, alive, eventually};

#[tokio::test]
async fn control_plane_serves_kubectl_and_kube_client_and_stops_clean() {
    let cp = ControlPlane::start();

    let version = cp.kubectl_ok(&["version"]);
    assert!(version.contains("Server Version: v1.37."), "{version}");
    assert!(version.contains("Client Version: v1.37."), "{version}");

    let client = cp.client().await;
    let namespaces: Api<Namespace> = Api::all(client);
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": "smoke"}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
    let got = cp.kubectl_ok(&["get", "namespace", "smoke", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(got, "Active");
    assert!(namespaces.get("default").await.is_ok());

    let created = cp.kubectl_ok(&["create", "namespace", "smoke-kubectl"]);
    assert_eq!(created.trim(), "namespace/smoke-kubectl created");
    assert!(namespaces.get("smoke-kubectl").await.is_ok());

    namespaces.delete("smoke", &DeleteParams::default()).await.unwrap();
    // The namespace controller (kube-controller-manager) finishes the deletion.
    eventually(Duration::from_secs(60), "namespace smoke to be gone", || {
        let p = cp.kubectl(&["get", "namespace", "smoke"]);
        (!p.ok && p.stderr.contains("NotFound")).then_some(())
    });

    let pids = cp.pids();
    assert_eq!(pids.len(), 3, "etcd, kube-apiserver, kube-controller-manager: {pids:?}");
    cp.stop();
    for pid in pids {
        assert!(!alive(pid), "process {pid} still running after down.sh");
    }
}

#[tokio::test]
async fn two_control_planes_run_side_by_side() {
    let (a, b) = (ControlPlane::start(), ControlPlane::start());
    a.kubectl_ok(&["create", "namespace", "only-in-a"]);
    assert!(a.kubectl(&["get", "namespace", "only-in-a"]).ok);
    let p = b.kubectl(&["get", "namespace", "only-in-a"]);
    assert!(!p.ok && p.stderr.contains("NotFound"), "{}", p.stderr);
}

//! The reconcile loop on a real control plane: virtual nodes as Node objects, the test acting as
//! Liqo's remote side by writing NamespaceMap currentMapping, and the commands of Liqo's
//! troubleshooting guide reading back what the loop wrote.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{
    CLUSTER_ID, ControlPlane, Webhook, apply, certs_for_loopback, cluster_with_webhook, eventually, get,
    install_crds, nsof, virtual_node, wait_eq,
};

const WAIT: Duration = Duration::from_secs(60);

/// `kubectl get ... -o jsonpath=...` of the NamespaceOffloading in `ns`.
fn nsof_path(cp: &ControlPlane, ns: &str, path: &str) -> String {
    get(cp, &["get", "namespaceoffloading", "offloading", "-n", ns, "-o", &format!("jsonpath={path}")])
}

/// Runs one of the troubleshooting guide's shell pipelines with our kubectl first on PATH.
fn seed(cp: &ControlPlane, script: &str) -> String {
    let path = format!("{}:{}", support::bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-c", script])
        .env("PATH", path)
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// desiredMapping[ns] of cluster `id`'s NamespaceMap, found the way the troubleshooting guide finds it.
fn desired(cp: &ControlPlane, id: &str, ns: &str) -> String {
    seed(
        cp,
        &format!(
            r#"REMOTE_CLUSTER_ID={id}; NAMESPACE={ns}
LIQO_TENANT_NAMESPACE=$(kubectl get namespace --show-labels | grep $REMOTE_CLUSTER_ID | cut -d " " -f1)
NAMESPACEMAP=$(kubectl get namespacemaps.virtualkubelet.liqo.io -n $LIQO_TENANT_NAMESPACE | grep $REMOTE_CLUSTER_ID | cut -d " " -f1)
kubectl get namespacemaps.virtualkubelet.liqo.io -n $LIQO_TENANT_NAMESPACE $NAMESPACEMAP -o=jsonpath="{{['spec.desiredMapping.$NAMESPACE']}} ""#
        ),
    )
    .trim()
    .to_owned()
}

/// currentMapping[ns].phase, the troubleshooting guide's query.
fn current_phase(cp: &ControlPlane, id: &str, ns: &str) -> String {
    seed(
        cp,
        &format!(
            r#"NAMESPACE={ns}; LIQO_TENANT_NAMESPACE=liqo-tenant-{id}
NAMESPACEMAP=$(kubectl get namespacemaps.virtualkubelet.liqo.io -n $LIQO_TENANT_NAMESPACE | grep {id} | cut -d " " -f1)
kubectl get namespacemaps.virtualkubelet.liqo.io -n $LIQO_TENANT_NAMESPACE $NAMESPACEMAP -o=jsonpath="{{['status.currentMapping.$NAMESPACE.phase']}} ""#
        ),
    )
    .trim()
    .to_owned()
}

fn map_name(cp: &ControlPlane, id: &str) -> String {
    get(
        cp,
        &[
            "get",
            "namespacemaps",
            "-n",
            &format!("liqo-tenant-{id}"),
            "-l",
            &format!("liqo.io/remote-cluster-id={id}"),
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
    )
}

/// Acts as Liqo's remote side: sets (or, with None, removes) currentMapping[ns] of cluster `id`.
fn set_current(cp: &ControlPlane, id: &str, ns: &str, phase: Option<&str>) {
    let entry = match phase {
        Some(p) => format!(r#"{{"remoteNamespace":"{ns}-{CLUSTER_ID}","phase":"{p}"}}"#),
        None => "null".into(),
    };
    let patch = format!(r#"{{"status":{{"currentMapping":{{"{ns}":{entry}}}}}}}"#);
    cp.kubectl_ok(&[
        "patch",
        "namespacemap",
        "-n",
        &format!("liqo-tenant-{id}"),
        &map_name(cp, id),
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

fn conditions(cp: &ControlPlane, ns: &str, id: &str) -> String {
    nsof_path(
        cp,
        ns,
        &format!("{{range .status.remoteNamespacesConditions.{id}[*]}}{{.type}}={{.status}} {{end}}"),
    )
    .trim()
    .to_owned()
}

/// An entry of another namespace in cluster-a's NamespaceMap, which the loop must never touch.
fn add_foreign_entry(cp: &ControlPlane) {
    let patch = r#"{"spec":{"desiredMapping":{"foreign":"foreign-remote"}}}"#;
    cp.kubectl_ok(&[
        "patch",
        "namespacemap",
        "-n",
        "liqo-tenant-cluster-a",
        "cluster-a-local",
        "--type=merge",
        "-p",
        patch,
    ]);
}

/// The namespace's Events, one `Type Reason: message` per line.
fn namespace_events(cp: &ControlPlane, ns: &str) -> String {
    get(
        cp,
        &[
            "get",
            "events",
            "-n",
            ns,
            "-o",
            "jsonpath={range .items[*]}{.type} {.reason}: {.message}{\"\\n\"}{end}",
        ],
    )
}

const EU: &str = "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: In\n        values: [eu-west]\n";

#[tokio::test]
async fn namespace_maps_and_status_follow_selector_nodes_and_remote_side() {
    let (cp, _certs, wh) =
        cluster_with_webhook(&["--cluster-id", CLUSTER_ID, "--lease-namespace", "default"]);
    cp.kubectl_ok(&["create", "namespace", "web"]);
    for (id, region) in [("cluster-a", "eu-west"), ("cluster-b", "eu-west"), ("cluster-c", "us-east")] {
        virtual_node(&cp, id, region);
    }

    // Tenant namespaces and NamespaceMaps appear as the virtual nodes do, before any offloading.
    for id in ["cluster-a", "cluster-b", "cluster-c"] {
        wait_eq(WAIT, &format!("the NamespaceMap of {id}"), &format!("{id}-local"), || map_name(&cp, id));
    }
    let labels =
        get(&cp, &["get", "namespace", "liqo-tenant-cluster-a", "-o", "jsonpath={.metadata.labels}"]);
    assert!(
        labels.contains(r#""discovery.liqo.io/cluster-id":"cluster-a""#)
            && labels.contains(r#""discovery.liqo.io/tenant-namespace":"true""#),
        "{labels}"
    );
    // Another namespace's entry, which must never be touched.
    add_foreign_entry(&cp);
    set_current(&cp, "cluster-a", "foreign", Some("Accepted"));

    // Two of three clusters selected.
    let remote = format!("web-{CLUSTER_ID}");
    assert!(apply(&cp, &nsof("web", "offloading", EU), &[]).ok);
    wait_eq(WAIT, "desiredMapping on cluster-a", &remote, || desired(&cp, "cluster-a", "web"));
    wait_eq(WAIT, "desiredMapping on cluster-b", &remote, || desired(&cp, "cluster-b", "web"));
    wait_eq(WAIT, "phase InProgress", "InProgress", || nsof_path(&cp, "web", "{.status.offloadingPhase}"));
    assert_eq!(desired(&cp, "cluster-c", "web"), "");
    assert_eq!(conditions(&cp, "web", "cluster-a"), "OffloadingRequired=True");
    assert_eq!(conditions(&cp, "web", "cluster-c"), "OffloadingRequired=False");
    assert_eq!(nsof_path(&cp, "web", "{.status.remoteNamespaceName}"), remote);
    assert_eq!(
        nsof_path(&cp, "web", "{.metadata.finalizers[0]}"),
        "namespaceoffloading-controller.liqo.io/finalizer"
    );
    assert_eq!(
        get(
            &cp,
            &["get", "namespace", "web", "-o", "jsonpath={.metadata.labels.liqo\\.io/scheduling-enabled}"]
        ),
        "true"
    );
    let generation = nsof_path(&cp, "web", "{.metadata.generation}");
    assert_eq!(nsof_path(&cp, "web", "{.status.observedGeneration}"), generation);

    // The remote side accepts both: Ready, and OffloadingRequired=True is gone.
    set_current(&cp, "cluster-a", "web", Some("Accepted"));
    set_current(&cp, "cluster-b", "web", Some("Accepted"));
    wait_eq(WAIT, "phase Ready", "Ready", || nsof_path(&cp, "web", "{.status.offloadingPhase}"));
    assert_eq!(conditions(&cp, "web", "cluster-a"), "Ready=True");
    assert_eq!(current_phase(&cp, "cluster-a", "web"), "Accepted");
    let ready_since =
        nsof_path(&cp, "web", "{.status.remoteNamespacesConditions.cluster-a[0].lastTransitionTime}");

    // One fails, then both.
    set_current(&cp, "cluster-b", "web", Some("CreationLoopBackOff"));
    wait_eq(WAIT, "phase SomeFailed", "SomeFailed", || nsof_path(&cp, "web", "{.status.offloadingPhase}"));
    assert_eq!(conditions(&cp, "web", "cluster-b"), "Ready=False");
    assert_eq!(
        nsof_path(&cp, "web", "{.status.remoteNamespacesConditions.cluster-b[0].reason}"),
        "CreationLoopBackOff"
    );
    // An unchanged condition keeps its lastTransitionTime.
    assert_eq!(
        nsof_path(&cp, "web", "{.status.remoteNamespacesConditions.cluster-a[0].lastTransitionTime}"),
        ready_since
    );
    set_current(&cp, "cluster-a", "web", Some("CreationLoopBackOff"));
    wait_eq(WAIT, "phase AllFailed", "AllFailed", || nsof_path(&cp, "web", "{.status.offloadingPhase}"));
    assert_eq!(current_phase(&cp, "cluster-a", "web"), "CreationLoopBackOff");

    // The selector moves to the third cluster: entries move with it.
    let us = EU.replace("eu-west", "us-east");
    let p = apply(&cp, &nsof("web", "offloading", &us), &[]);
    assert!(p.ok, "{}", p.stderr);
    wait_eq(WAIT, "desiredMapping on cluster-c", &remote, || desired(&cp, "cluster-c", "web"));
    wait_eq(WAIT, "entry gone from cluster-a", "", || desired(&cp, "cluster-a", "web"));
    assert_eq!(desired(&cp, "cluster-b", "web"), "");
    set_current(&cp, "cluster-a", "web", None);
    set_current(&cp, "cluster-b", "web", None);
    wait_eq(WAIT, "phase InProgress again", "InProgress", || {
        nsof_path(&cp, "web", "{.status.offloadingPhase}")
    });
    wait_eq(WAIT, "cluster-a only not required", "OffloadingRequired=False", || {
        conditions(&cp, "web", "cluster-a")
    });

    // A virtual node added later is picked up: its NamespaceMap, then the entry.
    virtual_node(&cp, "cluster-d", "us-east");
    wait_eq(WAIT, "desiredMapping on the new cluster-d", &remote, || desired(&cp, "cluster-d", "web"));

    // Deletion: Terminating, entries removed, finalizer held until currentMapping is empty.
    set_current(&cp, "cluster-c", "web", Some("Accepted"));
    cp.kubectl_ok(&["delete", "namespaceoffloading", "offloading", "-n", "web", "--wait=false"]);
    wait_eq(WAIT, "phase Terminating", "Terminating", || nsof_path(&cp, "web", "{.status.offloadingPhase}"));
    wait_eq(WAIT, "entry gone from cluster-c", "", || desired(&cp, "cluster-c", "web"));
    wait_eq(WAIT, "entry gone from cluster-d", "", || desired(&cp, "cluster-d", "web"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        nsof_path(&cp, "web", "{.metadata.finalizers[0]}"),
        "namespaceoffloading-controller.liqo.io/finalizer"
    );
    set_current(&cp, "cluster-c", "web", Some("Terminating"));
    set_current(&cp, "cluster-c", "web", None);
    wait_eq(WAIT, "the NamespaceOffloading to be gone", "", || nsof_path(&cp, "web", "{.metadata.name}"));
    assert_eq!(
        get(
            &cp,
            &["get", "namespace", "web", "-o", "jsonpath={.metadata.labels.liqo\\.io/scheduling-enabled}"]
        ),
        ""
    );

    // The other namespace's entries were never touched.
    assert_eq!(desired(&cp, "cluster-a", "foreign"), "foreign-remote");
    assert_eq!(current_phase(&cp, "cluster-a", "foreign"), "Accepted");
    assert!(wh.terminate().success());
}

#[tokio::test]
async fn an_invalid_object_that_got_in_selects_nothing_and_says_why() {
    let cp = ControlPlane::start();
    install_crds(&cp);
    let certs = cp.dir.path().join("certs");
    certs_for_loopback(&certs);
    // Warn mode: what an object created before the webhook existed looks like to the loop.
    let wh = Webhook::start(
        &cp,
        &certs,
        &["--cluster-id", CLUSTER_ID, "--lease-namespace", "default", "--enforcement", "warn"],
    );
    wh.register(&cp, &certs);
    let long_ns = "payments-processing-europe-1";
    for ns in ["web", long_ns] {
        cp.kubectl_ok(&["create", "namespace", ns]);
    }
    virtual_node(&cp, "cluster-a", "eu-west");
    wait_eq(WAIT, "the NamespaceMap of cluster-a", "cluster-a-local", || map_name(&cp, "cluster-a"));

    let bad = EU.replace("operator: In", "operator: Equals");
    assert!(apply(&cp, &nsof("web", "offloading", &bad), &[]).ok);
    wait_eq(WAIT, "phase NoClusterSelected", "NoClusterSelected", || {
        nsof_path(&cp, "web", "{.status.offloadingPhase}")
    });
    assert!(nsof_path(&cp, "web", "{.metadata.annotations.liqo\\.io/scheduling-enabled}").starts_with("Invalid Cluster Selector : spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Equals\""));
    let events = eventually(WAIT, "the Invalid event", || {
        let e = namespace_events(&cp, "web");
        e.contains("Invalid").then_some(e)
    });
    assert!(events.contains("Warning Invalid: Invalid ClusterSelector: spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Equals\""), "{events}");
    assert_eq!(desired(&cp, "cluster-a", "web"), "");

    // A remote name over 63 characters is never written to a NamespaceMap.
    assert!(apply(&cp, &nsof(long_ns, "offloading", EU), &[]).ok);
    wait_eq(WAIT, "phase NoClusterSelected for the long name", "NoClusterSelected", || {
        nsof_path(&cp, long_ns, "{.status.offloadingPhase}")
    });
    let events = eventually(WAIT, "the InvalidRemoteName event", || {
        let e = namespace_events(&cp, long_ns);
        e.contains("InvalidRemoteName").then_some(e)
    });
    assert!(events.contains(&format!("Warning InvalidRemoteName: Not offloaded: the remote namespace name \"{long_ns}-{CLUSTER_ID}\" is 65 characters, over the limit of 63")), "{events}");
    assert_eq!(desired(&cp, "cluster-a", long_ns), "");
    assert!(wh.terminate().success());
}

/// desiredMapping of cluster `id` as a sorted `ns=remote` list.
fn all_desired(cp: &ControlPlane, id: &str) -> String {
    let out = get(
        cp,
        &[
            "get",
            "namespacemaps",
            "-n",
            &format!("liqo-tenant-{id}"),
            "-o",
            "jsonpath={range .items[*].spec.desiredMapping}{@}{end}",
        ],
    );
    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(&out).unwrap_or_default();
    map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn lease_holder(cp: &ControlPlane) -> String {
    get(
        cp,
        &[
            "get",
            "lease",
            "-n",
            "default",
            "offloading-webhook-reconciler",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    )
}

#[tokio::test]
async fn one_active_replica_with_handover_and_an_api_server_restart_lose_nothing() {
    let cp = ControlPlane::start();
    install_crds(&cp);
    let certs = cp.dir.path().join("certs");
    certs_for_loopback(&certs);
    let replica = |identity: &str| {
        Webhook::start(
            &cp,
            &certs,
            &[
                "--cluster-id",
                CLUSTER_ID,
                "--lease-namespace",
                "default",
                "--identity",
                identity,
                "--lease-seconds",
                "3",
            ],
        )
    };
    let (a, b) = (replica("replica-a"), replica("replica-b"));
    a.register(&cp, &certs);
    for id in ["cluster-a", "cluster-b"] {
        virtual_node(&cp, id, "eu-west");
        wait_eq(WAIT, &format!("the NamespaceMap of {id}"), &format!("{id}-local"), || map_name(&cp, id));
    }
    add_foreign_entry(&cp);
    let offload = |ns: &str| {
        cp.kubectl_ok(&["create", "namespace", ns]);
        let p = apply(&cp, &nsof(ns, "offloading", EU), &[]);
        assert!(p.ok, "{}", p.stderr);
    };
    let expected = |nss: &[&str], foreign: bool| {
        let mut all: Vec<String> = nss.iter().map(|ns| format!("{ns}={ns}-{CLUSTER_ID}")).collect();
        if foreign {
            all.push("foreign=foreign-remote".into());
        }
        all.sort();
        all.join(",")
    };
    offload("ns-1");
    offload("ns-2");
    wait_eq(WAIT, "entries on cluster-a", &expected(&["ns-1", "ns-2"], true), || {
        all_desired(&cp, "cluster-a")
    });
    wait_eq(WAIT, "entries on cluster-b", &expected(&["ns-1", "ns-2"], false), || {
        all_desired(&cp, "cluster-b")
    });

    // Exactly one replica leads; stopping it hands over to the other.
    let leader = lease_holder(&cp);
    assert!(leader == "replica-a" || leader == "replica-b", "{leader:?}");
    let (stopped, survivor, survivor_name) =
        if leader == "replica-a" { (a, b, "replica-b") } else { (b, a, "replica-a") };
    assert!(stopped.terminate().success());
    survivor.register(&cp, &certs);
    wait_eq(WAIT, "the lease to move to the survivor", survivor_name, || lease_holder(&cp));
    offload("ns-3");
    wait_eq(WAIT, "entries after the handover", &expected(&["ns-1", "ns-2", "ns-3"], true), || {
        all_desired(&cp, "cluster-a")
    });

    // The API server restarts mid-way: watches resume, nothing is lost or duplicated.
    cp.restart_apiserver();
    // Watches back off exponentially (to ~30 s) while the server is down, so the first relist after
    // a long outage on a loaded machine can come half a minute after the server is back.
    const AFTER_RESTART: Duration = Duration::from_secs(150);
    offload("ns-4");
    wait_eq(
        AFTER_RESTART,
        "entries after the API server restart",
        &expected(&["ns-1", "ns-2", "ns-3", "ns-4"], true),
        || all_desired(&cp, "cluster-a"),
    );
    wait_eq(
        AFTER_RESTART,
        "entries on cluster-b after the restart",
        &expected(&["ns-1", "ns-2", "ns-3", "ns-4"], false),
        || all_desired(&cp, "cluster-b"),
    );
    for id in ["cluster-a", "cluster-b"] {
        let maps = get(&cp, &["get", "namespacemaps", "-n", &format!("liqo-tenant-{id}"), "-o", "name"]);
        assert_eq!(maps.lines().count(), 1, "one NamespaceMap per cluster: {maps}");
    }
    for ns in ["ns-1", "ns-2", "ns-3", "ns-4"] {
        wait_eq(WAIT, &format!("phase of {ns}"), "InProgress", || {
            nsof_path(&cp, ns, "{.status.offloadingPhase}")
        });
    }
    assert!(survivor.terminate().success());
}

/// Replaces a CRD's schema with "anything goes", as a CRD installed by hand (or by another tool)
/// might be: the API server then stores objects our types cannot read.
fn loosen_crd(cp: &ControlPlane, crd: &str) {
    let patch = r#"[{"op":"replace","path":"/spec/versions/0/schema/openAPIV3Schema","value":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}]"#;
    cp.kubectl_ok(&["patch", "crd", crd, "--type=json", "-p", patch]);
}

fn decode_failures(wh: &Webhook, kind: &str) -> String {
    let metrics = support::http_get_full(wh.metrics_port, "/metrics").unwrap_or_default();
    let key = format!("offloading_webhook_decode_failures_total{{kind=\"{kind}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&key)).unwrap_or("absent").to_owned()
}

const BAD_SPEC: &str = "  clusterSelector:\n    nodeSelectorTerms: all-of-them\n";

#[tokio::test]
async fn objects_that_do_not_decode_are_reported_and_the_watch_goes_on() {
    let cp = ControlPlane::start();
    install_crds(&cp);
    loosen_crd(&cp, "namespaceoffloadings.offloading.liqo.io");
    loosen_crd(&cp, "namespacemaps.virtualkubelet.liqo.io");
    for ns in ["broken", "before", "after", "liqo-tenant-cluster-z"] {
        cp.kubectl_ok(&["create", "namespace", ns]);
    }
    virtual_node(&cp, "cluster-a", "eu-west");
    // Stored before the loop starts, so that its first list holds them: a NamespaceOffloading and a
    // NamespaceMap that do not decode, next to a good NamespaceOffloading.
    assert!(apply(&cp, &nsof("broken", "offloading", BAD_SPEC), &[]).ok);
    assert!(apply(&cp, &nsof("before", "offloading", EU), &[]).ok);
    let bad_map = "apiVersion: virtualkubelet.liqo.io/v1alpha1\nkind: NamespaceMap\nmetadata:\n  name: cluster-z-local\n  namespace: liqo-tenant-cluster-z\n  labels:\n    liqo.io/remote-cluster-id: cluster-z\nspec:\n  desiredMapping:\n    somewhere: 42\n";
    assert!(apply(&cp, bad_map, &[]).ok);

    let certs = cp.dir.path().join("certs");
    certs_for_loopback(&certs);
    let wh = Webhook::start(&cp, &certs, &["--cluster-id", CLUSTER_ID, "--lease-namespace", "default"]);

    // The good object is reconciled despite the bad ones in the same lists.
    wait_eq(WAIT, "the good object's phase", "InProgress", || {
        nsof_path(&cp, "before", "{.status.offloadingPhase}")
    });
    assert_eq!(desired(&cp, "cluster-a", "before"), format!("before-{CLUSTER_ID}"));
    assert_eq!(nsof_path(&cp, "broken", "{.status}"), "", "a bad object gets no status");
    assert_eq!(decode_failures(&wh, "NamespaceOffloading"), "1", "each bad version counted once");
    assert_eq!(decode_failures(&wh, "NamespaceMap"), "1");
    let log = std::fs::read_to_string(cp.dir.path().join(format!("webhook-{}.log", wh.port))).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("broken") && l.contains("does not decode"))
        .unwrap_or_else(|| panic!("no warning naming the bad NamespaceOffloading in the log:\n{log}"));
    assert!(line.contains("spec.clusterSelector.nodeSelectorTerms"), "{line}");
    assert!(log.contains("liqo-tenant-cluster-z") && log.contains("spec.desiredMapping.somewhere"), "{log}");

    // A remote side of another Liqo version writes a phase we do not know: the map still reads.
    set_current(&cp, "cluster-a", "before", Some("Provisioning"));
    // The watch goes on: a new object, then the broken one fixed, are reconciled.
    assert!(apply(&cp, &nsof("after", "offloading", EU), &[]).ok);
    wait_eq(WAIT, "a new object's phase", "InProgress", || {
        nsof_path(&cp, "after", "{.status.offloadingPhase}")
    });
    assert_eq!(conditions(&cp, "before", "cluster-a"), "OffloadingRequired=True");
    assert!(apply(&cp, &nsof("broken", "offloading", EU), &[]).ok);
    wait_eq(WAIT, "the fixed object's phase", "InProgress", || {
        nsof_path(&cp, "broken", "{.status.offloadingPhase}")
    });
    assert_eq!(desired(&cp, "cluster-a", "broken"), format!("broken-{CLUSTER_ID}"));

    // An object that breaks later is left alone, losing nothing: its entry stays where it was.
    assert!(apply(&cp, &nsof("after", "offloading", BAD_SPEC), &[]).ok);
    eventually(WAIT, "the second bad version counted", || {
        (decode_failures(&wh, "NamespaceOffloading") == "2").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(desired(&cp, "cluster-a", "after"), format!("after-{CLUSTER_ID}"));
    assert_eq!(nsof_path(&cp, "after", "{.status.offloadingPhase}"), "InProgress");
    // diagnose names the field, rather than failing to read the list.
    let out = Command::new(support::webhook_bin())
        .args(["diagnose", "-n", "after", "--kubeconfig"])
        .arg(&cp.kubeconfig)
        .args(["--cluster-id", CLUSTER_ID])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("the NamespaceOffloading after/offloading does not decode: spec.clusterSelector.nodeSelectorTerms: invalid type: string \"all-of-them\", expected a sequence"),
        "{text}"
    );
    assert!(wh.terminate().success());
}

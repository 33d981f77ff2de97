//! Real Liqo v1.2 on two control planes (a consumer and a provider): its own reconcilers, the
//! NamespaceMap copying of its crd-replicator, and its own webhook, built from its source by
//! tests/liqo/build.sh. What Liqo itself does with a good object, a broken selector and a remote
//! name that is too long: the facts our verdicts are measured against.

mod support;

use std::time::Duration;

use support::liqo::{self, CONSUMER_ID, PROVIDER_ID, Pair};
use support::{apply, certs_for_loopback, eventually, get, wait_eq};

const GOOD_SPEC: &str = "  namespaceMappingStrategy: DefaultName\n  podOffloadingStrategy: LocalAndRemote\n  clusterSelector:\n    nodeSelectorTerms: []\n";

fn phase(cp: &support::ControlPlane, ns: &str) -> String {
    liqo::jsonpath(
        cp,
        &["get", "namespaceoffloadings.offloading.liqo.io", "-n", ns, "offloading"],
        "{.status.offloadingPhase}",
    )
}

#[test]
fn liqo_v1_offloads_a_good_object_and_fails_a_broken_selector_and_a_long_name() {
    let mut pair = Pair::start(&[("topology.liqo.io/region", "eu-west")], &[]);
    let (c, p) = (&pair.consumer, &pair.provider);
    let map_ns = format!("liqo-tenant-{PROVIDER_ID}");

    // A good object: Ready, and the remote namespace on the provider is Liqo's own.
    c.kubectl_ok(&["create", "namespace", "good"]);
    let out = apply(c, &liqo::nsof_v1("good", "offloading", GOOD_SPEC), &[]);
    assert!(out.ok, "{}", out.stderr);
    let remote = format!("good-{CONSUMER_ID}");
    wait_eq(Duration::from_secs(90), "the good object's phase", "Ready", || phase(c, "good"));
    let managed_by = liqo::jsonpath(
        p,
        &["get", "namespace", &remote],
        "{.metadata.annotations.liqo\\.io/managed-by-namespace-map}",
    );
    assert_eq!(managed_by, format!("liqo-tenant-{CONSUMER_ID}/{PROVIDER_ID}"), "remote namespace {remote}");
    let mapping = liqo::jsonpath(
        c,
        &["get", "namespacemaps.offloading.liqo.io", "-n", &map_ns, PROVIDER_ID],
        "{.status.currentMapping.good.phase}",
    );
    assert_eq!(mapping, "Accepted", "the consumer's NamespaceMap status, copied back from the provider");

    // An Equals operator: NoClusterSelected, with Liqo's Warning Event, and nothing in the map.
    c.kubectl_ok(&["create", "namespace", "equals"]);
    let spec = "  namespaceMappingStrategy: DefaultName\n  podOffloadingStrategy: LocalAndRemote\n  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: Equals\n        values: [eu-west]\n";
    let out = apply(c, &liqo::nsof_v1("equals", "offloading", spec), &[]);
    assert!(out.ok, "the CRD stores an Equals operator: {}", out.stderr);
    wait_eq(Duration::from_secs(60), "the Equals object's phase", "NoClusterSelected", || phase(c, "equals"));
    let event = eventually(Duration::from_secs(30), "Liqo's Invalid Event", || {
        let e = get(
            c,
            &[
                "get",
                "events",
                "-n",
                "equals",
                "--field-selector",
                "reason=Invalid,type=Warning",
                "-o",
                "jsonpath={.items[*].message}",
            ],
        );
        (!e.is_empty()).then_some(e)
    });
    assert!(
        event.starts_with("Invalid ClusterSelector: ")
            && event
                .contains("nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Equals\""),
        "{event}"
    );
    let desired = liqo::jsonpath(
        c,
        &["get", "namespacemaps.offloading.liqo.io", "-n", &map_ns, PROVIDER_ID],
        "{.spec.desiredMapping.equals}",
    );
    assert_eq!(desired, "", "nothing written to the NamespaceMap for a broken selector");

    // A DefaultName remote name of 64 characters: accepted, then AllFailed (only the provider knows why).
    let long_ns = "n".repeat(64 - CONSUMER_ID.len() - 1);
    c.kubectl_ok(&["create", "namespace", &long_ns]);
    let out = apply(c, &liqo::nsof_v1(&long_ns, "offloading", GOOD_SPEC), &[]);
    assert!(out.ok, "{}", out.stderr);
    wait_eq(Duration::from_secs(120), "the long name's phase", "AllFailed", || phase(c, &long_ns));
    let mapping = liqo::jsonpath(
        c,
        &["get", "namespacemaps.offloading.liqo.io", "-n", &map_ns, PROVIDER_ID],
        &format!("{{.status.currentMapping.{long_ns}.phase}}"),
    );
    assert_eq!(mapping, "CreationLoopBackOff");
    assert!(
        pair.provider_ctrl.log_text().contains("must be no more than 63 characters"),
        "the provider's log says why"
    );

    // Liqo's own webhook, registered by URL with its own CA: kubectl prints its refusal.
    let certs = c.dir.path().join("liqo-certs");
    certs_for_loopback(&certs);
    let wh = liqo::LiqoWebhook::start(c, &certs);
    wh.register(c, &certs);
    c.kubectl_ok(&["create", "namespace", "wrongname"]);
    let refused = eventually(Duration::from_secs(30), "Liqo's webhook to refuse a wrong name", || {
        let out = apply(c, &liqo::nsof_v1("wrongname", "offload", GOOD_SPEC), &[]);
        (!out.ok).then_some(out.stderr)
    });
    assert!(
        refused.contains(
            "admission webhook \"nsoff.validate.liqo.io\" denied the request: NamespaceOffloading name must match offloading"
        ),
        "{refused}"
    );
    pair.assert_running();
}

/// liqoctl (Liqo v1.2's own) through our webhook in deny mode: a good offload passes and reaches
/// its phase; a namespace whose remote name would exceed 63 characters is refused at once, and
/// liqoctl prints our refusal instead of waiting out its 20 s timeout. Skipped without liqoctl
/// (LIQO_SKIP_LIQOCTL=1).
#[test]
fn liqoctl_offload_through_our_webhook() {
    let Some(liqoctl) = liqo::liqoctl() else {
        eprintln!("skipped: liqoctl was not built (LIQO_SKIP_LIQOCTL=1)");
        return;
    };
    let mut pair = Pair::start(&[("topology.liqo.io/region", "eu-west")], &[]);
    let c = &pair.consumer;
    let certs = c.dir.path().join("certs");
    certs_for_loopback(&certs);
    let ours = support::Webhook::start(
        c,
        &certs,
        &["--liqo-api", "v1", "--reconcile=false", "--cluster-id", CONSUMER_ID],
    );
    ours.register(c, &certs);
    let offload = |ns: &str| {
        let started = std::time::Instant::now();
        let out = std::process::Command::new(&liqoctl)
            .args(["offload", "namespace", ns, "--namespace-mapping-strategy", "DefaultName"])
            .args([
                "--pod-offloading-strategy",
                "LocalAndRemote",
                "--selector",
                "topology.liqo.io/region=eu-west",
            ])
            .arg("--kubeconfig")
            .arg(&c.kubeconfig)
            .output()
            .expect("could not run liqoctl");
        let printed = support::Printed::from(out);
        (printed, started.elapsed())
    };

    c.kubectl_ok(&["create", "namespace", "good"]);
    // Until the registration is in effect an object would slip past us; make sure it is called.
    eventually(Duration::from_secs(30), "our webhook to be called", || {
        let out = apply(c, &liqo::nsof_v1("good", "offload", GOOD_SPEC), &["--dry-run=server"]);
        out.stderr.contains("denied the request: metadata.name").then_some(())
    });
    let (out, took) = offload("good");
    assert!(
        out.ok,
        "liqoctl offload of a good namespace failed after {took:?}:\n{}{}",
        out.stdout, out.stderr
    );
    assert_eq!(phase(c, "good"), "Ready", "liqoctl waited for the phase:\n{}{}", out.stdout, out.stderr);
    println!("liqoctl offload namespace good ({took:.1?}):\n{}{}", out.stdout, out.stderr);

    let long_ns = "n".repeat(64 - CONSUMER_ID.len() - 1);
    c.kubectl_ok(&["create", "namespace", &long_ns]);
    let (out, took) = offload(&long_ns);
    println!("liqoctl offload namespace {long_ns} ({took:.1?}):\n{}{}", out.stdout, out.stderr);
    assert!(!out.ok, "liqoctl offloaded a namespace whose remote name is 64 characters long");
    let printed = format!("{}{}", out.stdout, out.stderr);
    assert!(
        printed.contains("admission webhook \"validate.offloading-webhook.io\" denied the request: metadata.namespace: Invalid value:")
            && printed.contains(&format!("{long_ns}-{CONSUMER_ID}")),
        "{printed}"
    );
    assert!(
        took < Duration::from_secs(15),
        "refused at once, not after liqoctl's 20 s timeout: took {took:?}"
    );
    assert_eq!(get(c, &["get", "namespaceoffloadings.offloading.liqo.io", "-n", &long_ns, "-o", "name"]), "");
    pair.assert_running();
    drop(ours);
}

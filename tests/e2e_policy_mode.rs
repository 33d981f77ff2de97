//! The chart's `validation.mode`: in `policy` (and `both`) it renders the ValidatingAdmissionPolicy
//! and bindings that `offloading-webhook policy` prints, from its own copy (files/policy/, written
//! by scripts/manifests.sh; checked here against the command's output, so they cannot drift), and
//! in `policy` the replicas register the webhooks with `failurePolicy: Ignore`. On the test control
//! plane (the newest Kubernetes, and the oldest the chart claims): installed by Helm in policy mode,
//! the policy refuses a broken selector before any replica runs; with a replica up, the webhooks
//! still warn and set the annotation; with every replica down, a good NamespaceOffloading is
//! admitted and the broken selector, and a DefaultName too long for the cluster id, are refused by
//! the policy with its message.

mod support;

use support::chart;

use std::time::Duration;

use chart::{NAMESPACE, RELEASE, documents, find, helm_ok, template, template_ok};
use serde_norway::Value;
use support::{CLUSTER_ID, ControlPlane, apply, eventually, install_crds, nsof};

/// Who manages the EndpointSlice that points the Service at a `serve` on the host.
const MANAGER: &str = "e2e-policy-mode.offloading-webhook";

const BAD_OPERATOR: &str = "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: Equals\n        values: [eu]\n";
const BAD_OPERATOR_SAYS: &str = "spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Equals\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\", \"Gt\", \"Lt\"";
/// A well-formed selector that the one virtual node (eu-west) does not match: the webhook warns.
const UNMATCHED: &str = "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: In\n        values: [us-east]\n";
const UNMATCHED_WARNS: &str =
    "Warning: spec.clusterSelector matches none of the 1 virtual nodes known now (remote clusters cluster-a)";
/// 28 characters: with the 36-character cluster id, a DefaultName remote name of 65.
const LONG_NAMESPACE: &str = "payments-processing-europe-1";
const VALIDATE: &str = "validate.offloading-webhook.io";

fn policy_denied(binding: &str) -> String {
    format!("ValidatingAdmissionPolicy '{RELEASE}' with binding '{binding}' denied request: ")
}

/// `offloading-webhook policy ARGS`.
fn policy_command(args: &[&str]) -> String {
    let out = std::process::Command::new(support::webhook_bin()).arg("policy").args(args).output().unwrap();
    assert!(out.status.success(), "policy {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_charts_copy_of_the_policy_is_what_the_policy_command_prints() {
    for api in ["v0.3", "v1"] {
        let file = chart::chart_dir().join(format!("files/policy/{api}.yaml"));
        let copy = std::fs::read_to_string(&file).unwrap();
        assert!(
            copy == policy_command(&["--liqo-api", api]),
            "{} differs from `offloading-webhook policy --liqo-api {api}`: run scripts/manifests.sh and commit it",
            file.display()
        );
    }
}

/// The policy objects of a rendering, labels set aside (the chart adds its own to the command's),
/// after checking that the chart's labels hold the command's.
fn policy_objects(docs: &[Value], command: &[Value]) -> Vec<Value> {
    let want_labels = command[0]["metadata"]["labels"].as_mapping().unwrap().clone();
    docs.iter()
        .filter(|d| d["kind"].as_str().is_some_and(|k| k.starts_with("ValidatingAdmissionPolicy")))
        .map(|d| {
            let mut d = d.clone();
            let labels = d["metadata"].as_mapping_mut().unwrap().remove("labels").unwrap();
            for (k, v) in &want_labels {
                assert_eq!(labels.get(k), Some(v), "label {k:?} of {:?}", d["metadata"]["name"]);
            }
            assert_eq!(labels["app.kubernetes.io/instance"].as_str().map(|s| !s.is_empty()), Some(true));
            d
        })
        .collect()
}

fn without_labels(docs: Vec<Value>) -> Vec<Value> {
    docs.into_iter()
        .map(|mut d| {
            d["metadata"].as_mapping_mut().unwrap().remove("labels");
            d
        })
        .collect()
}

/// The `matchExpressions` of one of the policy's selectors.
fn expressions<'a>(policy: &'a mut Value, selector: &str) -> &'a mut Vec<Value> {
    policy["spec"]["matchConstraints"][selector]["matchExpressions"].as_sequence_mut().unwrap()
}

#[test]
fn in_policy_mode_the_chart_renders_what_the_policy_command_prints_for_the_release() {
    for api in ["v0.3", "v1"] {
        // Defaults: the names, Liqo's namespace, and the namespaces the webhooks skip (kube-system
        // and the release's) are the command's defaults and flags.
        let docs =
            documents(&template_ok(&["--set", "validation.mode=policy", "--set", &format!("liqoApi={api}")]));
        let command = documents(&policy_command(&[
            "--liqo-api",
            api,
            "--name",
            RELEASE,
            "--liqo-namespace",
            "liqo",
            "--excluded-namespace",
            NAMESPACE,
        ]));
        assert_eq!(command.len(), 3);
        assert_eq!(policy_objects(&docs, &command), without_labels(command.clone()), "Liqo {api}, defaults");

        // Another release, audit mode, Liqo elsewhere, namespaces and objects left alone as the
        // webhooks leave them.
        let chart_dir = chart::chart_dir();
        let rendered = helm_ok(&[
            "template",
            "edge",
            chart_dir.to_str().unwrap(),
            "--namespace",
            "platform",
            "--set",
            "validation.mode=both",
            "--set",
            &format!("liqoApi={api}"),
            "--set",
            "enforcement=warn",
            "--set",
            "liqoNamespace=liqo-system",
            "--set",
            "webhooks.excludedNamespaces={liqo,kube-system,team-x}",
            "--set",
            "webhooks.namespaceSelectorExpressions[0].key=team",
            "--set",
            "webhooks.namespaceSelectorExpressions[0].operator=Exists",
            "--set",
            "webhooks.objectSelectorExpressions[0].key=audit-only",
            "--set",
            "webhooks.objectSelectorExpressions[0].operator=DoesNotExist",
        ]);
        let command = documents(&policy_command(&[
            "--liqo-api",
            api,
            "--name",
            "edge-offloading-webhook",
            "--liqo-namespace",
            "liqo-system",
            "--excluded-namespace",
            "platform,liqo,team-x",
            "--validation-actions",
            "Warn,Audit",
        ]));
        let mut want = without_labels(command.clone());
        expressions(&mut want[0], "namespaceSelector")
            .push(serde_norway::from_str("{key: team, operator: Exists}").unwrap());
        expressions(&mut want[0], "objectSelector")
            .push(serde_norway::from_str("{key: audit-only, operator: DoesNotExist}").unwrap());
        assert_eq!(policy_objects(&documents(&rendered), &command), want, "Liqo {api}, another release");

        // A fixed cluster id: the binding reads it from the release's ConfigMap, as it would read
        // Liqo's.
        let docs = documents(&template_ok(&[
            "--set",
            "validation.mode=policy",
            "--set",
            &format!("liqoApi={api}"),
            "--set",
            &format!("clusterId={CLUSTER_ID}"),
        ]));
        let command = documents(&policy_command(&[
            "--liqo-api",
            api,
            "--name",
            RELEASE,
            "--excluded-namespace",
            NAMESPACE,
        ]));
        let mut want = without_labels(command.clone());
        want[2]["spec"]["paramRef"] = serde_norway::from_str(&format!(
            "{{name: {RELEASE}-cluster-id, namespace: {NAMESPACE}, parameterNotFoundAction: Allow}}"
        ))
        .unwrap();
        assert_eq!(policy_objects(&docs, &command), want, "Liqo {api}, clusterId");
        let cm =
            find(&docs, "ConfigMap", &format!("{RELEASE}-cluster-id")).expect("the cluster id's ConfigMap");
        assert_eq!(cm["metadata"]["namespace"].as_str(), Some(NAMESPACE));
        assert_eq!(cm["data"]["CLUSTER_ID"].as_str(), Some(CLUSTER_ID));
    }
}

/// `--failure-policy` of the rendered Deployment, and whether a policy is rendered.
fn failure_policy_and_policy(extra: &[&str]) -> (String, bool) {
    let rendered = template_ok(extra);
    let args = chart::deployment_args(&rendered);
    let fp =
        args.iter().find_map(|a| a.strip_prefix("--failure-policy=")).expect("--failure-policy").to_owned();
    let docs = documents(&rendered);
    (fp, find(&docs, "ValidatingAdmissionPolicy", RELEASE).is_some())
}

#[test]
fn the_webhooks_fail_open_in_policy_mode_alone() {
    fn with<'a>(more: &[&'a str]) -> Vec<&'a str> {
        [&["--set", "liqoApi=v1"][..], more].concat()
    }
    assert_eq!(failure_policy_and_policy(&[]), ("Fail".into(), false));
    assert_eq!(
        failure_policy_and_policy(&with(&["--set", "validation.mode=webhook"])),
        ("Fail".into(), false)
    );
    assert_eq!(
        failure_policy_and_policy(&with(&["--set", "validation.mode=policy"])),
        ("Ignore".into(), true)
    );
    // webhooks.failurePolicy is not used in policy mode: the policy refuses, the webhooks add.
    assert_eq!(
        failure_policy_and_policy(&with(&[
            "--set",
            "validation.mode=policy",
            "--set",
            "webhooks.failurePolicy=Fail"
        ])),
        ("Ignore".into(), true)
    );
    assert_eq!(failure_policy_and_policy(&with(&["--set", "validation.mode=both"])), ("Fail".into(), true));
    assert_eq!(
        failure_policy_and_policy(&with(&[
            "--set",
            "validation.mode=both",
            "--set",
            "webhooks.failurePolicy=Ignore"
        ])),
        ("Ignore".into(), true)
    );
    // Without clusterId no ConfigMap of ours: the binding reads Liqo's.
    let docs = documents(&template_ok(&with(&["--set", "validation.mode=policy"])));
    assert!(find(&docs, "ConfigMap", &format!("{RELEASE}-cluster-id")).is_none());
}

#[test]
fn policy_mode_needs_a_liqo_generation_and_lints_strict() {
    let p = template(&["--set", "validation.mode=policy"]);
    assert!(!p.ok, "policy mode rendered with liqoApi auto");
    assert!(
        p.stderr.contains("validation.mode=policy needs liqoApi v0.3 or v1: the policy holds the rules of one Liqo generation"),
        "{}",
        p.stderr
    );
    let p = template(&["--set", "validation.mode=policies"]);
    assert!(!p.ok && p.stderr.contains("at '/validation/mode'"), "{}", p.stderr);
    assert!(p.stderr.contains("value must be one of 'webhook', 'policy', 'both'"), "{}", p.stderr);
    let chart = chart::chart_dir();
    for mode in ["policy", "both"] {
        for api in ["v0.3", "v1"] {
            let out = helm_ok(&[
                "lint",
                "--strict",
                chart.to_str().unwrap(),
                "--namespace",
                NAMESPACE,
                "--set",
                &format!("validation.mode={mode}"),
                "--set",
                &format!("liqoApi={api}"),
                "--set",
                &format!("clusterId={CLUSTER_ID}"),
            ]);
            assert!(out.contains("1 chart(s) linted, 0 chart(s) failed"), "{mode} {api}: {out}");
        }
    }
}

/// kubectl's refusal of `yaml`, once the policy has taken effect (dry runs until then).
fn refused(cp: &ControlPlane, yaml: &str, says: &str) -> String {
    eventually(Duration::from_secs(60), "the policy to refuse the object", || {
        let p = apply(cp, yaml, &["--dry-run=server"]);
        (!p.ok && p.stderr.contains(says)).then_some(())
    });
    let p = apply(cp, yaml, &[]);
    assert!(!p.ok, "stored: {}", p.stdout);
    p.stderr.trim().to_owned()
}

fn annotation(cp: &ControlPlane, ns: &str) -> String {
    cp.kubectl_ok(&[
        "-n",
        ns,
        "get",
        "namespaceoffloadings.offloading.liqo.io",
        "offloading",
        "-o",
        r"jsonpath={.metadata.annotations.liqo\.io/scheduling-enabled}",
    ])
}

fn fail_open_calls(cp: &ControlPlane) -> f64 {
    let metrics = cp.kubectl_ok(&["get", "--raw", "/metrics"]);
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_admission_webhook_fail_open_count{")
                && l.contains(&format!("name=\"{VALIDATE}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn policy_mode_keeps_the_cluster_writable_on(cp: &ControlPlane) {
    install_crds(cp);
    for ns in ["liqo", "team-a", "team-b", LONG_NAMESPACE] {
        cp.kubectl_ok(&["create", "namespace", ns]);
    }
    support::virtual_node(cp, "cluster-a", "eu-west");
    let values = cp.dir.path().join("values.yaml");
    std::fs::write(
        &values,
        format!("service:\n  selector: false\nvalidation:\n  mode: policy\nliqoApi: v0.3\nclusterId: {CLUSTER_ID}\n"),
    )
    .unwrap();
    let values = values.to_str().unwrap();
    let chart_dir = chart::chart_dir();
    let kubeconfig = cp.kubeconfig.to_str().unwrap();
    let out = helm_ok(&[
        "install",
        RELEASE,
        chart_dir.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--kubeconfig",
        kubeconfig,
        "-f",
        values,
    ]);
    assert!(out.contains("STATUS: deployed") && out.contains("fail open"), "{out}");
    let installed = cp.kubectl_ok(&[
        "get",
        "validatingadmissionpolicies,validatingadmissionpolicybindings",
        "-l",
        &format!("app.kubernetes.io/instance={RELEASE}"),
        "-o",
        "name",
    ]);
    assert_eq!(
        installed.trim(),
        format!(
            "validatingadmissionpolicy.admissionregistration.k8s.io/{RELEASE}\nvalidatingadmissionpolicybinding.admissionregistration.k8s.io/{RELEASE}\nvalidatingadmissionpolicybinding.admissionregistration.k8s.io/{RELEASE}-cluster-id"
        )
    );

    // Before any replica runs (the registrations are empty shells), the policy refuses.
    let broken = |ns: &str| nsof(ns, "offloading", BAD_OPERATOR);
    let stderr = refused(cp, &broken("team-a"), &policy_denied(RELEASE));
    assert_eq!(
        stderr,
        format!(
            "Error from server (Forbidden): error when creating \"STDIN\": namespaceoffloadings.offloading.liqo.io \"offloading\" is forbidden: {}{BAD_OPERATOR_SAYS}",
            policy_denied(RELEASE)
        )
    );
    // A replica as the chart's Deployment runs it, behind the chart's Service on the host's address.
    let addr = std::net::SocketAddr::new(chart::host_address(), support::free_port());
    let mut args: Vec<String> = chart::deployment_args(&template_ok(&["-f", values]))
        .into_iter()
        .filter(|a| !["--webhook-addr=", "--probe-addr=", "--metrics-addr="].iter().any(|p| a.starts_with(p)))
        .collect();
    args.extend([format!("--namespace={NAMESPACE}"), format!("--kubeconfig={kubeconfig}")]);
    let replica = support::serving::Replica::spawn_args(
        &cp.dir.path().join("logs"),
        &cp.dir.path().join("no-certs"),
        addr,
        &args,
    );
    eventually(Duration::from_secs(30), "the replica's /readyz to answer 200", || {
        replica.readyz().filter(|r| r.starts_with("HTTP/1.1 200")).map(|_| ())
    });
    chart::endpoints_on_the_host(cp, addr, MANAGER);
    support::wait_eq(
        Duration::from_secs(30),
        "the replica's registration, failing open",
        "Ignore Ignore",
        || {
            support::get(
                cp,
                &[
                    "get",
                    "validatingwebhookconfiguration,mutatingwebhookconfiguration",
                    RELEASE,
                    "-o",
                    "jsonpath={.items[*].webhooks[0].failurePolicy}",
                ],
            )
        },
    );

    // With the replica up: its warning and its annotation; the static error is the policy's.
    let good = |ns: &str| nsof(ns, "offloading", UNMATCHED);
    eventually(Duration::from_secs(60), "the webhook's warning", || {
        let p = apply(cp, &good("team-a"), &["--dry-run=server"]);
        (p.ok && p.stderr.contains(UNMATCHED_WARNS)).then_some(())
    });
    let p = apply(cp, &good("team-a"), &[]);
    assert!(p.ok && p.stderr.contains(UNMATCHED_WARNS), "{}{}", p.stdout, p.stderr);
    assert_eq!(annotation(cp, "team-a"), "true", "the mutating webhook's annotation");
    let stderr = refused(cp, &broken("team-b"), &policy_denied(RELEASE));
    assert!(stderr.ends_with(&format!("{}{BAD_OPERATOR_SAYS}", policy_denied(RELEASE))), "{stderr}");

    // Every replica down (killed; its endpoint not yet withdrawn): the webhooks fail open, the
    // policy still refuses every static error.
    drop(replica);
    let before = fail_open_calls(cp);
    let p = apply(cp, &good("team-b"), &[]);
    assert!(p.ok, "a good NamespaceOffloading was refused with every replica down: {}", p.stderr);
    assert!(!p.stderr.contains("Warning"), "{}", p.stderr);
    assert_eq!(annotation(cp, "team-b"), "", "no annotation without a replica");
    assert!(fail_open_calls(cp) > before, "the webhooks were not called (and failed open)");
    let stderr = refused(cp, &broken("team-b"), &policy_denied(RELEASE));
    assert!(stderr.ends_with(&format!("{}{BAD_OPERATOR_SAYS}", policy_denied(RELEASE))), "{stderr}");
    let stderr = refused(
        cp,
        &nsof(LONG_NAMESPACE, "offloading", "  podOffloadingStrategy: LocalAndRemote\n"),
        &policy_denied(&format!("{RELEASE}-cluster-id")),
    );
    assert!(
        stderr.contains(&format!(
            "{}metadata.namespace: Invalid value: \"{LONG_NAMESPACE}\": the remote namespace name \"{LONG_NAMESPACE}-{CLUSTER_ID}\" is 65 characters",
            policy_denied(&format!("{RELEASE}-cluster-id"))
        )),
        "{stderr}"
    );

    // Uninstall takes the policy away with the rest.
    let out = helm_ok(&["uninstall", RELEASE, "--namespace", NAMESPACE, "--kubeconfig", kubeconfig]);
    assert!(out.contains("uninstalled"), "{out}");
    let left = cp.kubectl_ok(&[
        "get",
        "validatingadmissionpolicies,validatingadmissionpolicybindings,validatingwebhookconfigurations,mutatingwebhookconfigurations",
        "-o",
        "name",
    ]);
    assert_eq!(left.trim(), "", "left behind after uninstall");
}

/// With aggregator routing the API server reaches a Service-registered webhook through the
/// Service's endpoints, as it does in a cluster without kube-proxy in its path.
const AGGREGATOR_ROUTING: (&str, &str) = ("UP_APISERVER_ARGS", "--enable-aggregator-routing=true");

#[test]
fn policy_mode_keeps_the_cluster_writable_with_every_replica_down() {
    let cp = ControlPlane::start_with(&[AGGREGATOR_ROUTING]);
    policy_mode_keeps_the_cluster_writable_on(&cp);
}

#[test]
fn policy_mode_keeps_the_cluster_writable_on_the_oldest_kubernetes_the_chart_claims() {
    let cp = ControlPlane::start_release("v1.30", &[AGGREGATOR_ROUTING]);
    policy_mode_keeps_the_cluster_writable_on(&cp);
}

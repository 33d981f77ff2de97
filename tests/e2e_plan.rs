//! `plan` and `diagnose -A` on two real control planes (Liqo v0.3's API, `serve` reconciling in
//! deny mode, a reachable remote cluster and one that is down).
//!
//! Each object is planned first, then applied: what `plan` says must be what happens. A refusal
//! `plan` predicts is the one kubectl prints; "selects X, free" ends Ready on X; "selects nothing"
//! ends NoClusterSelected; "cannot be created in X" ends AllFailed or SomeFailed as it says. Then
//! `diagnose -A` over the healthy and every kind of broken namespace names every broken one and
//! no healthy one.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{
    CLUSTER_ID, ControlPlane, Printed, Webhook, apply, certs_for_loopback, get, install_crds, nsof, wait_eq,
};

const WAIT: Duration = Duration::from_secs(90);

/// Runs `offloading-webhook ARGS` with `stdin`; returns the exit code and what it printed.
fn run(args: &[&str], stdin: &str) -> (i32, Printed) {
    run_in(Path::new("."), args, stdin)
}

/// The same, in directory `dir` (so that a file is named as a reader names it).
fn run_in(dir: &Path, args: &[&str], stdin: &str) -> (i32, Printed) {
    let mut child = Command::new(support::webhook_bin())
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), out.into())
}

/// A virtual node of remote cluster `id` in `region`.
fn virtual_node(cp: &ControlPlane, id: &str, region: &str) {
    support::virtual_node(cp, id, region);
}

fn selector(regions: &str) -> String {
    format!(
        "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: In\n        values: [{regions}]\n"
    )
}

fn phase(cp: &ControlPlane, ns: &str) -> String {
    get(cp, &["get", "nsof", "offloading", "-n", ns, "-o", "jsonpath={.status.offloadingPhase}"])
}

/// The remote clusters whose condition Ready is True in the status of `ns`'s NamespaceOffloading.
fn ready_clusters(cp: &ControlPlane, ns: &str) -> BTreeSet<String> {
    let out = get(cp, &["get", "nsof", "offloading", "-n", ns, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let conditions = v["status"]["remoteNamespacesConditions"].as_object().cloned().unwrap_or_default();
    conditions
        .into_iter()
        .filter(|(_, cs)| {
            cs.as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .map(|(id, _)| id)
        .collect()
}

struct Env {
    local: ControlPlane,
    remote: ControlPlane,
    remote_flag: String,
    down_flag: String,
}

impl Env {
    /// `plan -f - -o json` of `yaml`; the exit code and the one object's plan.
    fn plan(&self, yaml: &str) -> (i32, Value) {
        let kubeconfig = self.local.kubeconfig.to_str().unwrap();
        let (code, p) = run(
            &[
                "plan",
                "-f",
                "-",
                "-o",
                "json",
                "--kubeconfig",
                kubeconfig,
                "--cluster-id",
                CLUSTER_ID,
                "--remote-kubeconfig",
                &self.remote_flag,
                "--remote-kubeconfig",
                &self.down_flag,
            ],
            yaml,
        );
        let v: Value = serde_json::from_str(&p.stdout)
            .unwrap_or_else(|e| panic!("plan printed no JSON ({e}), exit {code}:\n{}{}", p.stdout, p.stderr));
        (code, v["objects"][0].clone())
    }
}

fn selected(plan: &Value) -> BTreeSet<String> {
    plan["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["selected"] == true)
        .map(|c| c["clusterId"].as_str().unwrap().to_owned())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
}

#[test]
fn plan_agrees_with_apply_and_the_loop_and_diagnose_all_names_every_broken_namespace() {
    let (local, remote) = std::thread::scope(|s| {
        let l = s.spawn(ControlPlane::start);
        let r = s.spawn(ControlPlane::start);
        (l.join().unwrap(), r.join().unwrap())
    });
    install_crds(&local);
    let certs = local.dir.path().join("certs");
    certs_for_loopback(&certs);
    let down = local.dir.path().join("down.kubeconfig");
    let text = std::fs::read_to_string(&remote.kubeconfig).unwrap();
    let server = text.lines().find(|l| l.trim_start().starts_with("server:")).unwrap().trim().to_owned();
    let closed = support::free_port();
    std::fs::write(&down, text.replace(&server, &format!("server: https://127.0.0.1:{closed}"))).unwrap();
    let env = Env {
        remote_flag: format!("cluster-r={}", remote.kubeconfig.display()),
        down_flag: format!("cluster-down={}", down.display()),
        local,
        remote,
    };
    let local = &env.local;
    let wh = Webhook::start(
        local,
        &certs,
        &[
            "--cluster-id",
            CLUSTER_ID,
            "--lease-namespace",
            "default",
            "--remote-kubeconfig",
            &env.remote_flag,
            "--remote-kubeconfig",
            &env.down_flag,
        ],
    );
    wh.register(local, &certs);
    virtual_node(local, "cluster-r", "eu-west");
    virtual_node(local, "cluster-down", "us-east");
    let long_ns = "payments-processing-europe-1";
    for ns in [
        "good", "same", "nomatch", "taken", "both", "moving", "equals", "novalues", "wrong", "empty", long_ns,
    ] {
        local.kubectl_ok(&["create", "namespace", ns]);
    }
    env.remote.kubectl_ok(&["create", "namespace", &format!("taken-{CLUSTER_ID}")]);
    // The registration in effect: a wrong name is refused.
    support::eventually(Duration::from_secs(30), "the webhook to be called", || {
        let out = apply(local, &nsof("wrong", "offload", &selector("eu-west")), &["--dry-run=server"]);
        out.stderr.contains("denied the request").then_some(())
    });

    // Objects the webhook refuses: plan says so, with the messages kubectl then prints.
    let refused = [
        nsof(
            "equals",
            "offloading",
            "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: Equals\n        values: [eu-west]\n",
        ),
        nsof(
            "novalues",
            "offloading",
            "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: In\n",
        ),
        nsof("wrong", "offload", &selector("eu-west")),
        nsof("empty", "offloading", "  namespaceMappingStrategy: SelectedName\n"),
        nsof(long_ns, "offloading", &selector("eu-west")),
    ];
    for yaml in &refused {
        let (code, p) = env.plan(yaml);
        assert_eq!((code, p["outcome"].as_str()), (1, Some("refused")), "{p:#}");
        let out = apply(local, yaml, &[]);
        assert!(!out.ok, "plan said refused, kubectl apply stored it:\n{yaml}");
        for reason in strings(&p["refusals"]) {
            assert!(
                out.stderr.contains(&reason),
                "plan's refusal {reason:?} is not what kubectl printed: {}",
                out.stderr
            );
        }
    }
    // The API server's own refusals, before any webhook: a namespace that does not exist.
    let ghost = nsof("ghost", "offloading", &selector("eu-west"));
    let (code, p) = env.plan(&ghost);
    assert_eq!((code, p["outcome"].as_str()), (1, Some("refused")), "{p:#}");
    assert_eq!(
        strings(&p["refusals"])[0],
        "namespaces \"ghost\" not found: create the namespace first (or put it in the same input, before the NamespaceOffloading)"
    );
    let out = apply(local, &ghost, &[]);
    assert!(!out.ok && out.stderr.contains("namespaces \"ghost\" not found"), "{}", out.stderr);

    // Objects the webhook admits: what plan says is what the loop reaches.
    let admitted = [
        ("good", nsof("good", "offloading", &selector("eu-west")), "succeeds", "Ready"),
        (
            "same",
            nsof(
                "same",
                "offloading",
                &format!("  namespaceMappingStrategy: EnforceSameName\n{}", selector("eu-west")),
            ),
            "succeeds",
            "Ready",
        ),
        (
            "nomatch",
            nsof("nomatch", "offloading", &selector("ap-south")),
            "selectsNothing",
            "NoClusterSelected",
        ),
        ("taken", nsof("taken", "offloading", &selector("eu-west")), "failsLater", "AllFailed"),
        ("both", nsof("both", "offloading", &selector("eu-west, us-east")), "failsLater", "SomeFailed"),
        ("moving", nsof("moving", "offloading", &selector("eu-west")), "succeeds", "Ready"),
    ];
    let mut plans = Vec::new();
    for (ns, yaml, outcome, _) in &admitted {
        let (code, p) = env.plan(yaml);
        assert_eq!(p["outcome"], *outcome, "{ns}: {p:#}");
        assert_eq!(code, i32::from(*outcome != "succeeds"), "{ns}");
        assert_eq!(p["operation"], "create");
        plans.push(p);
        let out = apply(local, yaml, &[]);
        assert!(out.ok, "plan said admitted, kubectl apply refused {ns}: {}", out.stderr);
    }
    let good = &plans[0];
    assert_eq!(selected(good), BTreeSet::from(["cluster-r".to_owned()]));
    assert_eq!(good["remoteNamespace"]["name"], format!("good-{CLUSTER_ID}"));
    assert_eq!(
        (good["remoteNamespace"]["length"].as_u64(), good["remoteNamespace"]["limit"].as_u64()),
        (Some(41), Some(63))
    );
    let not = good["clusters"].as_array().unwrap().iter().find(|c| c["clusterId"] == "cluster-down").unwrap();
    assert_eq!(
        strings(&not["whyNot"]),
        [
            "spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0] wants topology.liqo.io/region In [eu-west], but the node's label topology.liqo.io/region is \"us-east\""
        ]
    );
    let r = good["clusters"].as_array().unwrap().iter().find(|c| c["clusterId"] == "cluster-r").unwrap();
    assert_eq!(r["remote"], "free");
    let taken = plans[3]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clusterId"] == "cluster-r")
        .unwrap()
        .clone();
    assert_eq!(taken["remote"], "taken");
    assert_eq!(
        plans[3]["summary"],
        "would select cluster-r but the remote namespace cannot be created in cluster-r (phase AllFailed)"
    );
    assert_eq!(
        plans[4]["summary"],
        "would select cluster-down, cluster-r but the remote namespace cannot be created in cluster-down (phase SomeFailed)"
    );
    for ((ns, _, _, want), p) in admitted.iter().zip(&plans) {
        wait_eq(WAIT, &format!("the phase plan predicted for {ns}"), want, || phase(local, ns));
        if p["outcome"] == "succeeds" {
            assert_eq!(ready_clusters(local, ns), selected(p), "{ns}: Ready on the clusters plan named");
        }
    }
    assert!(env.remote.kubectl(&["get", "namespace", &format!("good-{CLUSTER_ID}")]).ok);
    assert!(env.remote.kubectl(&["get", "namespace", "same"]).ok);

    // Planned again once applied: the remote namespace is ours now.
    let (code, p) = env.plan(&admitted[0].1);
    assert_eq!((code, p["operation"].as_str()), (0, Some("update")), "{p:#}");
    assert_eq!(
        p["clusters"].as_array().unwrap().iter().find(|c| c["clusterId"] == "cluster-r").unwrap()["remote"],
        "ours"
    );

    // Updates: an immutable field is refused as kubectl then refuses it; a selector change says
    // which clusters it gains and loses, and the loop follows.
    let immutable = nsof(
        "moving",
        "offloading",
        &format!("  namespaceMappingStrategy: EnforceSameName\n{}", selector("eu-west")),
    );
    let (code, p) = env.plan(&immutable);
    assert_eq!((code, p["outcome"].as_str()), (1, Some("refused")), "{p:#}");
    assert_eq!(
        strings(&p["changes"]["immutable"]),
        ["spec.namespaceMappingStrategy: DefaultName -> EnforceSameName"]
    );
    let out = apply(local, &immutable, &[]);
    assert!(!out.ok && out.stderr.contains("field is immutable"), "{}", out.stderr);
    let moved = nsof("moving", "offloading", &selector("us-east"));
    let (code, p) = env.plan(&moved);
    assert_eq!(code, 1, "{p:#}");
    assert_eq!(
        (strings(&p["changes"]["gained"]), strings(&p["changes"]["lost"])),
        (vec!["cluster-down".to_owned()], vec!["cluster-r".to_owned()])
    );
    assert_eq!(
        p["summary"],
        "would select cluster-down but the remote namespace cannot be created in cluster-down (phase AllFailed)"
    );
    assert!(apply(local, &moved, &[]).ok);
    wait_eq(WAIT, "moving to reach the phase plan predicted", "AllFailed", || phase(local, "moving"));
    wait_eq(WAIT, "the remote namespace of the cluster lost to be gone", "", || {
        get(&env.remote, &["get", "namespace", &format!("moving-{CLUSTER_ID}"), "-o", "name"])
    });

    // Text, from a file with a Namespace before its object (as kubectl apply takes it), and an
    // object the webhook refuses: the README shows this plan.
    std::fs::write(
        local.dir.path().join("offloadings.yaml"),
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fresh\n---\n{}---\n{}",
            nsof("fresh", "offloading", &selector("eu-west")),
            nsof(long_ns, "offloading", &selector("eu-west"))
        ),
    )
    .unwrap();
    let (code, p) = run_in(
        local.dir.path(),
        &[
            "plan",
            "-f",
            "offloadings.yaml",
            "--kubeconfig",
            local.kubeconfig.to_str().unwrap(),
            "--cluster-id",
            CLUSTER_ID,
            "--remote-kubeconfig",
            &env.remote_flag,
        ],
        "",
    );
    println!("plan -f offloadings.yaml:\n{}", p.stdout);
    assert_eq!(code, 1, "{}{}", p.stdout, p.stderr);
    assert!(p.stdout.contains("  outcome: would offload to cluster-r as namespace fresh-"), "{}", p.stdout);
    assert!(
        p.stdout.contains("    cluster-r     selected; remote namespace free: no namespace fresh-"),
        "{}",
        p.stdout
    );
    assert!(p.stdout.contains("over the limit of 63"), "{}", p.stdout);
    support::readme::assert_block("plan", &p.stdout);

    // Every other kind of broken namespace, let in past the webhook by its escape hatch.
    let skip = "  labels:\n    liqo.io/webhook-skip: \"true\"\n";
    let with_skip = |ns: &str, name: &str, spec: &str| {
        nsof(ns, name, spec).replacen(
            &format!("  namespace: {ns}\n"),
            &format!("  namespace: {ns}\n{skip}"),
            1,
        )
    };
    local.kubectl_ok(&["create", "namespace", "skip-equals"]);
    local.kubectl_ok(&["create", "namespace", "skip-wrong"]);
    let long_skip = "settlements-processing-eu-1";
    local.kubectl_ok(&["create", "namespace", long_skip]);
    for yaml in [
        with_skip(
            "skip-equals",
            "offloading",
            "  clusterSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      - key: topology.liqo.io/region\n        operator: Equals\n        values: [eu-west]\n",
        ),
        with_skip("skip-wrong", "offload", &selector("eu-west")),
        with_skip(long_skip, "offloading", &selector("eu-west")),
    ] {
        let out = apply(local, &yaml, &[]);
        assert!(out.ok, "{}", out.stderr);
    }
    for ns in ["skip-equals", long_skip] {
        wait_eq(WAIT, &format!("{ns} to be NoClusterSelected"), "NoClusterSelected", || phase(local, ns));
    }
    let healthy: BTreeSet<&str> = ["good", "same"].into();
    let broken: BTreeSet<&str> =
        ["nomatch", "taken", "both", "moving", "skip-equals", "skip-wrong", long_skip].into();
    let kubeconfig = local.kubeconfig.to_str().unwrap();
    let diagnose_all = |output: &str| {
        run(
            &[
                "diagnose",
                "-A",
                "-o",
                output,
                "--kubeconfig",
                kubeconfig,
                "--cluster-id",
                CLUSTER_ID,
                "--remote-kubeconfig",
                &env.remote_flag,
                "--remote-kubeconfig",
                &env.down_flag,
            ],
            "",
        )
    };
    let (code, p) = diagnose_all("text");
    println!("diagnose -A:\n{}", p.stdout);
    assert_eq!(code, 1, "{}{}", p.stdout, p.stderr);
    support::readme::assert_block("diagnose-all", &p.stdout);
    let (code, p) = diagnose_all("json");
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&p.stdout).unwrap();
    let lines = v["namespaces"].as_array().unwrap();
    let unhealthy: BTreeSet<&str> =
        lines.iter().filter(|l| l["healthy"] == false).map(|l| l["namespace"].as_str().unwrap()).collect();
    let well: BTreeSet<&str> =
        lines.iter().filter(|l| l["healthy"] == true).map(|l| l["namespace"].as_str().unwrap()).collect();
    assert_eq!(unhealthy, broken, "diagnose -A named these as broken:\n{}", p.stdout);
    assert_eq!(well, healthy, "{}", p.stdout);
    let line = |ns: &str| lines.iter().find(|l| l["namespace"] == ns).unwrap().clone();
    assert_eq!((line("good")["selected"].as_u64(), line("good")["ready"].as_u64()), (Some(1), Some(1)));
    assert_eq!((line("both")["selected"].as_u64(), line("both")["ready"].as_u64()), (Some(2), Some(1)));
    let says = |ns: &str, what: &str| {
        let l = line(ns);
        assert!(
            l["problems"].as_array().unwrap().iter().any(|p| p["cause"].as_str().unwrap().contains(what)),
            "{ns}: no problem says {what:?}: {l:#}"
        );
    };
    says(
        "taken",
        &format!(
            "the remote namespace \"taken-{CLUSTER_ID}\" in cluster cluster-r exists without the annotation"
        ),
    );
    says("both", "remote cluster cluster-down cannot be reached");
    says("skip-wrong", "is named \"offload\"");
    says("skip-equals", "the clusterSelector is invalid");
    says(long_skip, "over the limit of 63");
    says("nomatch", "the clusterSelector matches none of the 2 virtual nodes");
    assert!(!v["groups"].as_array().unwrap().is_empty());
    assert!(wh.terminate().success());
}

/// As a kubectl plugin, on an ordinary setup: `KUBECONFIG` a list of two files merged (the contexts,
/// one with its namespace, and the user in one; the cluster in the other), `-n`, `--context`, the context's
/// namespace when `-n` is absent, a shell whose own CLUSTER_ID and LIQO_API must not leak in, usage
/// errors with their own exit code, and shell completions.
#[test]
fn kubectl_offloading_as_kubectl_loads_its_kubeconfig() {
    let cp = ControlPlane::start();
    install_crds(&cp);
    virtual_node(&cp, "cluster-r", "eu-west");
    cp.kubectl_ok(&["create", "namespace", "liqo"]);
    cp.kubectl_ok(&[
        "create",
        "configmap",
        "liqo-clusterid-configmap",
        "-n",
        "liqo",
        &format!("--from-literal=CLUSTER_ID={CLUSTER_ID}"),
    ]);
    cp.kubectl_ok(&["create", "namespace", "web"]);
    let obj = nsof("web", "offloading", &selector("eu-west"));
    assert!(apply(&cp, &obj, &[]).ok);

    // The control plane's kubeconfig split in two, as kubectl merges a list: the contexts (the
    // current one first) and the user in one file, the cluster in the other.
    let text = std::fs::read_to_string(&cp.kubeconfig).unwrap();
    let section = |from: &str, to: &str| {
        let start = text.find(from).unwrap_or_else(|| panic!("no {from} in:\n{text}"));
        let end = start + text[start..].find(to).unwrap_or_else(|| panic!("no {to} in:\n{text}"));
        text[start..end].to_owned()
    };
    let (clusters, users) = (section("clusters:\n", "users:\n"), section("users:\n", "contexts:\n"));
    let header = "apiVersion: v1\nkind: Config\n";
    let contexts = cp.dir.path().join("contexts.kubeconfig");
    std::fs::write(
        &contexts,
        format!(
            "{header}current-context: team\ncontexts:\n- name: team\n  context:\n    cluster: test\n    user: admin\n    namespace: web\n- name: test\n  context:\n    cluster: test\n    user: admin\n{users}"
        ),
    )
    .unwrap();
    let cluster_file = cp.dir.path().join("cluster.kubeconfig");
    std::fs::write(&cluster_file, format!("{header}{clusters}")).unwrap();
    let list = std::env::join_paths([&contexts, &cluster_file]).unwrap();
    let plugins = cp.dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::os::unix::fs::symlink(support::webhook_bin(), plugins.join("kubectl-offloading")).unwrap();
    let path = format!("{}:{}", plugins.display(), std::env::var("PATH").unwrap_or_default());
    let kubectl = |args: &[&str], stdin: &str| {
        let mut child = Command::new(cp.bin.join("kubectl"))
            .arg("offloading")
            .args(args)
            .env("KUBECONFIG", &list)
            .env("PATH", &path)
            .env("CLUSTER_ID", "from-the-shell")
            .env("LIQO_API", "v1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code().unwrap_or(-1), Printed::from(out))
    };

    // No -n: the context's namespace; the cluster id from Liqo's ConfigMap, not the shell's.
    let (code, p) = kubectl(&["diagnose"], "");
    assert!(
        p.stdout.starts_with("NamespaceOffloading web/offloading\n  liqo API:            v0.3\n"),
        "exit {code}\n{}{}",
        p.stdout,
        p.stderr
    );
    assert!(p.stdout.contains(&format!("local cluster id {CLUSTER_ID}")), "{}", p.stdout);
    // -n, as kubectl takes it.
    let (code, p) = kubectl(&["diagnose", "-n", "web"], "");
    assert!(
        p.stdout.starts_with("NamespaceOffloading web/offloading\n"),
        "exit {code}\n{}{}",
        p.stdout,
        p.stderr
    );
    // --context: the other context, whose namespace is default.
    let (code, p) = kubectl(&["diagnose", "--context", "test"], "");
    assert_eq!(code, 1, "{}{}", p.stdout, p.stderr);
    assert!(p.stdout.contains("namespace default has no NamespaceOffloading"), "{}", p.stdout);
    // plan: an object without a namespace goes to the context's, where it is stored already.
    let (code, p) = kubectl(&["plan", "-f", "-"], &obj.replace("  namespace: web\n", ""));
    assert_eq!(code, 0, "{}{}", p.stdout, p.stderr);
    assert!(
        p.stdout.starts_with("NamespaceOffloading web/offloading (standard input, document 1): update\n"),
        "{}",
        p.stdout
    );
    // -A through the plugin.
    let (code, p) = kubectl(&["diagnose", "-A"], "");
    assert!(p.stdout.starts_with("NAMESPACE  PHASE "), "exit {code}\n{}{}", p.stdout, p.stderr);
    // A usage error is not "could not look" (2), and speaks of the plugin's name.
    let (code, p) = kubectl(&["diagnose", "--bogus"], "");
    assert_eq!(code, 64, "{}", p.stderr);
    assert!(p.stderr.contains("Usage: kubectl offloading diagnose"), "{}", p.stderr);
    let (code, p) = kubectl(&["diagnose", "--kubeconfig", "/nonexistent"], "");
    assert_eq!(code, 2, "{}", p.stderr);
    assert!(
        p.stderr
            .starts_with("error: diagnose could not look: could not connect to the cluster: /nonexistent: "),
        "{}",
        p.stderr
    );

    // Completions, for either name.
    let (code, p) = run(&["completion", "bash"], "");
    assert_eq!(code, 0);
    assert!(
        p.stdout.contains(
            "complete -F _offloading__webhook -o nosort -o bashdefault -o default offloading-webhook"
        ),
        "{}",
        &p.stdout[..p.stdout.len().min(400)]
    );
    let (code, p) = run(&["completion", "zsh", "--bin-name", "kubectl-offloading"], "");
    assert_eq!(code, 0);
    assert!(p.stdout.starts_with("#compdef kubectl-offloading"), "{}", &p.stdout[..p.stdout.len().min(400)]);
    let (code, p) = run(&["completion", "fish"], "");
    assert!(code == 0 && p.stdout.contains("complete -c offloading-webhook"), "{}", p.stdout);
}

//! The differential proof: our verdicts against what Liqo v1.2 itself does.
//!
//! A consumer and a provider control plane run Liqo's own reconcilers (tests/go/liqo); on the consumer
//! our webhook is registered in `warn` mode, so every object is stored and reaches Liqo, and Liqo's
//! own webhook beside it. A corpus of NamespaceOffloadings, each in its own namespace, is applied;
//! for each, our verdict is read from what kubectl prints and Liqo's outcome from what its
//! controllers did once everything settled (phase, Warning Events, NamespaceMap entries, the
//! provider's currentMapping). The target: no false refusal (everything we would deny, Liqo fails
//! on) and no miss (everything Liqo fails on for a reason knowable at apply time, we would deny).
//!
//! Each object is also given to `plan` before it is applied (with the provider's kubeconfig, so
//! that a remote name already taken there is knowable too): what `plan` says must be what Liqo then
//! does ("selects the provider, free" ends Ready there, "selects nothing" ends NoClusterSelected,
//! "refused" is what our webhook denies and Liqo fails on). Once everything settled, `diagnose -A`
//! must name every stored namespace that is not Ready, and no Ready one.

mod support;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::liqo::{self, CONSUMER_ID, PROVIDER_ID, Pair};
use support::{Webhook, apply, certs_for_loopback};

/// Labels of the provider's VirtualNode: what cluster selectors see (no Node exists).
const PROVIDER_LABELS: &[(&str, &str)] = &[
    ("topology.liqo.io/region", "eu-west"),
    ("liqo.io/provider", "frosty"),
    ("capacity.example.com/cpus", "16"),
];

const DEFAULT: &str = "  namespaceMappingStrategy: DefaultName\n  podOffloadingStrategy: LocalAndRemote\n";

/// A spec with DefaultName/LocalAndRemote and these nodeSelectorTerms (YAML list items at 4 spaces).
fn terms(items: &str) -> String {
    format!("{DEFAULT}  clusterSelector:\n    nodeSelectorTerms:\n{items}")
}

/// DefaultName/LocalAndRemote on every cluster, as liqoctl writes it.
fn every() -> String {
    format!("{DEFAULT}  clusterSelector:\n    nodeSelectorTerms: []\n")
}

/// One term with one matchExpression.
fn expr(key: &str, op: &str, values: Option<&str>) -> String {
    let values = values.map(|v| format!("        values: {v}\n")).unwrap_or_default();
    terms(&format!("    - matchExpressions:\n      - key: \"{key}\"\n        operator: {op}\n{values}"))
}

/// One term with one matchFields requirement.
fn field(key: &str, op: &str, values: Option<&str>) -> String {
    let values = values.map(|v| format!("        values: {v}\n")).unwrap_or_default();
    terms(&format!("    - matchFields:\n      - key: \"{key}\"\n        operator: {op}\n{values}"))
}

fn selected(remote: &str) -> String {
    format!(
        "  namespaceMappingStrategy: SelectedName\n  remoteNamespaceName: \"{remote}\"\n  podOffloadingStrategy: LocalAndRemote\n  clusterSelector:\n    nodeSelectorTerms: []\n"
    )
}

struct Case {
    /// The namespace (and the row's name, unless it is long).
    ns: String,
    /// The NamespaceOffloading's name (Liqo acts only on `offloading`).
    name: &'static str,
    spec: String,
    /// Whether a failure of this object can be known when it is applied (a remote name taken on
    /// the provider cannot: `diagnose` names it afterwards).
    knowable: bool,
    what: String,
}

fn case(ns: &str, what: &str, spec: String) -> Case {
    Case { ns: ns.to_owned(), name: "offloading", spec, knowable: true, what: what.to_owned() }
}

fn corpus() -> Vec<Case> {
    let ns_len = |remote_len: usize| "n".repeat(remote_len - CONSUMER_ID.len() - 1);
    let mut c = vec![
        // Well formed, each matching the provider.
        case("empty-terms", "nodeSelectorTerms: [] (every cluster)", every()),
        case("in-match", "In [eu-west]", expr("topology.liqo.io/region", "In", Some("[eu-west]"))),
        case("notin-match", "NotIn [us-east]", expr("topology.liqo.io/region", "NotIn", Some("[us-east]"))),
        case("exists-match", "Exists", expr("liqo.io/provider", "Exists", None)),
        case("doesnotexist-match", "DoesNotExist on a missing key", expr("example.com/absent", "DoesNotExist", None)),
        case("gt-match", "Gt [8] on cpus=16", expr("capacity.example.com/cpus", "Gt", Some("[\"8\"]"))),
        case("lt-match", "Lt [32] on cpus=16", expr("capacity.example.com/cpus", "Lt", Some("[\"32\"]"))),
        case(
            "two-terms",
            "two good terms, one matching",
            terms("    - matchExpressions:\n      - {key: topology.liqo.io/region, operator: In, values: [us-east]}\n    - matchExpressions:\n      - {key: topology.liqo.io/region, operator: In, values: [eu-west]}\n"),
        ),
        case("fields-name-in", "matchFields metadata.name In [the virtual node]", field("metadata.name", "In", Some(&format!("[{PROVIDER_ID}]")))),
        case("fields-name-notin", "matchFields metadata.name NotIn [other]", field("metadata.name", "NotIn", Some("[other-node]"))),
        // Well formed, matching nothing today.
        case("in-nomatch", "In [us-east] (no cluster there)", expr("topology.liqo.io/region", "In", Some("[us-east]"))),
        case("gt-nomatch", "Gt [64] on cpus=16", expr("capacity.example.com/cpus", "Gt", Some("[\"64\"]"))),
        case("gt-nonint-label", "Gt [5] on a non-integer label", expr("topology.liqo.io/region", "Gt", Some("[\"5\"]"))),
        case("empty-term", "a term {} (matches nothing)", terms("    - {}\n")),
        // Strategies.
        case("pod-local", "podOffloadingStrategy Local", every().replace("LocalAndRemote", "Local")),
        case("pod-remote", "podOffloadingStrategy Remote", every().replace("LocalAndRemote", "Remote")),
        case("same-name", "EnforceSameName", "  namespaceMappingStrategy: EnforceSameName\n  podOffloadingStrategy: LocalAndRemote\n  clusterSelector:\n    nodeSelectorTerms: []\n".to_owned()),
        case("selected", "SelectedName chosen-remote", selected("chosen-remote")),
        // Malformed selectors.
        case("op-equals", "operator Equals", expr("topology.liqo.io/region", "Equals", Some("[eu-west]"))),
        case("op-lowercase", "operator in (lower case)", expr("topology.liqo.io/region", "in", Some("[eu-west]"))),
        case("in-novalues", "In without values", expr("topology.liqo.io/region", "In", None)),
        case("notin-novalues", "NotIn without values", expr("topology.liqo.io/region", "NotIn", Some("[]"))),
        case("exists-values", "Exists with values", expr("liqo.io/provider", "Exists", Some("[frosty]"))),
        case("dne-values", "DoesNotExist with values", expr("example.com/absent", "DoesNotExist", Some("[x]"))),
        case("gt-nonint", "Gt [abc]", expr("capacity.example.com/cpus", "Gt", Some("[abc]"))),
        case("gt-two", "Gt with two values", expr("capacity.example.com/cpus", "Gt", Some("[\"1\", \"2\"]"))),
        case("lt-novalues", "Lt without values", expr("capacity.example.com/cpus", "Lt", None)),
        case("key-space", "key \"bad key\"", expr("bad key", "Exists", None)),
        case("key-long", "key name of 64 characters", expr(&"k".repeat(64), "Exists", None)),
        case("key-prefix", "key prefix Bad_Prefix/", expr("Bad_Prefix/region", "Exists", None)),
        case("value-bad", "value \"eu west!\"", expr("topology.liqo.io/region", "In", Some("[\"eu west!\"]"))),
        case("value-long", "value of 64 characters", expr("topology.liqo.io/region", "In", Some(&format!("[{}]", "v".repeat(64))))),
        case("fields-name-two", "matchFields metadata.name In two values", field("metadata.name", "In", Some("[a, b]"))),
        case("fields-name-exists", "matchFields metadata.name Exists", field("metadata.name", "Exists", None)),
        case("fields-other-in", "matchFields metadata.namespace In", field("metadata.namespace", "In", Some("[x]"))),
        case("fields-other-notin", "matchFields spec.unschedulable NotIn", field("spec.unschedulable", "NotIn", Some("[\"true\"]"))),
        case("fields-badname-notin", "matchFields metadata.name NotIn [Not_A_Node]", field("metadata.name", "NotIn", Some("[Not_A_Node]"))),
        case(
            "broken-beside-match",
            "an Equals term beside a matching term",
            terms("    - matchExpressions:\n      - {key: topology.liqo.io/region, operator: Equals, values: [eu-west]}\n    - matchExpressions:\n      - {key: topology.liqo.io/region, operator: In, values: [eu-west]}\n"),
        ),
        case(
            "broken-beside-nomatch",
            "an Equals term beside a term matching nothing",
            terms("    - matchExpressions:\n      - {key: topology.liqo.io/region, operator: Equals, values: [eu-west]}\n    - matchExpressions:\n      - {key: topology.liqo.io/region, operator: In, values: [us-east]}\n"),
        ),
        // No selector.
        case("no-selector", "no clusterSelector", DEFAULT.to_owned()),
        case("selector-empty", "clusterSelector: {}", format!("{DEFAULT}  clusterSelector: {{}}\n")),
        // Remote names around 63 characters with the v1.x cluster id.
        case(&ns_len(62), "DefaultName, remote name of 62", every()),
        case(&ns_len(63), "DefaultName, remote name of 63", every()),
        case(&ns_len(64), "DefaultName, remote name of 64", every()),
        case("selected-63", "SelectedName of 63", selected(&"r".repeat(63))),
        case("selected-64", "SelectedName of 64", selected(&"r".repeat(64))),
        case("selected-upper", "SelectedName Bad_Name", selected("Bad_Name")),
        case("selected-kube-system", "SelectedName kube-system", selected("kube-system")),
        case("selected-default", "SelectedName default", selected("default")),
        case("selected-empty", "SelectedName without remoteNamespaceName", "  namespaceMappingStrategy: SelectedName\n  podOffloadingStrategy: LocalAndRemote\n  clusterSelector:\n    nodeSelectorTerms: []\n".to_owned()),
        case("selected-taken", "SelectedName of a namespace taken on the provider", selected("taken-on-provider")),
    ];
    c.last_mut().unwrap().knowable = false;
    let mut wrong = case("wrong-name", "object named offload", every());
    wrong.name = "offload";
    c.push(wrong);
    c
}

#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Allow,
    Warn(String),
    Deny(String),
}

impl Verdict {
    /// From what kubectl printed on stderr.
    fn from_kubectl(stderr: &str) -> Self {
        let warnings: Vec<&str> = stderr.lines().filter_map(|l| l.strip_prefix("Warning: ")).collect();
        if let Some(d) = warnings.iter().find_map(|w| w.strip_prefix("would be denied (enforcement=warn): "))
        {
            Verdict::Deny(d.to_owned())
        } else if let Some(w) = warnings.first() {
            Verdict::Warn((*w).to_owned())
        } else {
            Verdict::Allow
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Allow => write!(f, "allow"),
            Verdict::Warn(w) => write!(f, "warn: {}", short(w)),
            Verdict::Deny(d) => write!(f, "DENY: {}", short(d)),
        }
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 70 {
        format!("{}...", s.chars().take(70).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// What Liqo did with one object.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Refused at apply time by Liqo's own webhook.
    WebhookDenied(String),
    /// Refused by the API server itself (the CRD schema).
    SchemaRefused(String),
    /// Stored; what Liqo's controllers made of it.
    Stored {
        phase: String,
        /// Liqo's finalizer: missing when Liqo could not even write it.
        finalizer: bool,
        invalid_event: Option<String>,
        desired: Option<String>,
        /// The provider's currentMapping phase for this namespace.
        provider: Option<String>,
    },
}

impl Outcome {
    /// Whether this is one of Liqo's failures.
    fn failure(&self) -> bool {
        match self {
            Outcome::WebhookDenied(_) | Outcome::SchemaRefused(_) => true,
            Outcome::Stored { phase, finalizer, invalid_event, provider, .. } => {
                invalid_event.is_some()
                    || !finalizer
                    || matches!(phase.as_str(), "AllFailed" | "SomeFailed")
                    || provider.as_deref() == Some("CreationLoopBackOff")
            }
        }
    }

    fn settled(&self) -> bool {
        match self {
            Outcome::Stored { phase, .. } => {
                matches!(phase.as_str(), "Ready" | "NoClusterSelected" | "AllFailed" | "SomeFailed")
            }
            _ => true,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::WebhookDenied(m) => write!(f, "denied by Liqo's webhook: {}", short(m)),
            Outcome::SchemaRefused(m) => write!(f, "refused by the API server: {}", short(m)),
            Outcome::Stored { phase, finalizer, invalid_event, desired, provider } => {
                write!(f, "{}", if phase.is_empty() { "(no phase)" } else { phase })?;
                if let Some(e) = invalid_event {
                    write!(f, ", Event {}", short(e))?;
                }
                if !finalizer {
                    write!(f, ", no finalizer (Liqo's write refused)")?;
                }
                match (desired, provider) {
                    (Some(d), Some(p)) => write!(f, ", map {d} -> {p}"),
                    (Some(d), None) => write!(f, ", map {d}"),
                    _ => Ok(()),
                }
            }
        }
    }
}

fn json(cp: &support::ControlPlane, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let p = cp.kubectl(&a);
    if !p.ok {
        return Value::Null;
    }
    serde_json::from_str(&p.stdout).unwrap_or(Value::Null)
}

/// Liqo's outcome for every stored object, keyed by namespace.
fn observe(pair: &Pair, stored: &[&Case]) -> BTreeMap<String, Outcome> {
    let c = &pair.consumer;
    let nsofs = json(c, &["get", "namespaceoffloadings.offloading.liqo.io", "-A"]);
    let events = json(c, &["get", "events", "-A", "--field-selector", "reason=Invalid,type=Warning"]);
    let map = json(
        c,
        &[
            "get",
            "namespacemaps.offloading.liqo.io",
            "-n",
            &format!("liqo-tenant-{PROVIDER_ID}"),
            PROVIDER_ID,
        ],
    );
    let pmap = json(
        &pair.provider,
        &[
            "get",
            "namespacemaps.offloading.liqo.io",
            "-n",
            &format!("liqo-tenant-{CONSUMER_ID}"),
            PROVIDER_ID,
        ],
    );
    let items = nsofs["items"].as_array().cloned().unwrap_or_default();
    let mut out = BTreeMap::new();
    for case in stored {
        let obj = items.iter().find(|o| o["metadata"]["namespace"] == case.ns.as_str());
        let Some(obj) = obj else { continue };
        let finalizer = obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "namespaceoffloading-controller.liqo.io/finalizer"));
        let invalid_event = events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["involvedObject"]["namespace"] == case.ns.as_str())
            .and_then(|e| e["message"].as_str().map(str::to_owned));
        out.insert(
            case.ns.clone(),
            Outcome::Stored {
                phase: obj["status"]["offloadingPhase"].as_str().unwrap_or_default().to_owned(),
                finalizer,
                invalid_event,
                desired: map["spec"]["desiredMapping"][&case.ns].as_str().map(str::to_owned),
                provider: pmap["status"]["currentMapping"][&case.ns]["phase"].as_str().map(str::to_owned),
            },
        );
    }
    out
}

/// What `plan` said of one object: its exit code, outcome and selected clusters.
#[derive(Debug, Clone)]
struct Planned {
    code: i32,
    outcome: String,
    selected: Vec<String>,
    summary: String,
}

/// `plan -f - -o json` of one object on the consumer, the provider reachable through its kubeconfig.
fn plan(pair: &Pair, yaml: &str) -> Planned {
    use std::io::Write;
    let remote = format!("--remote-kubeconfig={PROVIDER_ID}={}", pair.provider.kubeconfig.display());
    let mut child = std::process::Command::new(support::webhook_bin())
        .args(["plan", "-f", "-", "-o", "json", &remote, "--kubeconfig"])
        .arg(&pair.consumer.kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "plan printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let o = &v["objects"][0];
    Planned {
        code: out.status.code().unwrap_or(-1),
        outcome: o["outcome"].as_str().unwrap_or_default().to_owned(),
        selected: o["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["selected"] == true)
            .filter_map(|c| c["clusterId"].as_str().map(str::to_owned))
            .collect(),
        summary: o["summary"].as_str().unwrap_or_default().to_owned(),
    }
}

/// Whether what `plan` said is what happened: exit 0 exactly when Liqo ends Ready, on the clusters
/// plan selected; "selectsNothing" ends NoClusterSelected; "failsLater" a failed phase; "refused"
/// what our webhook denies (or the API server refuses first), and Liqo fails on.
fn plan_agrees(p: &Planned, verdict: &Verdict, outcome: &Outcome) -> bool {
    let phase = match outcome {
        Outcome::Stored { phase, .. } => phase.as_str(),
        _ => "",
    };
    let ready = phase == "Ready";
    let by_outcome = match p.outcome.as_str() {
        "succeeds" => ready && p.selected == [PROVIDER_ID],
        "selectsNothing" => phase == "NoClusterSelected",
        "failsLater" => matches!(phase, "AllFailed" | "SomeFailed"),
        // Refused by our webhook's rules, or by the API server before any webhook (the CRD schema).
        "refused" => {
            outcome.failure()
                && (matches!(verdict, Verdict::Deny(_)) || matches!(outcome, Outcome::SchemaRefused(_)))
        }
        _ => false,
    };
    by_outcome && (p.code == 0) == ready
}

#[test]
fn our_verdicts_match_what_liqo_v1_2_does() {
    let started = Instant::now();
    let mut pair = Pair::start(PROVIDER_LABELS, &[]);
    let c = &pair.consumer;
    let certs = c.dir.path().join("certs");
    certs_for_loopback(&certs);
    let ours = Webhook::start(
        c,
        &certs,
        &["--enforcement=warn", "--liqo-api", "v1", "--reconcile=false", "--cluster-id", CONSUMER_ID],
    );
    ours.register(c, &certs);
    let theirs = liqo::LiqoWebhook::start(c, &certs);
    theirs.register(c, &certs);
    // A namespace on the provider that Liqo did not make, where one object wants its remote namespace.
    pair.provider.kubectl_ok(&["create", "namespace", "taken-on-provider"]);

    let corpus = corpus();
    assert!(corpus.len() >= 40, "the corpus has {} objects", corpus.len());
    // Both registrations in effect: a wrong name gets our warning and Liqo's refusal.
    c.kubectl_ok(&["create", "namespace", "probe"]);
    support::eventually(Duration::from_secs(30), "both webhooks to be called", || {
        let out = apply(c, &liqo::nsof_v1("probe", "offload", &every()), &["--dry-run=server"]);
        (out.stderr.contains("would be denied") && out.stderr.contains("NamespaceOffloading name must match"))
            .then_some(())
    });
    let mut verdicts = BTreeMap::new();
    let mut refused = BTreeMap::new();
    let mut plans = BTreeMap::new();
    for case in &corpus {
        c.kubectl_ok(&["create", "namespace", &case.ns]);
        plans.insert(case.ns.clone(), plan(&pair, &liqo::nsof_v1(&case.ns, case.name, &case.spec)));
        let out = apply(c, &liqo::nsof_v1(&case.ns, case.name, &case.spec), &[]);
        verdicts.insert(case.ns.clone(), Verdict::from_kubectl(&out.stderr));
        if !out.ok {
            let err =
                out.stderr.lines().filter(|l| !l.starts_with("Warning: ")).collect::<Vec<_>>().join(" ");
            let outcome = match err.split_once("denied the request: ") {
                Some((_, m)) => Outcome::WebhookDenied(m.to_owned()),
                None => Outcome::SchemaRefused(err),
            };
            refused.insert(case.ns.clone(), outcome);
        }
    }
    let applied = started.elapsed();

    // Let Liqo settle: every stored object in a final phase, and two looks 3 s apart the same.
    let stored: Vec<&Case> = corpus.iter().filter(|c| !refused.contains_key(&c.ns)).collect();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut last = observe(&pair, &stored);
    loop {
        std::thread::sleep(Duration::from_secs(3));
        pair.assert_running();
        let now = observe(&pair, &stored);
        let settled = now.len() == stored.len() && now.values().all(Outcome::settled) && now == last;
        last = now;
        if settled || Instant::now() >= deadline {
            break;
        }
    }
    let mut outcomes = last;
    outcomes.extend(refused);

    // The table.
    let mut table = String::new();
    let (mut false_refusals, mut misses, mut unsettled) = (vec![], vec![], vec![]);
    let mut plan_disagrees = vec![];
    table.push_str(&format!(
        "{:<28} | {:<40} | {:<76} | {:<16} | {}\n",
        "namespace", "object", "our verdict", "plan", "Liqo v1.2"
    ));
    for case in &corpus {
        let verdict = &verdicts[&case.ns];
        let outcome = outcomes.get(&case.ns).cloned().unwrap_or(Outcome::Stored {
            phase: "(not found)".into(),
            finalizer: true,
            invalid_event: None,
            desired: None,
            provider: None,
        });
        let deny = matches!(verdict, Verdict::Deny(_));
        let mark = if deny && !outcome.failure() {
            false_refusals.push(case.ns.clone());
            "  <- FALSE REFUSAL"
        } else if matches!(outcome, Outcome::SchemaRefused(_)) {
            "  (refused by the CRD schema, before any validating webhook)"
        } else if !deny && outcome.failure() && case.knowable {
            misses.push(case.ns.clone());
            "  <- MISS"
        } else if !outcome.settled() {
            unsettled.push(case.ns.clone());
            "  <- did not settle"
        } else if !case.knowable {
            "  (not knowable at apply time)"
        } else {
            ""
        };
        let planned = &plans[&case.ns];
        let mark = if plan_agrees(planned, verdict, &outcome) {
            mark.to_owned()
        } else {
            plan_disagrees.push(format!("{}: plan said {:?}", case.ns, planned.summary));
            format!("{mark}  <- PLAN DISAGREES")
        };
        let ns = if case.ns.len() > 28 {
            format!("{}...({})", &case.ns[..18], case.ns.len())
        } else {
            case.ns.clone()
        };
        table.push_str(&format!(
            "{:<28} | {:<40} | {:<76} | {:<16} | {}{}\n",
            ns,
            short(&case.what),
            verdict.to_string(),
            format!("{} {}", planned.code, planned.outcome),
            outcome,
            mark
        ));
    }
    let denied = verdicts.values().filter(|v| matches!(v, Verdict::Deny(_))).count();
    let failed = corpus.iter().filter(|c| outcomes.get(&c.ns).is_some_and(Outcome::failure)).count();
    table.push_str(&format!(
        "\n{} objects: we would deny {denied}, Liqo failed on {failed}; {} false refusals, {} misses, {} unsettled (applied in {:.0?}, settled in {:.0?})\n",
        corpus.len(),
        false_refusals.len(),
        misses.len(),
        unsettled.len(),
        applied,
        started.elapsed() - applied,
    ));
    // Who wrote what Liqo's controllers own: the status of every NamespaceOffloading and the
    // NamespaceMap (our webhook runs with --reconcile=false and must write neither).
    let managers = |v: &Value, status: bool| -> std::collections::BTreeSet<String> {
        let objs = v["items"].as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
        objs.iter()
            .flat_map(|o| o["metadata"]["managedFields"].as_array().cloned().unwrap_or_default())
            .filter(|m| (m["subresource"] == "status") == status)
            .filter_map(|m| m["manager"].as_str().map(str::to_owned))
            .collect()
    };
    let nsofs = json(
        &pair.consumer,
        &["get", "namespaceoffloadings.offloading.liqo.io", "-A", "--show-managed-fields"],
    );
    let map =
        json(&pair.consumer, &["get", "namespacemaps.offloading.liqo.io", "-A", "--show-managed-fields"]);
    let status_writers = managers(&nsofs, true);
    let map_writers: std::collections::BTreeSet<String> =
        managers(&map, false).union(&managers(&map, true)).cloned().collect();
    table.push_str(&format!(
        "NamespaceOffloading status written by {status_writers:?}; NamespaceMaps written by {map_writers:?}\n"
    ));
    println!("{table}");
    std::fs::write(pair.consumer.dir.path().join("differential.txt"), &table).unwrap();
    assert!(
        status_writers.iter().all(|m| m == "liqo-controllers")
            && map_writers.iter().all(|m| m == "liqo-controllers" || m == "liqo-crd-replicator"),
        "something besides Liqo wrote what Liqo's controllers own\n{table}"
    );
    assert!(unsettled.is_empty(), "did not settle in Liqo: {unsettled:?}\n{table}");
    assert!(
        false_refusals.is_empty() && misses.is_empty(),
        "false refusals: {false_refusals:?}; misses: {misses:?}\n{table}"
    );
    assert!(plan_disagrees.is_empty(), "plan disagrees with the outcome: {plan_disagrees:#?}\n{table}");

    // diagnose -A: every stored namespace that is not Ready, and no Ready one.
    let remote = format!("--remote-kubeconfig={PROVIDER_ID}={}", pair.provider.kubeconfig.display());
    let out = std::process::Command::new(support::webhook_bin())
        .args(["diagnose", "-A", "-o", "json", &remote, "--kubeconfig"])
        .arg(&pair.consumer.kubeconfig)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("diagnose -A printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr))
    });
    assert_eq!(out.status.code(), Some(1));
    let named: std::collections::BTreeSet<String> = v["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["healthy"] == false)
        .filter_map(|l| l["namespace"].as_str().map(str::to_owned))
        .collect();
    let not_ready: std::collections::BTreeSet<String> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Stored { phase, .. } if phase != "Ready"))
        .map(|(ns, _)| ns.clone())
        .collect();
    assert_eq!(
        named,
        not_ready,
        "diagnose -A should name exactly the stored namespaces that are not Ready\n{}\n{table}",
        serde_json::to_string_pretty(&v["groups"]).unwrap_or_default()
    );
    println!("diagnose -A named {} of {} stored namespaces, every one not Ready", named.len(), stored.len());
    drop(theirs);
    drop(ours);
}

/// Liqo's own webhook beside ours, both refusing: where both refuse, the API server calls both and
/// returns one refusal (the first to answer: k8s.io/apiserver's validating dispatcher returns
/// `errs[0]` and only logs the others), so kubectl prints Liqo's or ours; where Liqo lets an object
/// through, kubectl prints ours alone.
#[test]
fn liqo_webhook_beside_ours_in_deny_mode() {
    liqo::bin_dir();
    let c = support::ControlPlane::start();
    liqo::install_crds(&c);
    liqo::cluster_id_configmap(&c, CONSUMER_ID);
    let certs = c.dir.path().join("certs");
    certs_for_loopback(&certs);
    let ours =
        Webhook::start(&c, &certs, &["--liqo-api", "v1", "--reconcile=false", "--cluster-id", CONSUMER_ID]);
    ours.register(&c, &certs);
    let theirs = liqo::LiqoWebhook::start(&c, &certs);
    theirs.register(&c, &certs);
    for ns in ["wrong", "equals", "long", "empty-selected"] {
        c.kubectl_ok(&["create", "namespace", ns]);
    }
    const OURS: &str = "admission webhook \"validate.offloading-webhook.io\" denied the request: metadata.name: Invalid value: \"offload\"";
    const LIQOS: &str = "admission webhook \"nsoff.validate.liqo.io\" denied the request: NamespaceOffloading name must match offloading";

    // Both registrations in effect: a server-side dry run of a wrong name is refused.
    support::eventually(Duration::from_secs(30), "both webhooks to be called", || {
        let out = apply(&c, &liqo::nsof_v1("wrong", "offload", &every()), &["--dry-run=server"]);
        (out.stderr.contains(OURS) || out.stderr.contains(LIQOS)).then_some(())
    });
    // Both refuse a wrong name: each apply prints exactly one of the two refusals.
    let (mut by_ours, mut by_liqo) = (0, 0);
    for _ in 0..10 {
        let out = apply(&c, &liqo::nsof_v1("wrong", "offload", &every()), &[]);
        assert!(!out.ok, "a wrong name was stored");
        match (out.stderr.contains(OURS), out.stderr.contains(LIQOS)) {
            (true, false) => by_ours += 1,
            (false, true) => by_liqo += 1,
            _ => panic!("wanted one webhook's refusal of a wrong name, kubectl printed: {}", out.stderr),
        }
    }
    println!("a wrong name, 10 applies: kubectl printed our refusal {by_ours} times, Liqo's {by_liqo} times");

    // SelectedName without a remote name: both refuse, each in its own words.
    let spec = "  namespaceMappingStrategy: SelectedName\n  podOffloadingStrategy: LocalAndRemote\n  clusterSelector:\n    nodeSelectorTerms: []\n";
    let out = apply(&c, &liqo::nsof_v1("empty-selected", "offloading", spec), &[]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("spec.remoteNamespaceName: Required value")
            || out.stderr.contains("The RemoteNamespaceName value cannot be empty when using the SelectedName NamespaceMappingStrategy"),
        "{}",
        out.stderr
    );

    // Liqo lets these through; kubectl prints our refusal alone.
    let out = apply(
        &c,
        &liqo::nsof_v1("equals", "offloading", &expr("topology.liqo.io/region", "Equals", Some("[eu-west]"))),
        &[],
    );
    assert!(!out.ok, "an Equals operator was stored");
    assert_eq!(out.stderr.matches("denied the request").count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "admission webhook \"validate.offloading-webhook.io\" denied the request: spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Equals\""
        ),
        "{}",
        out.stderr
    );
    let long = "n".repeat(64 - CONSUMER_ID.len() - 1);
    c.kubectl_ok(&["create", "namespace", &long]);
    let out = apply(&c, &liqo::nsof_v1(&long, "offloading", &every()), &[]);
    assert!(!out.ok, "a 64-character remote name was stored");
    assert_eq!(out.stderr.matches("denied the request").count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("denied the request: metadata.namespace: Invalid value: \"{long}\"")),
        "{}",
        out.stderr
    );
    drop(theirs);
    drop(ours);
}

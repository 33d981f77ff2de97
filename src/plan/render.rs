//! The plan as text for a person, or as JSON (`-o json`).

use std::fmt::Write;

use super::PlanReport;
use super::judge::{ObjectPlan, RemoteState};

/// The plan as a person reads it: per object, the verdict, the clusters, the changes, the outcome.
pub fn text(r: &PlanReport) -> String {
    let mut o = String::new();
    let id = r.local_cluster_id.as_deref().unwrap_or("unknown");
    for p in &r.objects {
        object(&mut o, p, &r.liqo_api, id);
    }
    for n in &r.not_judged {
        let _ = writeln!(o, "not judged (not a NamespaceOffloading): {n}");
    }
    let total = r.objects.len();
    let good = r.objects.iter().filter(|p| p.exit_code() == 0).count();
    let _ = writeln!(
        o,
        "plan: {total} NamespaceOffloading{}, {good} would succeed, {} would not",
        if total == 1 { "" } else { "s" },
        total - good
    );
    o
}

fn object(o: &mut String, p: &ObjectPlan, liqo_api: &str, local_id: &str) {
    let _ = writeln!(o, "NamespaceOffloading {}/{} ({}): {}", p.namespace, p.name, p.source, p.operation);
    let _ = writeln!(o, "  liqo API:          {liqo_api}, local cluster id {local_id}");
    if let Some(r) = &p.remote_namespace {
        let fits = if r.length <= r.limit { "fits" } else { "too long" };
        let _ =
            writeln!(o, "  remote namespace:  {} ({} of {} characters: {fits})", r.name, r.length, r.limit);
    }
    if !p.clusters.is_empty() {
        let _ = writeln!(o, "  clusters:");
    }
    let width = p.clusters.iter().map(|c| c.cluster_id.len()).max().unwrap_or(0);
    for c in &p.clusters {
        if c.selected {
            let state = match c.remote {
                Some(RemoteState::Free) => "free",
                Some(RemoteState::Ours) => "already ours",
                Some(RemoteState::Taken) => "TAKEN",
                Some(RemoteState::Unreachable) => "unreachable",
                Some(RemoteState::NotChecked) | None => "not checked",
            };
            let detail = c.remote_detail.as_deref().unwrap_or_default();
            let _ = writeln!(o, "    {:<width$}  selected; remote namespace {state}: {detail}", c.cluster_id);
        } else {
            let _ = writeln!(o, "    {:<width$}  not selected (node {})", c.cluster_id, c.node);
            for why in &c.why_not {
                let _ = writeln!(o, "    {:<width$}    {why}", "");
            }
        }
    }
    if let Some(c) = &p.changes {
        let list = |v: &[String]| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
        let _ = writeln!(
            o,
            "  against the stored object: clusters gained {}, lost {}",
            list(&c.gained),
            list(&c.lost)
        );
        for f in &c.immutable {
            let _ = writeln!(o, "    immutable field changed: {f}");
        }
    }
    for w in &p.warnings {
        let _ = writeln!(o, "  warning: {w}");
    }
    for n in &p.notes {
        let _ = writeln!(o, "  note: {n}");
    }
    for r in &p.refusals {
        let _ = writeln!(o, "  refused: {r}");
    }
    let _ = writeln!(o, "  outcome: {}", p.summary);
}

/// The plan as pretty-printed JSON: the [`PlanReport`] itself.
pub fn json(r: &PlanReport) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}

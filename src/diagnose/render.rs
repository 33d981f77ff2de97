//! The report as text for a person, or as JSON (`-o json`); one namespace's, or the fleet's.

use std::fmt::Write;

use super::fleet::FleetReport;
use super::report::Report;
use crate::liqo::{Generation, SCHEDULING_ENABLED};

/// The report as a person reads it: the object, each remote cluster, the Leases, then Events,
/// notes, problems and the verdict.
pub fn text(r: &Report) -> String {
    let mut o = String::new();
    header(&mut o, r);
    clusters(&mut o, r);
    leases(&mut o, r);
    verdict(&mut o, r);
    o
}

fn none() -> String {
    "-".to_string()
}

fn header(o: &mut String, r: &Report) {
    let _ = writeln!(o, "NamespaceOffloading {}/offloading", r.namespace);
    let _ = writeln!(o, "  liqo API:            {}", r.liqo_api);
    let _ = writeln!(o, "  phase:               {}", r.phase.clone().unwrap_or_else(none));
    let _ = writeln!(
        o,
        "  remote namespace:    {} ({}, local cluster id {})",
        r.remote_namespace_name.clone().unwrap_or_else(none),
        r.mapping_strategy.clone().unwrap_or_else(none),
        r.local_cluster_id.clone().unwrap_or_else(|| "unknown".into())
    );
    // Liqo v1.x keeps no such annotation: its Events say what v0.3's annotation said.
    if r.liqo_api != Generation::V1.as_str() || r.scheduling_enabled.is_some() {
        let _ = writeln!(o, "  {SCHEDULING_ENABLED}: {}", r.scheduling_enabled.clone().unwrap_or_else(none));
    }
}

fn clusters(o: &mut String, r: &Report) {
    if !r.clusters.is_empty() {
        let _ = writeln!(o, "clusters:");
    }
    for c in &r.clusters {
        let _ = writeln!(
            o,
            "  {}  node {}  {}",
            c.cluster_id,
            c.virtual_node.clone().unwrap_or_else(none),
            if c.selected { "selected" } else { "not selected" }
        );
        let _ = writeln!(
            o,
            "    conditions:     {}",
            if c.conditions.is_empty() { none() } else { c.conditions.join(", ") }
        );
        let _ = writeln!(
            o,
            "    desiredMapping: {}",
            c.desired.as_ref().map_or_else(none, |d| format!("{} -> {d}", r.namespace))
        );
        let _ = writeln!(o, "    currentMapping: {}", c.current.clone().unwrap_or_else(none));
        if let Some(remote) = &c.remote {
            let _ = writeln!(o, "    remote cluster: {remote}");
        }
    }
}

fn leases(o: &mut String, r: &Report) {
    if !r.reconcile_leases.is_empty() {
        let _ = writeln!(o, "reconcile leases:");
    }
    for l in &r.reconcile_leases {
        let renewed = match l.renewed_seconds_ago {
            Some(s) => format!("renewed {s} s ago"),
            None => "never renewed".into(),
        };
        let duration = l.lease_duration_seconds.map(|d| format!(" (lease {d} s)")).unwrap_or_default();
        let state = match (l.live, l.reconciles) {
            (true, true) => "reconciles",
            (true, false) => "stands by: another install is older",
            (false, _) if l.holder.is_none() => "released",
            (false, _) => "expired",
        };
        let _ = writeln!(
            o,
            "  {}  holder {}, {renewed}{duration}: {state}",
            l.lease,
            l.holder.clone().unwrap_or_else(none)
        );
    }
}

fn verdict(o: &mut String, r: &Report) {
    for e in &r.events {
        let _ = writeln!(o, "event: {e}");
    }
    for n in &r.notes {
        let _ = writeln!(o, "note: {n}");
    }
    if r.problems.is_empty() {
        let _ = writeln!(o, "verdict: healthy");
    } else {
        let _ = writeln!(o, "problems:");
        for (i, p) in r.problems.iter().enumerate() {
            let _ = writeln!(o, "  {}. {}\n     fix: {}", i + 1, p.cause, p.fix);
        }
        let n = r.problems.len();
        let _ = writeln!(o, "verdict: {n} problem{} found", if n == 1 { "" } else { "s" });
    }
}

/// The report as pretty-printed JSON: the [`Report`] itself.
pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}

/// `diagnose -A` as a person reads it: a table of the namespaces, then the problems grouped.
pub fn fleet_text(r: &FleetReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    if r.namespaces.is_empty() {
        let _ = writeln!(o, "no NamespaceOffloading in any namespace (liqo API {})", r.liqo_api);
        return o;
    }
    let width = r.namespaces.iter().map(|l| l.namespace.len()).max().unwrap_or(0).max("NAMESPACE".len());
    let _ =
        writeln!(o, "{:<width$}  {:<17}  {:>8}  {:>5}  PROBLEM", "NAMESPACE", "PHASE", "SELECTED", "READY");
    for l in &r.namespaces {
        let _ = writeln!(
            o,
            "{:<width$}  {:<17}  {:>8}  {:>5}  {}",
            l.namespace,
            l.phase.as_deref().unwrap_or("-"),
            l.selected,
            l.ready,
            l.first_problem().unwrap_or("-")
        );
    }
    if !r.groups.is_empty() {
        let _ = writeln!(o, "problems, by check:");
    }
    for g in &r.groups {
        const SHOWN: usize = 10;
        let n = g.namespaces.len();
        let mut names = g.namespaces.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
        if n > SHOWN {
            let _ = write!(names, " and {} more", n - SHOWN);
        }
        let about = g.cluster.as_ref().map(|c| format!(" (cluster {c})")).unwrap_or_default();
        let _ = writeln!(o, "  {}{about}: {n} namespace{}: {names}", g.check, if n == 1 { "" } else { "s" });
        let _ = writeln!(o, "     e.g. {}: {}", g.namespaces[0], g.cause);
        let _ = writeln!(o, "     fix: {}", g.fix);
    }
    for n in &r.notes {
        let _ = writeln!(o, "note: {n}");
    }
    let broken = r.namespaces.iter().filter(|l| !l.healthy).count();
    let total = r.namespaces.len();
    let _ = writeln!(
        o,
        "verdict: {total} NamespaceOffloading{}, {} healthy, {broken} with problems",
        if total == 1 { "" } else { "s" },
        total - broken
    );
    o
}

/// `diagnose -A` as pretty-printed JSON: the [`FleetReport`] itself.
pub fn fleet_json(r: &FleetReport) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}

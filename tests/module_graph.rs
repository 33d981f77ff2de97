//! The crate's import graph, read from the sources (no build of the crate needed): every
//! `crate::a::b` path in `src/**/*.rs` (in `use` lines and inline, test code included, comments
//! left out) is an edge from the top-level module of the file (`src/a.rs` or `src/a/**`) to `a`.
//! Two rules:
//!
//! - no circle between top-level modules (each found is printed with a file:line per edge);
//! - the modules that each own one job ([`INDEPENDENT`]: the webhook, the reconcile loop, the
//!   troubleshooting command) never import one another: what they share lives in a module of its
//!   own (`liqo`, `raw_object`, `remote_clients`, `kube_client`, ...), except the few paths in
//!   [`SHARED`], each with its reason.
//!
//! `cargo test --test module_graph` prints the whole graph with `-- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that each own one job, and must not reach into one another.
const INDEPENDENT: &[&str] = &["admission", "reconcile", "diagnose"];

/// Paths of an independent module that another may use, and why.
const SHARED: &[(&str, &str, &str)] = &[(
    "diagnose",
    "reconcile::installs",
    "how the installs' reconcile Leases are labelled and ordered: diagnose reports what they say",
)];

/// One `crate::` path, where it was written.
struct Use {
    from: String,
    path: String,
    at: String,
}

#[test]
fn the_modules_import_one_another_without_a_circle() {
    let uses = uses();
    let graph = graph(&uses);
    for (from, to) in &graph {
        println!("{from} -> {}", to.keys().cloned().collect::<Vec<_>>().join(" "));
    }
    let circles: Vec<String> = components(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let edges: Vec<String> = c
                .iter()
                .flat_map(|a| graph[a].iter().filter(|(b, _)| c.contains(*b)).map(move |(b, at)| (a, b, at)))
                .map(|(a, b, at)| format!("  {a} -> {b} ({at})"))
                .collect();
            format!("{}:\n{}", c.iter().cloned().collect::<Vec<_>>().join(", "), edges.join("\n"))
        })
        .collect();
    assert!(circles.is_empty(), "modules that import one another in a circle:\n{}", circles.join("\n"));
}

#[test]
fn the_webhook_the_loop_and_diagnose_do_not_reach_into_one_another() {
    let bad: Vec<String> = uses()
        .into_iter()
        .filter(|u| {
            let to = u.path.split("::").next().unwrap_or_default();
            INDEPENDENT.contains(&u.from.as_str()) && INDEPENDENT.contains(&to) && to != u.from
        })
        .filter(|u| {
            !SHARED.iter().any(|(from, prefix, _)| {
                *from == u.from && (u.path == *prefix || u.path.starts_with(&format!("{prefix}::")))
            })
        })
        .map(|u| format!("  {} uses crate::{} ({})", u.from, u.path, u.at))
        .collect();
    assert!(
        bad.is_empty(),
        "{} must not import one another: move what they share to a module of its own\n{}",
        INDEPENDENT.join(", "),
        bad.join("\n")
    );
}

/// The reader itself, on the shapes of `use` rustfmt writes.
#[test]
fn paths_are_read_from_use_trees_and_inline_code() {
    let text = "use crate::a::{self, b::{C, D as E}, f::*};\n// crate::commented\nlet x = crate::g::h(1); use crate::{i, j::k};";
    let got: Vec<String> = paths_in(text).into_iter().map(|(p, line)| format!("{p}@{line}")).collect();
    assert_eq!(got, ["a@1", "a::b::C@1", "a::b::D@1", "a::f@1", "g::h@3", "i@3", "j::k@3"]);
}

fn uses() -> Vec<Use> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap_or(&file);
        let first = rel.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned());
        let from = first.unwrap_or_default().trim_end_matches(".rs").to_owned();
        if from == "lib" || from == "main" {
            continue; // the root wires everything: no module imports it.
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (path, line) in paths_in(&text) {
            out.push(Use { from: from.clone(), path, at: format!("src/{}:{line}", rel.display()) });
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Edges between top-level modules, each with the first place it is written.
fn graph(uses: &[Use]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut g: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for u in uses {
        let to = u.path.split("::").next().unwrap_or_default().to_owned();
        let edges = g.entry(u.from.clone()).or_default();
        if to != u.from && !to.is_empty() {
            edges.entry(to.clone()).or_insert_with(|| u.at.clone());
            g.entry(to).or_default();
        }
    }
    g
}

/// Strongly connected components (Tarjan); a component of more than one module is a circle.
fn components(g: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        g: &'a BTreeMap<String, BTreeMap<String, String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.g[v].keys() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut c = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                c.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            s.out.push(c);
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// Every `crate::` path in `text` (comments left out), with its line; a use tree
/// (`crate::a::{b, c::D}`) gives one path per leaf, `self` its prefix.
fn paths_in(text: &str) -> Vec<(String, usize)> {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        let start = &rest[i + "crate::".len()..];
        // `$crate::` and idents ending in `crate` are not this crate's root.
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            let line = code.len() - rest.len() + i;
            let line = code[..line].matches('\n').count() + 1;
            let mut leaves = Vec::new();
            tree(start, String::new(), &mut leaves);
            out.extend(leaves.into_iter().map(|p| (p, line)));
        }
        rest = start;
    }
    out
}

/// Reads one use tree at the start of `s` under `prefix`; returns what follows it.
fn tree<'a>(s: &'a str, prefix: String, out: &mut Vec<String>) -> &'a str {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('*') {
        out.push(prefix);
        return rest;
    }
    if let Some(mut s) = s.strip_prefix('{') {
        loop {
            s = tree(s, prefix.clone(), out).trim_start();
            match s.chars().next() {
                Some(',') => s = &s[1..],
                Some('}') => return &s[1..],
                _ => return s,
            }
        }
    }
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    let (ident, after) = s.split_at(end);
    let path = match ident {
        "self" | "" => prefix.clone(),
        _ if prefix.is_empty() => ident.to_owned(),
        _ => format!("{prefix}::{ident}"),
    };
    if let Some(next) = after.strip_prefix("::")
        && !ident.is_empty()
    {
        return tree(next, path, out);
    }
    if !path.is_empty() {
        out.push(path);
    }
    let after = after.trim_start();
    match after.strip_prefix("as ") {
        Some(renamed) => {
            let renamed = renamed.trim_start();
            let end = renamed.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(renamed.len());
            &renamed[end..]
        }
        None => after,
    }
}

//! The README's `console` blocks, so that every command and output it shows is checked.
//!
//! A block is a fenced ```` ```console ```` block. Its lines starting with `$ ` are commands (a line
//! ending in `\` continues on the next); the lines after a command, up to the next one, are what
//! it prints, standard output and standard error together. In expected output:
//!
//! - a line `...` stands for any number of lines (none included);
//! - a placeholder such as `<age>` or `<cluster-id>` (lower case, digits and dashes between angle
//!   brackets) stands for any text within its line.
//!
//! Words after `console` in the fence's info string say how the block is checked:
//!
//! - none: `tests/readme.rs` runs it against the built binary, without a cluster;
//! - `serve`: the same, with `serve --no-cluster` running as `scripts/run.sh` starts it;
//! - `e2e:NAME`: it needs a cluster; an end-to-end test that produces that output calls
//!   [`assert_block`]`("NAME", &output)`, and `tests/readme.rs` fails unless one does.

use std::path::Path;

/// One `console` block of the README.
#[derive(Debug, Clone)]
pub struct Block {
    /// 1-based line of its opening fence.
    pub line: usize,
    /// `NAME` of an `e2e:NAME` tag.
    pub e2e: Option<String>,
    /// Whether it needs `serve --no-cluster` running.
    pub serve: bool,
    pub steps: Vec<Step>,
}

/// A command and what it prints.
#[derive(Debug, Clone)]
pub struct Step {
    pub command: String,
    pub expected: Vec<String>,
}

/// The README as committed.
pub fn readme() -> String {
    let path = Path::new(super::ROOT).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("could not read {}: {e}", path.display()))
}

/// Every `console` block of `text`, in order. Panics, naming the line, on an unknown tag or a
/// block that shows output before any command.
pub fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else { continue };
        let mut words = info.split_whitespace();
        if words.next() != Some("console") {
            // Skip the whole fence, so that a ``` inside another block's text is not taken as ours.
            for (_, l) in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
            }
            continue;
        }
        let mut block = Block { line: n + 1, e2e: None, serve: false, steps: Vec::new() };
        for w in words {
            match (w, w.strip_prefix("e2e:")) {
                (_, Some(name)) if !name.is_empty() => block.e2e = Some(name.to_owned()),
                ("serve", _) => block.serve = true,
                _ => panic!(
                    "README.md:{}: unknown tag {w:?} on a console block (tags: serve, e2e:NAME)",
                    n + 1
                ),
            }
        }
        let mut continued = false;
        for (m, l) in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            if continued {
                let step = block.steps.last_mut().expect("a continued command");
                step.command.push('\n');
                step.command.push_str(l);
                continued = l.ends_with('\\');
            } else if let Some(cmd) = l.strip_prefix("$ ") {
                block.steps.push(Step { command: cmd.to_owned(), expected: Vec::new() });
                continued = cmd.ends_with('\\');
            } else {
                let step = block.steps.last_mut().unwrap_or_else(|| {
                    panic!("README.md:{}: output before any `$ ` command in a console block", m + 1)
                });
                step.expected.push(l.to_owned());
            }
        }
        out.push(block);
    }
    out
}

/// The text a person sees: trailing blanks and blank lines dropped. Nothing else is removed: the
/// binary writes no terminal colour codes into a pipe, and any would fail the comparison.
pub fn normalize(actual: &str) -> Vec<String> {
    let mut lines: Vec<String> = actual.lines().map(|l| l.trim_end().to_owned()).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// An expected line as a regular expression: literal text, placeholders as `.*`.
fn line_pattern(expected: &str) -> regex::Regex {
    let placeholder = regex::Regex::new("<[a-z][a-z0-9-]*>").unwrap();
    let mut pattern = String::from("^");
    let mut last = 0;
    for m in placeholder.find_iter(expected) {
        pattern.push_str(&regex::escape(&expected[last..m.start()]));
        pattern.push_str(".*");
        last = m.end();
    }
    pattern.push_str(&regex::escape(expected[last..].trim_end()));
    pattern.push('$');
    regex::Regex::new(&pattern).unwrap()
}

/// Whether `actual` (normalized lines) is what `expected` shows, `...` lines and placeholders
/// included.
pub fn matches(expected: &[String], actual: &[String]) -> bool {
    let patterns: Vec<Option<regex::Regex>> =
        expected.iter().map(|e| (e.trim() != "...").then(|| line_pattern(e))).collect();
    // can[i][j]: expected[i..] matches actual[j..].
    let (n, m) = (patterns.len(), actual.len());
    let mut can = vec![vec![false; m + 1]; n + 1];
    can[n][m] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            can[i][j] = match &patterns[i] {
                None => can[i + 1][j] || (j < m && can[i][j + 1]),
                Some(p) => j < m && p.is_match(&actual[j]) && can[i + 1][j + 1],
            };
        }
    }
    can[0][0]
}

/// Panics, showing both, unless `actual` is what `expected` shows.
pub fn assert_output(what: &str, expected: &[String], actual: &str) {
    let lines = normalize(actual);
    assert!(
        matches(expected, &lines),
        "{what}: the output differs from README.md\n--- README.md shows:\n{}\n--- the command printed:\n{}\n---",
        expected.join("\n"),
        lines.join("\n")
    );
}

/// Checks a real output against the README's block tagged `e2e:NAME` (its one command's output).
pub fn assert_block(name: &str, actual: &str) {
    let text = readme();
    let all = blocks(&text);
    let block = all
        .iter()
        .find(|b| b.e2e.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("README.md has no console block tagged e2e:{name}"));
    assert_eq!(
        block.steps.len(),
        1,
        "README.md:{}: a block tagged e2e:{name} shows exactly one command",
        block.line
    );
    assert_output(&format!("README.md:{} (e2e:{name})", block.line), &block.steps[0].expected, actual);
}

//! The README checked as a reader would use it, without a cluster: every `console` block that
//! needs none is run against the built binary and must print what the README shows; every block
//! that needs a cluster must be compared by an end-to-end test; every path, link and chart value
//! it names must exist. The block format is described in `tests/support/readme.rs`.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::readme::{Block, blocks, matches, normalize, readme};
use support::{ROOT, eventually, free_port, http_get, webhook_bin};

/// What `scripts/run.sh` passes to `serve` (after `cargo run --quiet --`), so that the README's
/// quickstart is checked against what that script really starts.
fn run_sh_serve_args() -> Vec<String> {
    let script = std::fs::read_to_string(Path::new(ROOT).join("scripts/run.sh")).unwrap();
    let line = script
        .lines()
        .find(|l| l.starts_with("exec cargo run --quiet -- serve"))
        .expect("scripts/run.sh ends with `exec cargo run --quiet -- serve ...`");
    line.trim_start_matches("exec cargo run --quiet -- ")
        .split_whitespace()
        .filter(|w| *w != "\"$@\"")
        .map(str::to_owned)
        .collect()
}

/// A directory laid out as a checkout is for a reader: the repository's fixtures and manifests,
/// `offloading-webhook` on PATH, and room for `certs/`.
struct Workdir {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Workdir {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("readme-").tempdir().unwrap();
        for sub in ["tests", "manifests", "scripts"] {
            std::os::unix::fs::symlink(Path::new(ROOT).join(sub), dir.path().join(sub)).unwrap();
        }
        let bin = dir.path().join(".bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(webhook_bin(), bin.join("offloading-webhook")).unwrap();
        Self { dir, bin }
    }

    /// Runs `command` with bash in the work directory, with a clean environment (no KUBECONFIG,
    /// RUST_LOG or LOG_FORMAT from the caller), standard error merged into standard output.
    fn run(&self, command: &str) -> String {
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default());
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(format!("exec 2>&1\n{command}"))
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("`{command}` did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// `serve --no-cluster` as `scripts/run.sh` starts it, on free ports; stopped on drop.
struct Serve {
    child: Child,
    ports: [(u16, u16); 3],
}

impl Serve {
    fn start(work: &Workdir) -> Self {
        if !work.dir.path().join("certs/tls.crt").exists() {
            let out = work.run("offloading-webhook certs --out certs --dns localhost --ip 127.0.0.1");
            assert!(work.dir.path().join("certs/tls.crt").exists(), "{out}");
        }
        let ports = [(9443, free_port()), (8081, free_port()), (8080, free_port())];
        let child = Command::new(webhook_bin())
            .args(run_sh_serve_args())
            .args(["--webhook-addr", &format!("127.0.0.1:{}", ports[0].1)])
            .args(["--probe-addr", &format!("127.0.0.1:{}", ports[1].1)])
            .args(["--metrics-addr", &format!("127.0.0.1:{}", ports[2].1)])
            .current_dir(work.dir.path())
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let serve = Self { child, ports };
        eventually(Duration::from_secs(30), "serve --no-cluster to be ready", || {
            (http_get(ports[1].1, "/readyz").as_deref() == Some("200")).then_some(())
        });
        serve
    }

    /// The command with the README's default ports replaced by this server's.
    fn rewrite(&self, command: &str) -> String {
        self.ports.iter().fold(command.to_owned(), |c, (from, to)| {
            c.replace(&format!("localhost:{from}"), &format!("localhost:{to}"))
        })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn console_blocks_without_a_cluster_print_what_the_readme_shows() {
    let text = readme();
    let local: Vec<Block> = blocks(&text).into_iter().filter(|b| b.e2e.is_none()).collect();
    assert!(!local.is_empty(), "README.md has no console block to check");
    let work = Workdir::new();
    let mut serve: Option<Serve> = None;
    let mut failures = Vec::new();
    for block in &local {
        if block.serve && serve.is_none() {
            serve = Some(Serve::start(&work));
        }
        for step in &block.steps {
            let command = match (&serve, block.serve) {
                (Some(s), true) => s.rewrite(&step.command),
                _ => step.command.clone(),
            };
            let actual = normalize(&work.run(&command));
            if !matches(&step.expected, &actual) {
                failures.push(format!(
                    "README.md:{}: $ {}\n--- README.md shows:\n{}\n--- the command printed:\n{}\n---",
                    block.line,
                    step.command,
                    step.expected.join("\n"),
                    actual.join("\n")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} README example(s) differ:\n\n{}", failures.len(), failures.join("\n\n"));
}

/// The e2e block names that some `tests/e2e_*.rs` compares with `assert_block("NAME", ...)`.
fn e2e_checked_names() -> BTreeSet<String> {
    let call = regex::Regex::new(r#"assert_block\(\s*"([^"]+)""#).unwrap();
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(Path::new(ROOT).join("tests")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("e2e_") && name.ends_with(".rs") {
            let source = std::fs::read_to_string(&path).unwrap();
            names.extend(call.captures_iter(&source).map(|c| c[1].to_owned()));
        }
    }
    names
}

#[test]
fn every_block_that_needs_a_cluster_is_compared_by_an_e2e_test() {
    let text = readme();
    let checked = e2e_checked_names();
    let mut tagged = BTreeSet::new();
    for block in blocks(&text) {
        let Some(name) = block.e2e else { continue };
        assert_eq!(block.steps.len(), 1, "README.md:{}: an e2e block shows exactly one command", block.line);
        assert!(tagged.insert(name.clone()), "README.md:{}: e2e:{name} is used twice", block.line);
        assert!(
            checked.contains(&name),
            "README.md:{}: no tests/e2e_*.rs calls support::readme::assert_block(\"{name}\", ...) to check this block",
            block.line
        );
    }
    let orphans: Vec<_> = checked.difference(&tagged).collect();
    assert!(orphans.is_empty(), "e2e tests compare blocks the README no longer has: {orphans:?}");
}

#[test]
fn paths_links_and_chart_values_the_readme_names_exist() {
    let text = readme();
    let root = Path::new(ROOT);
    let mut missing = Vec::new();
    // Relative links, and repository paths written in code spans or commands.
    let link = regex::Regex::new(r"\]\(([^)#\s]+)(?:#[^)]*)?\)").unwrap();
    let path = regex::Regex::new(
        r"(?:^|[\s`=@(])((?:scripts|manifests|tests|docs|examples|benches|src)/[A-Za-z0-9_./-]*[A-Za-z0-9_/-])",
    )
    .unwrap();
    for c in link.captures_iter(&text) {
        let target = &c[1];
        if !target.contains("://") && !target.starts_with("mailto:") && !root.join(target).exists() {
            missing.push(format!("link {target}"));
        }
    }
    for c in path.captures_iter(&text) {
        let p = &c[1];
        // Paths made at run time (build output, saved failures) are not in the repository.
        if !root.join(p).exists() && !p.contains("FILE") {
            missing.push(format!("path {p}"));
        }
    }
    // Chart values set on a command line must be keys of the chart's schema.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("manifests/chart/offloading-webhook/values.schema.json")).unwrap(),
    )
    .unwrap();
    let set = regex::Regex::new(r"--set(?:-file|-string)?[ =]([A-Za-z0-9_.]+)=").unwrap();
    for c in set.captures_iter(&text) {
        let key = &c[1];
        let known = key.split('.').try_fold(&schema, |node, part| node.get("properties")?.get(part));
        if known.is_none() {
            missing.push(format!("chart value {key}"));
        }
    }
    assert!(missing.is_empty(), "README.md names what the repository does not have: {missing:?}");
}

#[test]
fn the_block_format_matches_as_documented() {
    let lines = |s: &str| s.lines().map(str::to_owned).collect::<Vec<_>>();
    let expected = lines("first\n...\nid <cluster-id> ok\nlast");
    assert!(matches(&expected, &lines("first\nid abc ok\nlast")));
    assert!(matches(&expected, &lines("first\na\nb\nid abc-1 ok\nlast")));
    assert!(!matches(&expected, &lines("first\nid abc\nlast")));
    assert!(!matches(&expected, &lines("first\nid x ok\nlast\nmore")));
    // Brackets of other shapes are literal text.
    assert!(matches(&lines("a <NAME> [x]"), &lines("a <NAME> [x]")));
    assert!(!matches(&lines("a <NAME>"), &lines("a b")));
    assert_eq!(normalize(" INFO x  \n\n"), vec![" INFO x"]);

    let text = "x\n```bash\n$ not ours\n```\n```console e2e:demo\n$ run \\\n  --flag\nout\n```\n```console serve\n$ a\n$ b\nB\n```\n";
    let b = blocks(text);
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].e2e.as_deref(), Some("demo"));
    assert_eq!(b[0].steps[0].command, "run \\\n  --flag");
    assert_eq!(b[0].steps[0].expected, vec!["out"]);
    assert!(b[1].serve);
    assert_eq!(b[1].steps.len(), 2);
    assert!(b[1].steps[0].expected.is_empty());
}

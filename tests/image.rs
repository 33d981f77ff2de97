//! The container image (scripts/image.sh: static binary, OCI layout written without a daemon) runs
//! as the chart runs it: unpacked from its layout, its entrypoint started with the Deployment's
//! arguments and environment, as uid 65532, on a read-only root filesystem with the serving
//! certificate mounted where the chart mounts it; /readyz answers 200 and a review is answered.
//!
//! Costs a release build of the static binary (minutes when cold; see README). Isolation comes
//! from `unshare --mount --net` (a private mount namespace and a network namespace of its own, so
//! the chart's default ports 9443/8081/8080, on `[::]`, collide with nothing) and `chroot --userspec`.

mod support;
use support::chart;

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn blob(layout: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digests");
    layout.join("blobs/sha256").join(hex)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Inside the namespaces: loopback up, the unpacked root bound read-only with the certificate
/// mounted where the chart mounts its Secret, the entrypoint run as 65532 by chroot; then the
/// probes and one review from outside the chroot (same network namespace), and SIGTERM.
const IN_NAMESPACES: &str = r#"
set -euo pipefail
root=$1 certs=$2 log=$3 review=$4; shift 4
ip link set lo up
tls=$root/etc/offloading-webhook/tls
mkdir -p "$tls"
# As the kubelet mounts a Secret volume: files mode 0644 (defaultMode), readable by the pod's uid.
chmod 0755 "$certs"; chmod 0644 "$certs"/*
mount --bind "$root" "$root"
mount --bind "$certs" "$tls"
mount -o remount,bind,ro "$root"
mount -o remount,bind,ro "$tls"
if touch "$root/usr/local/bin/written" 2>/dev/null; then echo "the root filesystem is writable"; exit 1; fi
chroot=$(command -v chroot)
env -i POD_NAME=offloading-webhook-0 POD_NAMESPACE=offloading-webhook \
  "$chroot" --userspec=65532:65532 "$root" "$@" >"$log" 2>&1 &
pid=$!
code=000
for _ in $(seq 1 150); do
  code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8081/readyz || true)
  [ "$code" = 200 ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
echo "readyz $code"
# The chart's listeners are on [::]: IPv6 answers as well as IPv4 (mapped).
echo "readyz6 $(curl -s -o /dev/null -w '%{http_code}' 'http://[::1]:8081/readyz' || true)"
echo "uid $(awk '/^Uid:/ {print $2, $3}' /proc/$pid/status)"
echo "review $(curl -s --cacert "$certs/ca.crt" -H 'content-type: application/json' \
  --data-binary @"$review" https://localhost:9443/validate/namespace-offloading)"
kill -TERM "$pid"
status=0; wait "$pid" || status=$?
echo "exit $status"
"#;

#[test]
fn the_image_runs_as_the_chart_runs_it() {
    let start = std::time::Instant::now();
    // A clean environment: cargo's own variables for this test would make the inner cargo build
    // rebuild what a build from a shell has already built (build scripts watch the environment).
    let mut image = Command::new("bash");
    image.arg(format!("{}/scripts/image.sh", support::ROOT)).env_clear();
    for var in [
        "PATH",
        "HOME",
        "RUSTUP_HOME",
        "CARGO_HOME",
        "RUSTUP_TOOLCHAIN",
        "GOPATH",
        "GOMODCACHE",
        "GOCACHE",
        "GOFLAGS",
        "TMPDIR",
    ] {
        if let Some(v) = std::env::var_os(var) {
            image.env(var, v);
        }
    }
    let layout = run(&mut image);
    let layout = Path::new(layout.trim());
    eprintln!("scripts/image.sh took {:?}", start.elapsed());

    // Unpack as a runtime would: index -> manifest -> config and layers.
    let index = json(&layout.join("index.json"));
    let manifest = json(&blob(layout, index["manifests"][0]["digest"].as_str().unwrap()));
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let config = json(&blob(layout, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["config"]["User"], "65532:65532");
    let entrypoint: Vec<String> = serde_json::from_value(config["config"]["Entrypoint"].clone()).unwrap();
    assert_eq!(entrypoint, ["/usr/local/bin/offloading-webhook"]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        run(Command::new("tar")
            .arg("-xzf")
            .arg(blob(layout, layer["digest"].as_str().unwrap()))
            .arg("-C")
            .arg(&root));
    }

    // The Deployment's arguments, exactly, with the certificate from a mounted Secret: the
    // default, a certificate the replicas keep in a Secret, and the registration they keep need a
    // cluster, which this sandbox has none of (tests/e2e_install.rs runs those arguments against
    // the test control plane). Registration off: the one flag left out.
    let docs = chart::documents(&chart::template_ok(&[
        "--show-only",
        "templates/deployment.yaml",
        "--set",
        "certificate.source=existingSecret",
        "--set",
        "certificate.existingSecret.name=webhook-tls",
        "--set",
        "certificate.existingSecret.caBundle=unused",
    ]));
    let container = &docs[0]["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = serde_norway::from_value(container["args"].clone()).unwrap();
    let args: Vec<String> = args.into_iter().filter(|a| !a.starts_with("--webhook-configuration=")).collect();
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], serde_norway::Value::from(true));

    let certs = dir.path().join("certs");
    support::certs_for_loopback(&certs);
    let log = dir.path().join("serve.log");
    let review = format!("{}/tests/fixtures/create-bad-selector.json", support::ROOT);
    let out = Command::new("unshare")
        .args(["--mount", "--net", "--fork", "bash", "-c", IN_NAMESPACES, "in-namespaces"])
        .arg(&root)
        .arg(&certs)
        .arg(&log)
        .arg(&review)
        .args(&entrypoint)
        .args(&args)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    let served = std::fs::read_to_string(&log).unwrap_or_default();
    let said = format!("{printed}{}\n--- serve's log:\n{served}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert!(printed.contains("readyz 200\n"), "{said}");
    assert!(printed.contains("readyz6 200\n"), "not answered over IPv6: {said}");
    assert!(printed.contains("uid 65532 65532\n"), "not the non-root uid: {said}");
    assert!(printed.contains("\"allowed\":false"), "the review was not answered with a denial: {said}");
    assert!(printed.contains("exit 0\n"), "{said}");
    // The chart's --log-format=json took effect.
    assert!(served.lines().next().is_some_and(|l| l.starts_with('{')), "{said}");
}

/// The Dockerfile cannot be built here (no container daemon), so its recipe is checked against the
/// manifest it builds from: the dependencies in a layer of their own (Cargo.toml and Cargo.lock
/// first, with a placeholder for every target the manifest names, so that `cargo build` compiles
/// dependencies only), then the sources, touched so that cargo rebuilds the crate over the
/// placeholders (COPY keeps the files' older times), and the binary stripped. The steps were run by
/// hand once outside Docker: without the touch cargo kept the placeholder binary; with it only the
/// crate compiled again.
#[test]
fn the_dockerfile_builds_the_dependencies_in_a_layer_of_their_own() {
    let root = Path::new(support::ROOT);
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let deps_copy = dockerfile.find("COPY Cargo.toml Cargo.lock ./").expect("the manifests copied alone");
    let all_copy = dockerfile.find("COPY . .").expect("then the sources");
    assert!(deps_copy < all_copy, "the dependency layer must come before the sources");
    let deps_step = &dockerfile[deps_copy..all_copy];
    assert!(deps_step.contains("cargo build --release --locked --bin offloading-webhook"), "{deps_step}");
    let build_step = &dockerfile[all_copy..];
    assert!(build_step.contains("touch src/main.rs src/lib.rs"), "{build_step}");
    assert!(build_step.contains("strip target/release/offloading-webhook"), "{build_step}");

    // Every target the manifest names has its placeholder (a missing one fails the manifest).
    let out = Command::new("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for target in meta["packages"][0]["targets"].as_array().unwrap() {
        let kind = target["kind"][0].as_str().unwrap();
        let path = target["src_path"].as_str().unwrap();
        let rel = path.strip_prefix(&format!("{}/", support::ROOT)).unwrap_or(path);
        match kind {
            "lib" | "bin" | "bench" => {
                assert!(deps_step.contains(rel), "no placeholder for {kind} {rel} in:\n{deps_step}");
            }
            // Found by cargo in directories .dockerignore leaves out; never named in the manifest.
            "example" | "test" => {
                assert!(
                    !manifest.contains(&format!("[[{kind}]]")),
                    "Cargo.toml names a {kind}: add it to the Dockerfile"
                )
            }
            _ => {}
        }
    }
    let ignored = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    for needed in ["src", "benches", "Cargo.toml", "Cargo.lock"] {
        assert!(!ignored.lines().any(|l| l.trim() == needed), ".dockerignore leaves out {needed}");
    }
}

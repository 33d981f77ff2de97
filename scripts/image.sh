#!/usr/bin/env bash
# The container image, without a container daemon: the binary built static (glibc, crt-static),
# a root filesystem of that binary and an /etc/passwd naming the non-root user, and an OCI image
# layout written by tests/go/tools/oci-layout (go-containerregistry). Load it with e.g.
# `skopeo copy oci:target/image/oci:offloading-webhook:0.1.0 docker://REGISTRY/offloading-webhook:0.1.0`
# or `crane push target/image/oci REGISTRY/offloading-webhook:0.1.0`. The Dockerfile builds the
# same for those who have Docker.
#
# Usage: scripts/image.sh      -> prints the layout directory (target/image/oci) on stdout
# Env:   IMAGE_REF             name:tag recorded in the layout (default offloading-webhook:<version>)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
ref=${IMAGE_REF:-offloading-webhook:$version}
target=x86_64-unknown-linux-gnu
out=target/image

echo "image.sh: building the static binary (release, $target, crt-static)" >&2
start=$(date +%s)
# --target keeps RUSTFLAGS off build scripts and proc macros, and the output in its own directory.
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target" --bin offloading-webhook >&2
bin=target/$target/release/offloading-webhook
# ldd names the libraries a dynamic binary needs ("libc.so.6 => ..."); a static one needs none.
if LC_ALL=C ldd "$bin" 2>&1 | grep -q '=>'; then
  echo "image.sh: $bin is dynamically linked; the image has no libc to load it" >&2
  exit 1
fi
echo "image.sh: binary built in $(( $(date +%s) - start ))s" >&2

rm -rf "$out"
mkdir -p "$out/rootfs/usr/local/bin" "$out/rootfs/etc" "$out/rootfs/tmp"
cp "$bin" "$out/rootfs/usr/local/bin/offloading-webhook"
strip "$out/rootfs/usr/local/bin/offloading-webhook" 2>/dev/null || true
# The user the chart runs as (65532, distroless' "nonroot"), named for tools that look it up.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$out/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$out/rootfs/etc/group"
chmod 1777 "$out/rootfs/tmp"
# Same files, same bytes: sorted, owned by root, dated at the epoch.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$out/rootfs" -cf "$out/rootfs.tar" .
tools=$(tests/go/tools/build.sh oci-layout)
"$tools/oci-layout" -rootfs "$out/rootfs.tar" -out "$out/oci" -ref "$ref" \
  -entrypoint /usr/local/bin/offloading-webhook -user 65532:65532
rm -rf "$out/rootfs" "$out/rootfs.tar"
echo "image.sh: $ref written to $out/oci ($(du -sh "$out/oci" | cut -f1))" >&2
echo "$PWD/$out/oci"

#!/usr/bin/env bash
# Sandbox overhead per RUN step: 100 runs (or $1) of /bin/true in a busybox rootfs through
# oxkit's NamespaceSandbox, against a direct spawn and util-linux `unshare ... chroot`.
# Needs root (as CI has) and busybox-static (./scripts/install-deps).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/rootfs/bin" "$tmp/rootfs/etc"
cp /bin/busybox "$tmp/rootfs/bin/busybox"
for a in $(/bin/busybox --list-full); do
  case $a in bin/busybox) ;; *) mkdir -p "$tmp/rootfs/$(dirname "$a")"; ln -sf /bin/busybox "$tmp/rootfs/$a" ;; esac
done
cargo build --release -q -p oxkit-sandbox --example sandbox_bench
target=${CARGO_TARGET_DIR:-target}
"$target/release/examples/sandbox_bench" "$tmp/rootfs" "$runs"

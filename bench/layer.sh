#!/usr/bin/env bash
# Layer creation speed: oxkit's layer_from_dir against GNU tar piped into gzip/zstd on the
# same tree, in the same run. Prints seconds and the oxkit/peer ratio (below 1 is faster).
#   bench/layer.sh [DIR]        (default /usr/share; run twice to warm the page cache)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/usr/share}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release -p oxkit-store --example layer_bench
bench=$CARGO_TARGET_DIR/release/examples/layer_bench
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
secs() { local s; s=$(date +%s.%N); "$@" >/dev/null; echo "$(date +%s.%N) - $s" | bc; }
tar -cf - -C "$dir" . >/dev/null 2>&1 || true   # warm the page cache
for c in none gzip zstd; do
  ox=$(secs "$bench" "$dir" "$c" "$store/s")
  case $c in
    none) peer=$(secs sh -c "tar --sort=name --numeric-owner -cf - -C '$dir' . 2>/dev/null | sha256sum") ;;
    gzip) peer=$(secs sh -c "tar --sort=name --numeric-owner -cf - -C '$dir' . 2>/dev/null | gzip -6 | sha256sum") ;;
    zstd) peer=$(secs sh -c "tar --sort=name --numeric-owner -cf - -C '$dir' . 2>/dev/null | zstd -3 -q | sha256sum") ;;
  esac
  printf '%-5s oxkit %6.2fs   tar|%-6s %6.2fs   ratio %.2f\n' "$c" "$ox" "$c" "$peer" "$(echo "$ox / $peer" | bc -l)"
done

#!/usr/bin/env bash
# `kernel+squashfs`: `oxkit build -f kernel+squashfs` against what LinuxKit does for it, in the
# same run: the file system as a tar (`oxkit build -f tar`), extracted, then `mksquashfs` of
# the tree without `boot/` (gzip, 128 KiB blocks: the defaults oxkit writes too; LinuxKit's
# mkimage-squashfs runs mksquashfs on the extracted tar the same way), plus the kernel and
# command line copied out. mksquashfs runs on all cores; oxkit compresses on one. Also prints
# both image sizes (mksquashfs deduplicates identical files, oxkit does not). Medians of RUNS.
#   bench/squashfs.sh [MB] [RUNS]   (default 100 MB, 5 runs; needs squashfs-tools)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
total_mb=${1:-100}
runs=${2:-5}
command -v mksquashfs >/dev/null || { echo "squashfs.sh needs mksquashfs (apt-get install squashfs-tools)" >&2; exit 1; }
build_oxkit
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OXKIT_STORE=$work/store
unset SOURCE_DATE_EPOCH

bench_system "$work" "$total_mb"

ours() { "$ox" -q build -f kernel+squashfs --dir "$work/ox" "$work/bench.yml"; }
tools() {
  local d=$work/tools
  rm -rf "$d" && mkdir -p "$d/root"
  "$ox" -q build -o "$d/bench.tar" "$work/bench.yml"
  tar --numeric-owner -xf "$d/bench.tar" -C "$d/root"
  cp "$d/root/boot/kernel" "$d/bench-kernel"
  cp "$d/root/boot/cmdline" "$d/bench-cmdline"
  rm -rf "$d/root/boot"/*
  mksquashfs "$d/root" "$d/bench-squashfs.img" -comp gzip -noappend -quiet -no-progress >/dev/null
}
race "$runs" "$work"
printf 'images %d MB, %d runs, %d cores\n' "$total_mb" "$runs" "$(nproc)"
printf 'oxkit build -f tar, tar -x, mksquashfs   %6.2fs  (image %d bytes)\n' "$t" \
  "$(stat -c %s "$work/tools/bench-squashfs.img")"
printf 'oxkit build -f kernel+squashfs           %6.2fs  (image %d bytes)  ratio %.2f (target <= 1.0)\n' \
  "$o" "$(stat -c %s "$work/ox/bench-squashfs.img")" "$(echo "$o / $t" | bc -l)"

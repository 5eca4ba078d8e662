#!/usr/bin/env bash
# The root file system image outputs: `oxkit build -f kernel+squashfs,kernel+erofs,kernel+iso`
# against what LinuxKit does for them, in the same run: the file system as a tar (`oxkit build
# -f tar`), extracted, then `mksquashfs`, `mkfs.erofs` and `genisoimage` of the tree without
# `boot/*` with the options LinuxKit's mkimage-squashfs, mkimage-erofs and mkimage-iso give
# them (gzip and 128 KiB blocks; uncompressed with 4 KiB blocks; `-l -J -R -joliet-long`: what
# oxkit writes too), plus the kernel and command line copied out. Both compress SquashFS
# blocks on all cores. Also prints the image sizes. Medians of RUNS.
#   bench/rootfs-images.sh [MB] [RUNS]   (default 100 MB, 5 runs; needs squashfs-tools,
#       erofs-utils, genisoimage)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
total_mb=${1:-100}
runs=${2:-5}
for t in mksquashfs:squashfs-tools mkfs.erofs:erofs-utils genisoimage:genisoimage; do
  command -v "${t%%:*}" >/dev/null || { echo "rootfs-images.sh needs ${t%%:*} (apt-get install ${t#*:})" >&2; exit 1; }
done
build_oxkit
bench_workdir

bench_system "$work" "$total_mb"

ours() { "$ox" -q build -f kernel+squashfs,kernel+erofs,kernel+iso --dir "$work/ox" "$work/bench.yml"; }
tools() {
  local d=$work/tools
  rm -rf "$d" && mkdir -p "$d/root"
  "$ox" -q build -o "$d/bench.tar" "$work/bench.yml"
  tar --numeric-owner -xf "$d/bench.tar" -C "$d/root"
  cp "$d/root/boot/kernel" "$d/bench-kernel"
  cp "$d/root/boot/cmdline" "$d/bench-cmdline"
  rm -rf "$d/root/boot"/*
  mksquashfs "$d/root" "$d/bench-squashfs.img" -comp gzip -noappend -quiet -no-progress >/dev/null
  mkfs.erofs --quiet "$d/bench-erofs.img" "$d/root" >/dev/null
  genisoimage -quiet -o "$d/bench.iso" -l -J -R -joliet-long -input-charset utf8 -V LinuxKit "$d/root"
}
race "$runs" "$work"
size() { stat -c %s "$1"; }
printf 'images %d MB, %d runs, %d cores\n' "$total_mb" "$runs" "$(nproc)"
printf 'oxkit build -f tar, tar -x, mksquashfs, mkfs.erofs, genisoimage   %6.2fs  (squashfs %d, erofs %d, iso %d bytes)\n' \
  "$t" "$(size "$work/tools/bench-squashfs.img")" "$(size "$work/tools/bench-erofs.img")" "$(size "$work/tools/bench.iso")"
printf 'oxkit build -f kernel+squashfs,kernel+erofs,kernel+iso          %6.2fs  (squashfs %d, erofs %d, iso %d bytes)  ratio %.2f (target <= 1.0)\n' \
  "$o" "$(size "$work/ox/bench-squashfs.img")" "$(size "$work/ox/bench-erofs.img")" "$(size "$work/ox/bench.iso")" "$(echo "$o / $t" | bc -l)"

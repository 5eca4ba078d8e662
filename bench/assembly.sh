#!/usr/bin/env bash
# Image assembly: `oxkit build -f kernel+initrd` from images totalling about 200 MB, against
# the physical baseline in the same run: `cpio -o -H newc` of the already-extracted tree
# (the same files, boot/ left out as the initrd leaves it out) piped to `gzip -6`.
# Prints both times and their ratio (below 1 is faster), oxkit's peak RSS, and the time of a
# second build with nothing changed (the up-to-date shortcut).
#   bench/assembly.sh [MB]      (default 200; needs GNU cpio, gzip, /usr/bin/time)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
total_mb=${1:-200}
build_oxkit
bench_workdir


# Real-world content: Python's library, shared data, shared libraries; a kernel that does not
# compress (like a real bzImage) and a modules tarball that does.
part=$((total_mb / 10))
fill "$work/init" $((part * 3)) /usr/lib/python3*
fill "$work/svc1" $((part * 3)) /usr/share
fill "$work/svc2" $((part * 3)) /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib
fill "$work/modules" $((part / 2)) /usr/lib/gcc /usr/lib
mkdir -p "$work/kernel"
head -c $((part / 2 * 1024 * 1024)) /dev/urandom >"$work/kernel/kernel"
tar -C "$work/modules" -cf "$work/kernel/kernel.tar" .
for i in init svc1 svc2 kernel; do
  "$ox" -q image import "$work/$i" "bench/$i:1" >/dev/null
done
cat >"$work/bench.yml" <<EOF
kernel:
  image: bench/kernel:1
  cmdline: console=ttyS0
init:
  - bench/init:1
onboot:
  - name: one
    image: bench/svc1:1
services:
  - name: two
    image: bench/svc2:1
EOF
input_mb=$(du -sm "$work/init" "$work/svc1" "$work/svc2" "$work/kernel" | awk '{s += $1} END {print s}')

# The tree the initrd holds, extracted, for the baseline (and to warm the page cache).
"$ox" -q build -o "$work/tree.tar" "$work/bench.yml"
mkdir -p "$work/tree"
tar -C "$work/tree" -xf "$work/tree.tar"
rm -rf "$work/tree/boot"/* "$work/tree.tar"

baseline() {
  (cd "$work/tree" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -6 >"$work/baseline.gz")
}
ours() {
  rm -rf "$work/out"
  /usr/bin/time -v -o "$work/time.txt" "$ox" -q build --dir "$work/out" "$work/bench.yml"
}
base_s=$(secs baseline)
ox_s=$(secs ours)
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
again_s=$(secs "$ox" -q build --dir "$work/out" "$work/bench.yml")
initrd_mb=$(du -m "$work/out/bench-initrd.img" | cut -f1)
base_mb=$(du -m "$work/baseline.gz" | cut -f1)
tree_mb=$(du -sm "$work/tree" | cut -f1)

printf 'images %d MB (tree %d MB) on %d cores\n' "$input_mb" "$tree_mb" "$(nproc)"
printf 'cpio|gzip -6  %6.2fs  (%d MB)\n' "$base_s" "$base_mb"
printf 'oxkit build   %6.2fs  (%d MB)   ratio %.2f (target <= 1.0)\n' "$ox_s" "$initrd_mb" "$(echo "$ox_s / $base_s" | bc -l)"
printf 'peak RSS      %6.1f MiB (target < 150)\n' "$(echo "$rss_kb / 1024" | bc -l)"
printf 'rebuild       %6.3fs (nothing changed; target < 1)\n' "$again_s"

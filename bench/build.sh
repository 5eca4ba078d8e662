#!/bin/sh
# Benchmarks `oxkit pkg build` against `buildah bud` (vfs storage, chroot isolation, runc) in the
# same run, and prints ratios:
#   1. cold build of examples/packages/multistage (empty caches)    target: oxkit <= 0.5x buildah
#   2. rebuild with nothing changed                                  target: < 0.1 s and <= 0.05x buildah
#   3. peak RSS of a build that COPYs a 1 GiB tree                    target: < 200 MiB
#   4. 20 `RUN true` steps: oxkit's time per step beyond the command  target: < 20 ms
# Needs root (RUN steps, buildah), buildah, runc, hyperfine, python3, GNU time (/usr/bin/time).
# Usage: bench/build.sh [RUNS]   (RUNS defaults to 5)
set -eu
RUNS=${1:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release -q -p oxkit --manifest-path "$ROOT/Cargo.toml"
OXKIT=$TARGET/release/oxkit
for tool in buildah hyperfine python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/install-deps" >&2; exit 1; }
done
W=$(mktemp -d /tmp/oxkit-bench-build.XXXXXX)
trap 'rm -rf "$W"' EXIT
BUILDAH="buildah --storage-driver vfs --root $W/bh-root --runroot $W/bh-run"
BUD="bud --isolation chroot --runtime /usr/sbin/runc"

# A busybox base, in an oxkit store and as an OCI archive for buildah.
mkdir -p "$W/rootfs/bin" "$W/rootfs/etc" "$W/rootfs/tmp"
cp /bin/busybox "$W/rootfs/bin/busybox"
for a in $(/bin/busybox --list-full); do
    [ "$a" = bin/busybox ] && continue
    mkdir -p "$W/rootfs/$(dirname "$a")"
    ln -sf /bin/busybox "$W/rootfs/$a"
done
"$OXKIT" --store "$W/base-store" -q image import --platform linux/amd64 "$W/rootfs" oxkit/busybox:base >/dev/null
"$OXKIT" --store "$W/base-store" -q cache export oxkit/busybox:base -o "$W/base.tar"

# The example package, outside git (its tag is then its directory's tree id).
cp -r "$ROOT/examples/packages/multistage" "$W/multistage"
mkdir -p "$W/bh-ctx"
cp "$W/multistage/greet.sh" "$W/bh-ctx/"
sed "s|oxkit/busybox:base|oci-archive:$W/base.tar|" "$W/multistage/Dockerfile" > "$W/bh-ctx/Dockerfile"

fresh_store() { rm -rf "$W/store"; cp -a "$W/base-store" "$W/store"; }
fresh_buildah() { rm -rf "$W/bh-root" "$W/bh-run"; }

median() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['results'][0]['median'])" "$1"; }

echo "== 1. cold build of the multi-stage example"
hyperfine -N -r "$RUNS" --export-json "$W/cold-ox.json" --prepare "sh -c 'rm -rf $W/store; cp -a $W/base-store $W/store'" \
    "$OXKIT --store $W/store -q pkg build $W/multistage" >/dev/null
hyperfine -N -r "$RUNS" --export-json "$W/cold-bh.json" --prepare "rm -rf $W/bh-root $W/bh-run" \
    "$BUILDAH $BUD -q -t localhost/ms $W/bh-ctx" >/dev/null
OX_COLD=$(median "$W/cold-ox.json"); BH_COLD=$(median "$W/cold-bh.json")

echo "== 2. rebuild with nothing changed"
fresh_store; "$OXKIT" --store "$W/store" -q pkg build "$W/multistage" >/dev/null
fresh_buildah; $BUILDAH $BUD -q --layers -t localhost/ms "$W/bh-ctx" >/dev/null
hyperfine -N -r "$((RUNS * 4))" --export-json "$W/re-ox.json" "$OXKIT --store $W/store -q pkg build $W/multistage" >/dev/null
hyperfine -N -r "$RUNS" --export-json "$W/re-bh.json" "$BUILDAH $BUD -q --layers -t localhost/ms $W/bh-ctx" >/dev/null
OX_RE=$(median "$W/re-ox.json"); BH_RE=$(median "$W/re-bh.json")

echo "== 3. peak RSS of COPY of a 1 GiB tree"
mkdir -p "$W/big/tree"
i=0
while [ $i -lt 64 ]; do
    mkdir -p "$W/big/tree/d$((i % 8))"
    head -c 16777216 /dev/urandom > "$W/big/tree/d$((i % 8))/f$i"
    i=$((i + 1))
done
printf 'image: big\norg: bench\narches: [amd64]\n' > "$W/big/build.yml"
printf 'FROM scratch\nCOPY tree/ /data/\n' > "$W/big/Dockerfile"
fresh_store
/usr/bin/time -v "$OXKIT" --store "$W/store" -q pkg build "$W/big" 2> "$W/big-time.txt" >/dev/null
RSS_KB=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$W/big-time.txt")
BIG_S=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$W/big-time.txt")

echo "== 4. 20 RUN true steps"
mkdir -p "$W/runs0" "$W/runs20"
printf 'image: runs\norg: bench\narches: [amd64]\n' | tee "$W/runs0/build.yml" > "$W/runs20/build.yml"
printf 'FROM oxkit/busybox:base\nRUN true\n' > "$W/runs0/Dockerfile"
{ echo 'FROM oxkit/busybox:base'; i=0; while [ $i -lt 21 ]; do echo "RUN true # step $i"; i=$((i + 1)); done; } > "$W/runs20/Dockerfile"
hyperfine -N -r "$RUNS" --export-json "$W/r0.json" --prepare "sh -c 'rm -rf $W/store; cp -a $W/base-store $W/store'" \
    "$OXKIT --store $W/store -q pkg build $W/runs0" >/dev/null
hyperfine -N -r "$RUNS" --export-json "$W/r20.json" --prepare "sh -c 'rm -rf $W/store; cp -a $W/base-store $W/store'" \
    "$OXKIT --store $W/store -q pkg build $W/runs20" >/dev/null
R0=$(median "$W/r0.json"); R20=$(median "$W/r20.json")

python3 - "$OX_COLD" "$BH_COLD" "$OX_RE" "$BH_RE" "$RSS_KB" "$BIG_S" "$R0" "$R20" <<'EOF'
import sys
ox_cold, bh_cold, ox_re, bh_re, rss_kb, big_s, r0, r20 = sys.argv[1:]
ox_cold, bh_cold, ox_re, bh_re, r0, r20 = map(float, (ox_cold, bh_cold, ox_re, bh_re, r0, r20))
rss = int(rss_kb) / 1024
per_step = (r20 - r0) / 20 * 1000
def verdict(ok): return "ok" if ok else "MISSED"
print()
print(f"1. cold multi-stage build: oxkit {ox_cold:.3f}s, buildah {bh_cold:.3f}s, ratio {ox_cold / bh_cold:.3f} (target <= 0.5) {verdict(ox_cold <= 0.5 * bh_cold)}")
print(f"2. rebuild, nothing changed: oxkit {ox_re * 1000:.1f}ms, buildah {bh_re:.3f}s, ratio {ox_re / bh_re:.4f} (target < 0.1s and <= 0.05) {verdict(ox_re < 0.1 and ox_re <= 0.05 * bh_re)}")
print(f"3. COPY of a 1 GiB tree: peak RSS {rss:.1f} MiB in {big_s} (target < 200 MiB) {verdict(rss < 200)}")
print(f"4. RUN true: {per_step:.1f} ms per step including the sandboxed run (target < 20 ms) {verdict(per_step < 20)}")
EOF

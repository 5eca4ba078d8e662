#!/usr/bin/env bash
# An image's file system as one tar: `oxkit cache export --format filesystem` (LinuxKit's
# `cache export --format filesystem`) against what one does without it, in the same run: `umoci
# raw unpack` of the same image from the store (an OCI layout) and `tar -c` of the result. The
# image has three layers over about MB megabytes of real files, some of them deleted or replaced
# by the upper layers. Warm page cache; medians of RUNS and their ratio (below 1 is faster).
#   bench/export.sh [MB] [RUNS]   (default 200 MB, 5 runs; needs umoci, GNU tar, busybox-static)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
total_mb=${1:-200}
runs=${2:-5}
command -v umoci >/dev/null || { echo "export.sh needs umoci (apt-get install umoci)" >&2; exit 1; }
build_oxkit
bench_workdir

# Three layers: a base, a second one over different files, and a third that deletes a tenth of
# the base's files and rewrites another tenth (whiteouts and replacements to apply).
fill "$work/base" $((total_mb * 6 / 10)) /usr/share
fill "$work/more" $((total_mb * 3 / 10)) /usr/lib/x86_64-linux-gnu /usr/lib
# busybox-static, for the RUN step.
mkdir -p "$work/base/bin"
cp "$(command -v busybox)" "$work/base/bin/busybox"
for a in sh find sort awk xargs rm; do ln -sf busybox "$work/base/bin/$a"; done
"$ox" -q image import --platform "linux/$(dpkg --print-architecture)" "$work/base" bench/base:1 >/dev/null
mkdir -p "$work/pkg"
printf 'image: fs\norg: bench\narches: [%s]\n' "$(dpkg --print-architecture)" >"$work/pkg/build.yml"
cp -a "$work/more" "$work/pkg/more"
cat >"$work/pkg/Dockerfile" <<'DF'
FROM bench/base:1
COPY more/ /more/
RUN find / -xdev -type f -path '/usr/share/*' | sort | awk 'NR % 10 == 0' | xargs -r rm -f && \
    find / -xdev -type f -path '/usr/share/*' | sort | awk 'NR % 10 == 5' | while read -r f; do echo x >> "$f"; done
DF
"$ox" -q pkg --hash b1 build "$work/pkg" >/dev/null
image=bench/fs:b1

ours() { "$ox" -q cache export --format filesystem -o "$work/ours.tar" "$image"; }
tools() {
  rm -rf "$work/bundle"
  umoci raw unpack --rootless --image "$OXKIT_STORE:docker.io/$image" "$work/bundle" 2>/dev/null
  tar -C "$work/bundle" -cf "$work/tools.tar" .
}
race "$runs" "$work"
entries=$(tar -tf "$work/ours.tar" | wc -l)
printf 'image %d MB in 3 layers, %d entries, %d runs, %d cores\n' "$total_mb" "$entries" "$runs" "$(nproc)"
printf 'umoci raw unpack + tar -c               %6.2fs\n' "$t"
printf 'oxkit cache export --format filesystem  %6.2fs  ratio %.2f (target <= 1.0)\n' "$o" "$(echo "$o / $t" | bc -l)"

#!/usr/bin/env bash
# Boot of examples/minimal.yml (oxkit-init as PID 1, one onboot container, two services) under
# QEMU/TCG, against the physical baseline in the same run: the same kernel with a busybox
# initrd whose /init is a shell script printing one line (no init at all, no containers).
# Prints, as medians over RUNS boots: QEMU start -> first onboot line, QEMU start -> power-off,
# the ratio to the baseline; the size of the init binary; the size of the minimal initrd with
# and without the kernel's modules (compressed and not); and, as context (not a measurement of
# LinuxKit), the size of the programs LinuxKit's minimal image needs for the same job
# (linuxkit/init + runc + containerd), from Debian's builds of runc and containerd.
#   bench/boot.sh [RUNS]        (default 5; needs qemu-system-x86, busybox-static, cpio, git, apt)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
root=$PWD
runs=${1:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
case $CARGO_TARGET_DIR in /*) ;; *) CARGO_TARGET_DIR=$root/$CARGO_TARGET_DIR ;; esac
cargo build --quiet --release --locked -p oxkit
ox=$CARGO_TARGET_DIR/release/oxkit
init_bin=$(scripts/build-init.sh 2>/dev/null | tail -n 1 | cut -d' ' -f1)
bench_workdir

# The packages in a committed repository of their own (their tags come from git; the working
# tree may hold uncommitted edits), with the git-ignored inputs added afterwards.
repo=$work/repo
mkdir -p "$repo/examples/packages" "$repo/crates"
for p in kernel init onboot-hello ticker poweroff; do
  cp -a "examples/packages/$p" "$repo/examples/packages/"
  rm -rf "$repo/examples/packages/$p/debs" "$repo/examples/packages/$p/bin"
done
cp examples/minimal.yml "$repo/examples/"
cp -a crates/init "$repo/crates/"
git -C "$repo" init -q
git -C "$repo" add -A
git -C "$repo" -c user.name=bench -c user.email=bench@oxkit.invalid -c commit.gpgsign=false \
  commit -q -m bench
scripts/fetch-kernel.sh --deb amd64 "$repo/examples/packages/kernel/debs" >/dev/null
mkdir -p "$repo/examples/packages/init/bin/amd64"
cp "$init_bin" "$repo/examples/packages/init/bin/amd64/oxkit-init"

bb=$work/busybox
mkdir -p "$bb"/{bin,sbin,usr/bin,usr/sbin,tmp,etc,root}
cp "$(command -v busybox)" "$bb/bin/busybox"
for a in $("$bb/bin/busybox" --list-full); do
  [ "$a" = bin/busybox ] || ln -sf /bin/busybox "$bb/$a"
done
"$ox" -q image import --platform linux/amd64 --env PATH=/usr/sbin:/usr/bin:/sbin:/bin "$bb" busybox:latest >/dev/null
(cd "$repo/examples/packages" && "$ox" -q pkg build --platforms linux/amd64 kernel init onboot-hello ticker poweroff >/dev/null)

# minimal.yml as is (no modules), and with the kernel package's whole kernel.tar.
out=$work/out
"$ox" -q build --dir "$out" "$repo/examples/minimal.yml"
(cd "$repo/examples" && sed '/^  tar: none$/d' minimal.yml |
  "$ox" -q build --name modules --dir "$out" -)

# The baseline: the same kernel, busybox as the initrd, /init a script printing one line.
cp "$out/minimal-kernel" "$out/baseline-kernel"
cp "$out/minimal-cmdline" "$out/baseline-cmdline"
mkdir -p "$bb"/{proc,dev,sys}
cat >"$bb/init" <<'EOF'
#!/bin/sh
/bin/busybox mount -t proc proc /proc
echo "000-hello: hello from the baseline /init"
/bin/busybox poweroff -f
EOF
chmod 0755 "$bb/init"
(cd "$bb" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6 -n >"$out/baseline-initrd.img")

# One boot: prints "SECONDS_TO_LINE SECONDS_TO_POWER_OFF", or fails. The console is read as
# it comes (lastpipe: the loop runs in this shell); the status is written before the pipe ends.
shopt -s lastpipe
boot_once() {
  local name=$1 start first= line
  start=$EPOCHREALTIME
  { "$ox" -q run qemu --timeout 2m "$out/$name" 2>"$work/stderr" </dev/null; echo "exit=$?" >"$work/status"; } |
    while IFS= read -r line; do
      if [ -z "$first" ] && [[ $line == *"000-hello: hello from"* ]]; then
        first=$(echo "$EPOCHREALTIME - $start" | bc)
      fi
    done
  grep -qx "exit=0" "$work/status" || { cat "$work/stderr" >&2; echo "bench: $name did not power off" >&2; exit 1; }
  [ -n "$first" ] || { echo "bench: $name printed no onboot line" >&2; exit 1; }
  echo "$first $(echo "$EPOCHREALTIME - $start" | bc)"
}

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

declare -A line_t off_t
for name in baseline minimal modules; do
  : >"$work/$name.times"
  for _ in $(seq "$runs"); do boot_once "$name" >>"$work/$name.times"; done
  line_t[$name]=$(cut -d' ' -f1 "$work/$name.times" | median)
  off_t[$name]=$(cut -d' ' -f2 "$work/$name.times" | median)
done

size() { stat -c %s "$1"; }
unpacked() { zcat "$1" | wc -c; }
mb() { printf "%.2f" "$(echo "scale=4; $1 / 1048576" | bc)"; }

printf 'boot under TCG on %d cores (load %s), median of %d; QEMU start -> onboot line, -> power-off\n' \
  "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)" "$runs"
printf '  baseline (busybox /init script)   %6.2fs   %6.2fs\n' "${line_t[baseline]}" "${off_t[baseline]}"
for name in minimal modules; do
  printf '  %-32s  %6.2fs   %6.2fs   onboot line %.2fx baseline\n' \
    "$name$([ "$name" = modules ] && echo ' (all kernel modules)' || echo ' (oxkit-init, no modules)')" \
    "${line_t[$name]}" "${off_t[$name]}" "$(echo "${line_t[$name]} / ${line_t[baseline]}" | bc -l)"
done
echo "  (power-off includes the poweroff service's 5 s delay; the baseline powers off at once)"
printf 'init binary %s: %s MB (%s MB gzip'"'"'d)\n' "$init_bin" "$(mb "$(size "$init_bin")")" \
  "$(mb "$(gzip -6 -c "$init_bin" | wc -c)")"
for name in minimal modules; do
  printf 'initrd %-8s %7s MB gzip'"'"'d, %7s MB unpacked\n' "$name" \
    "$(mb "$(size "$out/$name-initrd.img")")" "$(mb "$(unpacked "$out/$name-initrd.img")")"
done
printf 'kernel %s MB (not in the initrd)\n' "$(mb "$(size "$out/minimal-kernel")")"

# Context: LinuxKit's minimal.yml puts linuxkit/init (Go init, rc.init, service), runc and
# containerd (containerd, ctr, containerd-shim-runc-v2) in the initrd to do what oxkit-init does.
echo "context, not measured here: the programs LinuxKit's init + runc + containerd packages ship"
if command -v runc >/dev/null; then
  printf '  runc (Debian %s): %s MB\n' "$(dpkg-query -W -f '${Version}' runc 2>/dev/null || echo '?')" \
    "$(mb "$(size "$(readlink -f "$(command -v runc)")")")"
fi
kb=$(apt-cache show containerd 2>/dev/null | sed -n 's/^Installed-Size: //p' | head -n 1)
[ -z "$kb" ] || printf '  Debian containerd package installed size: %s MB (containerd, ctr, shims)\n' "$(mb $((kb * 1024)))"

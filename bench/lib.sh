# Shared by the benchmarks (sourced, not run).

# Copies regular files from SRC... (sorted by path) into DEST until about MB megabytes:
# real-world content of a chosen size.
#   fill DEST MB SRC...
fill() {
  local dest=$1 mb=$2; shift 2
  mkdir -p "$dest"
  { find "$@" -type f -printf '%s\t%p\n' 2>/dev/null || true; } | LC_ALL=C sort -u -t$'\t' -k2 |
    awk -F'\t' -v max=$((mb * 1024 * 1024)) '!done { if (sum + $1 > max) done = 1; else { sum += $1; print $2 } }' \
      >"$dest.list"
  tar -cf - -T "$dest.list" 2>/dev/null | tar -xf - -C "$dest"
}

# Seconds a command takes (wall clock).
secs() { local s; s=$(date +%s.%N); "$@"; echo "$(date +%s.%N) - $s" | bc; }

# The median of the numbers on standard input, one per line.
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# Builds the release binary (in CARGO_TARGET_DIR, else target/) and sets $ox to its path.
build_oxkit() {
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
  cargo build --quiet --release -p oxkit
  case $CARGO_TARGET_DIR in /*) ox=$CARGO_TARGET_DIR/release/oxkit ;; *) ox=$PWD/$CARGO_TARGET_DIR/release/oxkit ;; esac
}

# Sets `work` to a new scratch directory, removed on exit, with the store (OXKIT_STORE) in it;
# unsets SOURCE_DATE_EPOCH so that runs do not depend on the caller's.
bench_workdir() {
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  export OXKIT_STORE=$work/store
  unset SOURCE_DATE_EPOCH
}

# A system for the image-format benchmarks in WORK: an 8 MB kernel that does not compress
# (like a real bzImage) and two services of about MB/2 megabytes of real files each, imported
# into the store ($OXKIT_STORE), and WORK/bench.yml naming them.
#   bench_system WORK MB
bench_system() {
  local work=$1 part=$(($2 / 2)) i
  fill "$work/svc1" "$part" /usr/share
  fill "$work/svc2" "$part" /usr/lib/x86_64-linux-gnu /usr/lib
  mkdir -p "$work/kernel"
  head -c $((8 * 1024 * 1024)) /dev/urandom >"$work/kernel/kernel"
  tar -C "$work/svc1" -cf "$work/kernel/kernel.tar" --files-from /dev/null
  for i in svc1 svc2 kernel; do "$ox" -q image import "$work/$i" "bench/$i:1" >/dev/null; done
  cat >"$work/bench.yml" <<YML
kernel:
  image: bench/kernel:1
  cmdline: console=ttyS0
onboot:
  - name: one
    image: bench/svc1:1
services:
  - name: two
    image: bench/svc2:1
YML
}

# Times the caller's functions `ours` and `tools`, after one warm-up run of each (the page
# cache, the store), RUNS times each, interleaved; removes WORK/ox before each run of `ours`.
# Sets o and t to their median seconds.
#   race RUNS WORK
race() {
  local runs=$1 work=$2
  ours
  tools
  : >"$work/t.ours"
  : >"$work/t.tools"
  for _ in $(seq "$runs"); do
    rm -rf "$work/ox"
    secs ours >>"$work/t.ours"
    secs tools >>"$work/t.tools"
  done
  o=$(median <"$work/t.ours")
  t=$(median <"$work/t.tools")
}

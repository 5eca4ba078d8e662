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

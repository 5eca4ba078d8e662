#!/usr/bin/env bash
# Benchmark `oxkit pkg show-tag` against the git CLI doing the same work.
#
# Builds a git repository with PKGS packages of FILES files each, then times:
#   oxkit-one   `oxkit pkg show-tag pkg/*`                (one call for every package)
#   oxkit-each  `oxkit pkg show-tag pkg/N`, once per package
#   git         `git rev-parse HEAD:pkg/N` + `git status --porcelain -- pkg/N` per package
#               (the least LinuxKit runs per package; it runs more)
# and prints each against git's total. Targets: oxkit-one <= 1.0x git and under 50 ms.
#
# Usage: bench/show-tag.sh [PKGS] [FILES]      (uses hyperfine when installed)
set -euo pipefail

PKGS=${1:-100}
FILES=${2:-50}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

echo "building oxkit (release)..." >&2
cargo build --release --quiet -p oxkit --manifest-path "$ROOT/Cargo.toml"
OXKIT=$TARGET/release/oxkit

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
REPO=$WORK/repo
mkdir -p "$REPO"
cd "$REPO"
export GIT_CONFIG_NOSYSTEM=1 HOME=$WORK
git init -q
for p in $(seq 1 "$PKGS"); do
  d=pkg/p$p
  mkdir -p "$d/src" "$d/etc"
  printf 'image: p%s\n' "$p" > "$d/build.yml"
  printf 'FROM scratch\nCOPY . /\n' > "$d/Dockerfile"
  for f in $(seq 3 "$FILES"); do
    case $((f % 3)) in
      0) printf 'file %s of package %s\n' "$f" "$p" > "$d/src/f$f.c" ;;
      1) printf 'key%s=value%s\n' "$f" "$p" > "$d/etc/f$f.conf" ;;
      2) printf '#!/bin/sh\necho %s\n' "$f" > "$d/f$f.sh"; chmod +x "$d/f$f.sh" ;;
    esac
  done
done
# Files older than the index, as in a checkout that has been around a while: no racily-clean
# entries, for git or oxkit.
find . -path ./.git -prune -o -exec touch -h -d @1577836800 {} +
git add -A
git -c user.name=b -c user.email=b@example.invalid commit -q -m bench
git status --porcelain >/dev/null

# Correctness first: every tag must be the package's git tree id.
expected=$(for d in pkg/*; do echo "linuxkit/$(basename "$d"):$(git rev-parse "HEAD:$d")"; done)
actual=$("$OXKIT" pkg show-tag pkg/*)
if [ "$expected" != "$actual" ]; then
  echo "oxkit's tags differ from git's tree ids" >&2
  diff <(echo "$expected") <(echo "$actual") | head >&2
  exit 1
fi
echo "$PKGS packages x $FILES files: tags match git rev-parse" >&2

cat > "$WORK/oxkit-one" <<EOF
#!/bin/sh
cd "$REPO" && exec "$OXKIT" pkg show-tag pkg/* >/dev/null
EOF
cat > "$WORK/oxkit-each" <<EOF
#!/bin/sh
cd "$REPO" && for d in pkg/*; do "$OXKIT" pkg show-tag "\$d"; done >/dev/null
EOF
cat > "$WORK/git" <<EOF
#!/bin/sh
cd "$REPO" && for d in pkg/*; do git rev-parse "HEAD:\$d"; git status --porcelain -- "\$d"; done >/dev/null
EOF
chmod +x "$WORK/oxkit-one" "$WORK/oxkit-each" "$WORK/git"

declare -A MEAN_MS
if command -v hyperfine >/dev/null; then
  hyperfine --warmup 3 --min-runs 10 -N --export-csv "$WORK/results.csv" \
    -n oxkit-one "$WORK/oxkit-one" \
    -n oxkit-each "$WORK/oxkit-each" \
    -n git "$WORK/git" >&2
  while IFS=, read -r name mean _; do
    [ "$name" = command ] && continue
    MEAN_MS[$name]=$(awk -v s="$mean" 'BEGIN { printf "%.2f", s * 1000 }')
  done < "$WORK/results.csv"
else
  echo "hyperfine not found: timing 10 runs of each with date" >&2
  for name in oxkit-one oxkit-each git; do
    "$WORK/$name"
    start=$(date +%s%N)
    for _ in $(seq 10); do "$WORK/$name"; done
    end=$(date +%s%N)
    MEAN_MS[$name]=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", (b - a) / 10 / 1e6 }')
  done
fi

git_ms=${MEAN_MS[git]}
printf '\n%-11s %10s %14s\n' command "mean (ms)" "vs git total"
for name in oxkit-one oxkit-each git; do
  ms=${MEAN_MS[$name]}
  printf '%-11s %10s %13sx\n' "$name" "$ms" "$(awk -v a="$ms" -v b="$git_ms" 'BEGIN { printf "%.3f", a / b }')"
done
one=${MEAN_MS[oxkit-one]}
verdict=$(awk -v o="$one" -v g="$git_ms" 'BEGIN { print (o <= g && o < 50) ? "met" : "MISSED" }')
echo "target (oxkit-one <= 1.0x git and < 50 ms): $verdict"

#!/usr/bin/env bash
# Blob upload throughput: oxkit's registry client pushing one large file (chunked PATCH
# uploads cut from the mapped file) against `curl -T` PUTting the same bytes to an upload
# URL of the same registry, in the same run. Each run uses a fresh random file so neither
# side finds the blob already stored. Prints seconds, MB/s and the oxkit/curl throughput
# ratio (target >= 0.80).
#   bench/push.sh [SIZE_MIB] [RUNS] [CHUNK_MIB]     (default 1024 MiB, 3 runs, client default)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1024}
runs=${2:-3}
chunk=${3:-}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release -p oxkit-registry --example push_blob
bench=$CARGO_TARGET_DIR/release/examples/push_blob
work=$(mktemp -d)
while :; do port=$(shuf -i 20000-60000 -n 1); (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break; done
cat > "$work/reg.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$work/reg.yml" >"$work/reg.log" 2>&1 &
reg=$!
trap 'kill $reg 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
host=127.0.0.1:$port
curl_push() { # FILE REPO -> seconds
  local digest loc
  digest=sha256:$(sha256sum "$1" | cut -d' ' -f1)
  loc=$(curl -fsS -X POST -D - -o /dev/null "http://$host/v2/$2/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  case $loc in http*) ;; *) loc="http://$host$loc" ;; esac
  curl -fsS -o /dev/null -w '%{time_total}\n' -T "$1" -H 'Content-Type: application/octet-stream' "$loc&digest=$digest"
}
tot_ox=0; tot_curl=0
for i in $(seq "$runs"); do
  head -c "${size}M" /dev/urandom > "$work/a"; head -c "${size}M" /dev/urandom > "$work/b"
  cat "$work/a" "$work/b" > /dev/null   # both in the page cache
  ox=$("$bench" "$host/bench/oxkit$i" "$work/a" $chunk 2>/dev/null)
  cu=$(curl_push "$work/b" "bench/curl$i")
  printf 'run %d: oxkit %6.2fs %6.0f MB/s   curl %6.2fs %6.0f MB/s\n' "$i" "$ox" \
    "$(echo "$size * 1.048576 / $ox" | bc -l)" "$cu" "$(echo "$size * 1.048576 / $cu" | bc -l)"
  tot_ox=$(echo "$tot_ox + $ox" | bc -l); tot_curl=$(echo "$tot_curl + $cu" | bc -l)
  rm -f "$work/a" "$work/b"
done
printf 'throughput ratio oxkit/curl: %.2f (target >= 0.80)\n' "$(echo "$tot_curl / $tot_ox" | bc -l)"

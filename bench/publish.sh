#!/usr/bin/env bash
# Publishing a package: `oxkit pkg push` of a two-architecture package (an index over two
# images, each MB of real files, different per architecture) against `skopeo copy --all` of
# the same images from an OCI layout, to the same registry, in the same run. The registry is
# started once and warmed up by one push of each kind, as a registry in service is (in a
# freshly started docker-registry, signing's ~22 small requests cost ~68 ms of its CPU instead
# of ~51 ms: it is still growing its heap); it is emptied (its storage removed while it runs:
# it keeps no content in memory) before each push to an empty registry. Its storage is on tmpfs when /dev/shm exists, so that the disk's writeback does
# not add noise.
# Each run does every case once, interleaved; medians over the runs are printed, with ratios:
#   1. push to an empty registry, unsigned:        oxkit / skopeo        (target <= 1.0)
#   2. push again, everything already there:       oxkit / skopeo again  (target <= 0.5),
#      and the blob uploads the registry saw during oxkit's second push (target 0)
#   3. push to an empty registry, signed:          signed / unsigned     (target <= 1.10);
#      an unsigned push and cases a and b are timed in an order rotated each run (position
#      alone moves a push by 4-8% on this machine), c right after them
#      a. with a key unlocked by `oxkit key unlock` (held by the kernel keyring: the signing
#         work alone, as in a session of pushes); also the registry requests each push made
#         (from the registry's access log): signing's share is the difference,
#      b. with an unencrypted PKCS#8 key (the same work, read from a file),
#      c. with cosign's encrypted key decrypted by the push itself (scrypt: ~0.2 s of CPU per
#         process, decrypted while the blobs upload).
#   4. the same signed / unsigned pair over a shaped link (LINK, default 1gbit; LINK=off skips
#      it): the registry in its own network namespace behind a veth pair whose two ends are
#      limited by tc's token bucket filter. On loopback the registry shares the client's CPUs
#      and each of signing's small requests costs it ~2 ms of CPU, so case 3 measures that
#      contention; over a link, as in real use, the network bounds the push. Needs root.
#   bench/publish.sh [MB_PER_ARCH] [RUNS]      (default 64 MB, 15 runs; needs skopeo, openssl)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
mb=${1:-64}
runs=${2:-15}
build_oxkit
work=$(mktemp -d)
reg=
data=$work/data
[ -d /dev/shm ] && [ -w /dev/shm ] && data=$(mktemp -d /dev/shm/oxkit-bench.XXXXXX)
reg2= netns=
trap '[ -n "$reg" ] && kill "$reg" 2>/dev/null; [ -n "$reg2" ] && kill "$reg2" 2>/dev/null; [ -n "$netns" ] && ip netns del "$netns" 2>/dev/null; [ -n "${unlocked:-}" ] && "$ox" -q key lock --key "$work/agent.key" >/dev/null; rm -rf "$work" "$data" "$data-link"' EXIT
export OXKIT_STORE=$work/store HOME=$work/home DOCKER_CONFIG=$work/home/.docker COSIGN_PASSWORD=bench
unset SOURCE_DATE_EPOCH OXKIT_SIGNING_KEY NOTRUST
mkdir -p "$HOME"

while :; do port=$(shuf -i 20000-60000 -n 1); (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break; done
host=127.0.0.1:$port
# Info level: the access log shows every request, so blob uploads can be counted.
cat >"$work/reg.yml" <<YML
version: 0.1
log: {level: info}
storage: {filesystem: {rootdirectory: $data}, delete: {enabled: true}}
http: {addr: $host}
YML
empty_registry() { # the registry, running, with nothing stored
  rm -rf "$data"
  sync  # earlier runs' writes must not be flushed during the next one
  if [ -n "$reg" ] && kill -0 "$reg" 2>/dev/null; then return; fi
  docker-registry serve "$work/reg.yml" >>"$work/reg.log" 2>&1 &
  reg=$!
  for _ in $(seq 100); do curl -fs "http://$host/v2/" >/dev/null && return; sleep 0.05; done
  echo "docker-registry did not start" >&2; exit 1
}
uploads() { grep -c '"POST /v2/[^ ]*/blobs/uploads/' "$work/reg.log" || true; }
requests() { grep -cE '^[0-9.:]+ - .*"(GET|HEAD|POST|PUT|PATCH|DELETE) /v2/' "$work/reg.log" || true; }
now() { date +%s.%N; }

fill "$work/rootfs-amd64" "$mb" /usr/lib/x86_64-linux-gnu /usr/lib
fill "$work/rootfs-arm64" "$mb" /usr/share

# The package: TAG-ARCH images imported into the store (so `pkg push` finds them built), the
# index written by `pkg build`, and the same images as an OCI layout for skopeo.
pkg=$work/pkg/bench
mkdir -p "$pkg"
printf 'image: bench\norg: %s/ox\narches: [amd64, arm64]\n' "$host" >"$pkg/build.yml"
printf 'FROM scratch\n' >"$pkg/Dockerfile"
name=$host/ox/bench:bench
for arch in amd64 arm64; do
  "$ox" -q image import --platform "linux/$arch" "$work/rootfs-$arch" "$name-$arch" >/dev/null
done
"$ox" -q pkg --hash bench build "$pkg" >/dev/null
skopeo copy --quiet --all "oci:$OXKIT_STORE:$name" "oci:$work/layout:bench" >/dev/null
"$ox" key generate --output-key-prefix "$work/ox" >/dev/null
# A second key, unlocked once for the whole bench (as a user does for a session of pushes).
"$ox" key generate --output-key-prefix "$work/agent" >/dev/null
"$ox" -q key unlock --key "$work/agent.key" --timeout 1h >/dev/null && unlocked=1
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/plain.pem" 2>/dev/null

push() { "$ox" -q pkg --hash bench push "$@" "$pkg" >/dev/null; }

# Case 4's link: a network namespace holding the second registry, joined to this one by a veth
# pair shaped in both directions.
link=${LINK:-1gbit}
if [ "$link" != off ] && [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v tc >/dev/null; then
  netns=oxbench$$
  if ip netns add "$netns" 2>/dev/null &&
    ip link add "oxb$$" type veth peer name "oxb$$p" netns "$netns" &&
    ip addr add 10.213.77.1/30 dev "oxb$$" && ip link set "oxb$$" up &&
    ip -n "$netns" addr add 10.213.77.2/30 dev "oxb$$p" && ip -n "$netns" link set "oxb$$p" up &&
    tc qdisc add dev "oxb$$" root tbf rate "$link" burst 256kb latency 50ms &&
    ip netns exec "$netns" tc qdisc add dev "oxb$$p" root tbf rate "$link" burst 256kb latency 50ms; then
    lhost=10.213.77.2:5000
    printf 'version: 0.1\nlog: {level: info}\nstorage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}\nhttp: {addr: %s}\n' \
      "$data-link" "$lhost" >"$work/reg2.yml"
    lpkg=$work/lpkg/bench
    mkdir -p "$lpkg"
    printf 'image: bench\norg: %s/ox\narches: [amd64, arm64]\n' "$lhost" >"$lpkg/build.yml"
    printf 'FROM scratch\n' >"$lpkg/Dockerfile"
    for arch in amd64 arm64; do
      "$ox" -q image import --platform "linux/$arch" "$work/rootfs-$arch" "$lhost/ox/bench:bench-$arch" >/dev/null
    done
    "$ox" -q pkg --hash bench build "$lpkg" >/dev/null
  else
    echo "no shaped link (cannot set up a network namespace and veth pair): case 4 skipped" >&2
    ip netns del "$netns" 2>/dev/null || true
    netns= link=off
  fi
else
  link=off
fi
empty_link_registry() { # the registry behind the link, running, with nothing stored
  rm -rf "$data-link"
  if [ -n "$reg2" ] && kill -0 "$reg2" 2>/dev/null; then return; fi
  ip netns exec "$netns" docker-registry serve "$work/reg2.yml" >>"$work/reg2.log" 2>&1 &
  reg2=$!
  for _ in $(seq 100); do curl -fs "http://$lhost/v2/" >/dev/null && return; sleep 0.05; done
  echo "docker-registry did not start behind the link" >&2; exit 1
}
lpush() { "$ox" -q pkg --hash bench push --insecure-registry "$lhost" "$@" "$lpkg" >/dev/null; }
sk() { skopeo copy --quiet --all --dest-tls-verify=false "oci:$work/layout:bench" "docker://$host/sk/bench:bench" >/dev/null; }

cosign_bin=$(command -v cosign || true)
[ -z "$cosign_bin" ] && [ -x /opt/cosign/usr/bin/cosign ] && cosign_bin=/opt/cosign/usr/bin/cosign
# cosign signs the digests `oxkit --json pkg push` reports; it gets its own HOME and TUF root.
cosign_sign() {
  local refs
  refs=$(python3 -c 'import json,sys; p=json.load(sys.stdin)["packages"][0]; n=p["name"].rsplit(":",1)[0]
print(n+"@"+p["index"]); [print(n+"@"+a["digest"]) for a in p["arches"]]' <"$work/pushed.json")
  # shellcheck disable=SC2086
  HOME=$work/cosign-home TUF_ROOT=$work/cosign-home/tuf "$cosign_bin" sign --key "$work/ox.key" \
    --tlog-upload=false --allow-http-registry -y $refs >/dev/null 2>&1
}

# Its arguments after the first, rotated left by the first (a run number).
rotate() {
  local n=$1; shift
  local k=$((n % $#))
  echo "${@:k+1}" "${@:1:k}"
}
# Seconds between two `now`s.
secs() { echo "$2 - $1" | bc -l; }
# The median of the numbers in a file, one per line.
median() { sort -g "$1" | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
ratio() { echo "$1 / $2" | bc -l; }
# The warm-up: one push of each kind, not measured.
empty_registry
push --no-sign
empty_registry
push --key "$work/plain.pem"
sk
if [ "$link" != off ]; then
  empty_link_registry
  lpush --key "$work/plain.pem"
fi
again_uploads=0
for i in $(seq "$runs"); do
  empty_registry
  r0=$(requests); a=$(now); push --no-sign; b=$(now); r1=$(requests)
  before=$(uploads); c=$(now); push --no-sign; d=$(now); again_uploads=$((again_uploads + $(uploads) - before))
  empty_registry
  e=$(now); sk; f=$(now); sk; g=$(now)
  empty_registry
  # Signing's cost: an unsigned push and the two signed ones doing the same work, in an order
  # rotated each run, so that each kind takes each place equally often. (Whichever push comes
  # first after skopeo's runs 4-8% slower: with a fixed order, swapping the two signed kinds
  # swapped their ratios, 1.10 and 1.05.)
  for kind in $(rotate "$i" unsigned agent plain); do
    empty_registry
    case $kind in
      unsigned) u0=$(now); push --no-sign; u1=$(now); secs "$u0" "$u1" >>"$work/t.u2" ;;
      agent) r2=$(requests); h=$(now); push --key "$work/agent.key"; j=$(now); r3=$(requests) ;;
      plain) k=$(now); push --key "$work/plain.pem"; l=$(now) ;;
    esac
  done
  empty_registry
  m=$(now); push --key "$work/ox.key"; n=$(now)
  cs=0
  if [ -n "$cosign_bin" ]; then
    empty_registry
    o=$(now); "$ox" -q --json pkg --hash bench push --no-sign "$pkg" >"$work/pushed.json"; cosign_sign; q=$(now)
    cs=$(secs "$o" "$q")
  fi
  secs "$a" "$b" >>"$work/t.ox"; secs "$c" "$d" >>"$work/t.ox2"
  secs "$e" "$f" >>"$work/t.sk"; secs "$f" "$g" >>"$work/t.sk2"
  secs "$h" "$j" >>"$work/t.agent"; secs "$k" "$l" >>"$work/t.plain"; secs "$m" "$n" >>"$work/t.enc"
  if [ "$link" != off ]; then
    # The unlocked key when there is one, else the unencrypted one: the signing work alone.
    lkey=$work/plain.pem
    [ -n "${unlocked:-}" ] && lkey=$work/agent.key
    for kind in $(rotate "$i" unsigned signed); do
      empty_link_registry; lp=$(now)
      case $kind in
        unsigned) lpush --no-sign; lq=$(now); secs "$lp" "$lq" >>"$work/t.lu" ;;
        signed) lpush --key "$lkey"; lq=$(now); secs "$lp" "$lq" >>"$work/t.ls" ;;
      esac
    done
  fi
  echo "$cs" >>"$work/t.cos"
  echo $((r1 - r0)) >>"$work/n.unsigned"; echo $((r3 - r2)) >>"$work/n.signed"
  printf 'run %d: empty: oxkit %.3fs skopeo %.3fs | again: oxkit %.3fs skopeo %.3fs | unsigned %.3fs, signed: unlocked key %.3fs, unencrypted key %.3fs, encrypted key %.3fs | push + cosign sign %.3fs\n' \
    "$i" "$(tail -1 "$work/t.ox")" "$(tail -1 "$work/t.sk")" "$(tail -1 "$work/t.ox2")" "$(tail -1 "$work/t.sk2")" \
    "$(tail -1 "$work/t.u2")" "$(tail -1 "$work/t.agent")" "$(tail -1 "$work/t.plain")" "$(tail -1 "$work/t.enc")" "$cs"
done
for t in ox ox2 sk sk2 u2 agent plain enc cos; do declare "m_$t=$(median "$work/t.$t")"; done
printf 'package: 2 architectures x %d MB; medians over %d runs\n' "$mb" "$runs"
printf 'push to an empty registry: oxkit %.3fs, skopeo copy --all %.3fs: ratio %.2f (target <= 1.0)\n' \
  "$m_ox" "$m_sk" "$(ratio "$m_ox" "$m_sk")"
printf 'push again, all there:     oxkit %.3fs, skopeo copy --all %.3fs: ratio %.2f (target <= 0.5); blob uploads during oxkit: %d (target 0)\n' \
  "$m_ox2" "$m_sk2" "$(ratio "$m_ox2" "$m_sk2")" "$again_uploads"
if [ -n "${unlocked:-}" ]; then
  printf 'signing, key unlocked:     signed %.3fs, unsigned %.3fs: ratio %.2f (target <= 1.10)\n' \
    "$m_agent" "$m_u2" "$(ratio "$m_agent" "$m_u2")"
  n_u=$(median "$work/n.unsigned"); n_s=$(median "$work/n.signed")
  printf '  registry requests per push: unsigned %d, signed %d (signing: %d)\n' "$n_u" "$n_s" $((n_s - n_u))
else
  echo 'signing, key unlocked:     not measured (no usable kernel keyring: `oxkit key unlock` failed)'
fi
printf '  with an unencrypted key:  %.3fs: ratio %.2f\n' "$m_plain" "$(ratio "$m_plain" "$m_u2")"
printf '  with an encrypted key the push decrypts itself: %.3fs: ratio %.2f (the difference is scrypt)\n' \
  "$m_enc" "$(ratio "$m_enc" "$m_u2")"
if [ -n "$cosign_bin" ]; then
  printf 'context: unsigned push then cosign sign (same key): %.3fs: ratio %.2f to the unsigned push\n' \
    "$m_cos" "$(ratio "$m_cos" "$m_ox")"
fi
if [ "$link" != off ]; then
  m_lu=$(median "$work/t.lu"); m_ls=$(median "$work/t.ls")
  printf 'over a %s link:          signed %.3fs, unsigned %.3fs: ratio %.2f (target <= 1.10)\n' \
    "$link" "$m_ls" "$m_lu" "$(ratio "$m_ls" "$m_lu")"
fi

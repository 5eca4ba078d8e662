#!/usr/bin/env bash
# Builds oxkit-init, the in-image PID 1, as a static binary (glibc with crt-static: rustup cannot
# fetch the musl target here) with the size-optimised `init` profile, checks that it is static
# (ldd lists no libraries), and prints its path and size. Other architectures need their rustup
# target and a cross linker: `rustup target add aarch64-unknown-linux-gnu` and
# `apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross`.
#   ./scripts/build-init.sh            x86_64 (the host)
#   TARGET=aarch64-unknown-linux-gnu ./scripts/build-init.sh   needs that target installed
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=${TARGET:-x86_64-unknown-linux-gnu}
if [ "$TARGET" = aarch64-unknown-linux-gnu ] && [ -z "${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-}" ]; then
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
fi
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
cargo build --locked -p oxkit-init --profile init --target "$TARGET" >&2

dir=${CARGO_TARGET_DIR:-target}
bin="$dir/$TARGET/init/oxkit-init"
# ldd (libc-bin, always there) says "statically linked" or "not a dynamic executable".
if ldd "$bin" 2>&1 | grep -q "=>"; then
  echo "build-init: $bin is not statically linked:" >&2
  ldd "$bin" >&2
  exit 1
fi
echo "$bin $(stat -c %s "$bin") bytes"

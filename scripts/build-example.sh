#!/usr/bin/env bash
# From a fresh checkout to a booted VM: builds examples/minimal.yml with oxkit alone and boots
# it under QEMU, where oxkit's own init runs an onboot container and two services, then the
# poweroff service turns the machine off (the script exits 0 when it did).
#
#   scripts/build-example.sh [--arch amd64|arm64] [--no-boot] [--out DIR]
#
# Steps: build oxkit (release; or use $OXKIT), build the static init (scripts/build-init.sh)
# and copy it into examples/packages/init/bin/ARCH/, fetch Debian's kernel .deb into
# examples/packages/kernel/debs/ (scripts/fetch-kernel.sh), import Debian's busybox-static as
# busybox:latest, `oxkit pkg build` the five packages, `oxkit build` the image into DIR
# (default: target/example), `oxkit run qemu --timeout 2m DIR/minimal`.
#
# The architecture defaults to the host's (amd64). arm64 on an amd64 host cross-compiles the
# init, which needs `rustup target add aarch64-unknown-linux-gnu` and
# `apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross`; the kernel package's build
# step then runs under qemu-user (binfmt_misc, see `oxkit doctor`).
#
# Environment: OXKIT (an oxkit binary to use instead of building one), OXKIT_STORE (the store;
# default oxkit's, ~/.cache/oxkit), CARGO_TARGET_DIR, OXKIT_KERNEL_CACHE (see fetch-kernel.sh).
# Needs: a Rust toolchain, apt (for the kernel .deb), busybox-static, qemu-system-x86 or
# qemu-system-arm, git; scripts/install-deps installs them. The packages' tags come from git:
# they must be committed (a checkout is; local edits give -dirty tags).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

boot=1
out=
arch=
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=${2:?--arch needs amd64 or arm64}; shift ;;
    --no-boot) boot=0 ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-example: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

step() { printf '\n== %s\n' "$*" >&2; }
die() { echo "build-example: $*" >&2; exit 1; }

host=$(dpkg --print-architecture) || die "dpkg is needed (a Debian or Ubuntu host)"
arch=${arch:-$host}
case "$arch" in
  amd64) triple=x86_64-unknown-linux-gnu ;;
  arm64) triple=aarch64-unknown-linux-gnu ;;
  *) die "unsupported architecture $arch: use amd64 or arm64 (Debian's cloud kernel exists for those)" ;;
esac
target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in /*) ;; *) target_dir=$root/$target_dir ;; esac
out=${out:-$target_dir/example}

if [ -n "${OXKIT:-}" ]; then
  ox=$OXKIT
else
  step "building oxkit"
  cargo build --release --locked -p oxkit
  ox=$target_dir/release/oxkit
fi
[ -x "$ox" ] || die "$ox is not an executable oxkit"

step "building the init for $arch (scripts/build-init.sh)"
if [ "$arch" != "$host" ]; then
  [ -d "$(rustc --print sysroot)/lib/rustlib/$triple" ] ||
    die "the $arch init needs the Rust target: rustup target add $triple"
  if [ "$arch" = arm64 ]; then
    command -v aarch64-linux-gnu-gcc >/dev/null && [ -f /usr/aarch64-linux-gnu/lib/libc.a ] ||
      die "the arm64 init needs a cross linker and static glibc: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  fi
fi
init_bin=$(CARGO_TARGET_DIR=$target_dir TARGET=$triple scripts/build-init.sh | tail -n 1 | cut -d' ' -f1)
mkdir -p "examples/packages/init/bin/$arch"
install -m 0755 "$init_bin" "examples/packages/init/bin/$arch/oxkit-init"

step "fetching the kernel package (scripts/fetch-kernel.sh)"
scripts/fetch-kernel.sh --deb "$arch" examples/packages/kernel/debs >/dev/null

step "importing busybox:latest ($arch) from Debian's busybox-static"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$arch" = "$host" ]; then
  busybox=$(command -v busybox || true)
  [ -n "$busybox" ] || die "busybox is missing: apt-get install busybox-static (or scripts/install-deps)"
  if ldd "$busybox" 2>&1 | grep -q "=>"; then
    die "$busybox is dynamically linked: apt-get install busybox-static"
  fi
else
  apt_opts=(-q)
  # As root apt drops to _apt for downloads, which cannot write into a mktemp directory.
  if [ "$(id -u)" = 0 ]; then apt_opts+=(-o APT::Sandbox::User=root); fi
  (cd "$work" && apt-get "${apt_opts[@]}" download "busybox-static:$arch" >/dev/null) ||
    die "apt-get download busybox-static:$arch failed: dpkg --add-architecture $arch && apt-get update (scripts/install-deps does it)"
  dpkg-deb -x "$work"/busybox-static_*_"$arch".deb "$work/deb"
  busybox=$work/deb/bin/busybox
fi
rootfs=$work/busybox
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,tmp,etc,root}
cp "$busybox" "$rootfs/bin/busybox"
# The applet list of the host's busybox: the same Debian version has the same applets.
for applet in $("$(command -v busybox || echo "$busybox")" --list-full); do
  [ "$applet" = bin/busybox ] || ln -sf /bin/busybox "$rootfs/$applet"
done
"$ox" image import --platform "linux/$arch" --env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  "$rootfs" busybox:latest >/dev/null

step "building the packages (oxkit pkg build)"
"$ox" pkg build --platforms "linux/$arch" examples/packages/kernel examples/packages/init \
  examples/packages/onboot-hello examples/packages/ticker examples/packages/poweroff

step "assembling examples/minimal.yml (oxkit build)"
mkdir -p "$out"
"$ox" build --arch "$arch" --dir "$out" examples/minimal.yml
ls -l "$out"/minimal-* >&2

if [ "$boot" = 1 ]; then
  step "booting $out/minimal on $arch (oxkit run qemu; the guest powers itself off after about 5 s)"
  "$ox" run qemu --arch "$arch" --timeout 2m "$out/minimal"
else
  echo "boot it with: $ox run qemu --arch $arch --timeout 2m $out/minimal" >&2
fi

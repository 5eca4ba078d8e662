#!/usr/bin/env bash
# Fetches Debian 12's cloud kernel (linux-image-6.1.0-*-cloud-<arch>) with apt, without
# installing it, and unpacks it for oxkit:
#
#   scripts/fetch-kernel.sh [--newest] [amd64|arm64] DIR
#       DIR/vmlinuz      the kernel image (boot/vmlinuz-* from the package; bzImage on amd64,
#                        an uncompressed Image on arm64)
#       DIR/kernel.tar   lib/modules/<release>/... as shipped (uncompressed .ko files), plus
#                        modules.dep/.alias/.symbols made by busybox depmod (the .deb has none)
#       DIR/config       the kernel's build configuration (boot/config-*)
#       DIR/VERSION      PACKAGE=, DEBIAN_VERSION=, KERNEL_RELEASE=, ARCH= (shell syntax)
#   scripts/fetch-kernel.sh --deb [--newest] [amd64|arm64] DIR
#       DIR/<package>_<version>_<arch>.deb only: the build context of examples/packages/kernel
#       (DIR = examples/packages/kernel/debs)
#   scripts/fetch-kernel.sh --pin
#       rewrites examples/packages/kernel/VERSION to the newest kernel available for both
#       amd64 and arm64 (this changes the package's content tag)
#
# The version is pinned by examples/packages/kernel/VERSION. If Debian's mirror no longer has
# that exact version (security updates replace kernels), the newest 6.1.0-*-cloud kernel is
# used with a warning; --newest asks for that directly. The architecture defaults to the host's.
#
# Downloads are cached in $OXKIT_KERNEL_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/oxkit/kernel-debs);
# a DIR that already holds the selected kernel is left alone. Concurrent runs are serialised
# with flock, so parallel tests can share DIR. arm64 needs `dpkg --add-architecture arm64 &&
# apt-get update` (scripts/install-deps does it).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
pin_file="$here/../examples/packages/kernel/VERSION"
series="6.1.0"

die() { echo "fetch-kernel: $*" >&2; exit 1; }
warn() { echo "fetch-kernel: warning: $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

mode=unpack newest=0
while [ $# -gt 0 ]; do
  case "$1" in
    --deb) mode=deb ;;
    --newest) newest=1 ;;
    --pin) mode=pin ;;
    -h|--help) usage ;;
    --*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
  shift
done

host_arch=$(dpkg --print-architecture)

# apt spells a foreign-architecture package name:arch.
apt_name() { # PACKAGE ARCH
  if [ "$2" = "$host_arch" ]; then echo "$1"; else echo "$1:$2"; fi
}

# The versions apt knows for PACKAGE:ARCH, one a line.
versions_of() { # PACKAGE ARCH
  apt-cache show "$(apt_name "$1" "$2")" 2>/dev/null | sed -n 's/^Version: //p'
}

# "PACKAGE VERSION" of the newest linux-image-6.1.0-N-cloud-ARCH apt can download.
newest_for() { # ARCH
  local arch=$1 pkg ver
  for pkg in $(apt-cache pkgnames "linux-image-$series-" | grep -E "^linux-image-$series-[0-9]+-cloud-$arch\$" | sort -t- -k4,4nr); do
    ver=$(apt-cache policy "$(apt_name "$pkg" "$arch")" 2>/dev/null | sed -n 's/^ *Candidate: //p')
    if [ -n "$ver" ] && [ "$ver" != "(none)" ]; then
      echo "$pkg $ver"
      return 0
    fi
  done
  return 1
}

read_pin() {
  [ -f "$pin_file" ] || die "$pin_file is missing"
  pin_abi=$(sed -n 's/^KERNEL_ABI=//p' "$pin_file")
  pin_version=$(sed -n 's/^DEBIAN_VERSION=//p' "$pin_file")
  [ -n "$pin_abi" ] && [ -n "$pin_version" ] || die "$pin_file must set KERNEL_ABI= and DEBIAN_VERSION="
}

if [ "$mode" = pin ]; then
  [ $# -eq 0 ] || die "--pin takes no arguments"
  read_pin
  a=$(newest_for amd64) || die "no linux-image-$series-*-cloud-amd64 in apt's lists: run apt-get update"
  b=$(newest_for arm64) || die "no linux-image-$series-*-cloud-arm64 in apt's lists: run scripts/install-deps (adds arm64) and apt-get update"
  abi_a=${a#linux-image-}; abi_a=${abi_a%-cloud-amd64 *}
  abi_b=${b#linux-image-}; abi_b=${abi_b%-cloud-arm64 *}
  [ "$abi_a" = "$abi_b" ] && [ "${a#* }" = "${b#* }" ] ||
    die "amd64 ($a) and arm64 ($b) differ: wait for the mirror to catch up"
  if [ "$abi_a" = "$pin_abi" ] && [ "${a#* }" = "$pin_version" ]; then
    echo "fetch-kernel: $pin_file already names the newest kernel ($abi_a ${a#* })" >&2
    exit 0
  fi
  tmp=$(mktemp "$pin_file.XXXXXX")
  sed -e "s/^KERNEL_ABI=.*/KERNEL_ABI=$abi_a/" -e "s/^DEBIAN_VERSION=.*/DEBIAN_VERSION=${a#* }/" "$pin_file" > "$tmp"
  mv "$tmp" "$pin_file"
  echo "fetch-kernel: $pin_file: $pin_abi $pin_version -> $abi_a ${a#* }" >&2
  exit 0
fi

case $# in
  1) arch=$host_arch; dir=$1 ;;
  2) arch=$1; dir=$2 ;;
  *) usage ;;
esac
case "$arch" in
  amd64|arm64) ;;
  *) die "unsupported architecture '$arch': use amd64 or arm64" ;;
esac

# Choose the package and version.
read_pin
pkg="linux-image-$pin_abi-cloud-$arch"
version=$pin_version
# Already unpacked (the common case in tests): no need to ask apt anything.
if [ "$mode" = unpack ] && [ "$newest" = 0 ] && [ -f "$dir/VERSION" ] && [ -f "$dir/vmlinuz" ] &&
   [ -f "$dir/kernel.tar" ] && [ -f "$dir/config" ] &&
   [ "$(head -n 2 "$dir/VERSION")" = "PACKAGE=$pkg
DEBIAN_VERSION=$version" ]; then
  exit 0
fi
if [ "$newest" = 1 ] || ! versions_of "$pkg" "$arch" | grep -qxF "$version"; then
  choice=$(newest_for "$arch") ||
    die "no linux-image-$series-*-cloud-$arch in apt's lists: run scripts/install-deps (it adds the arm64 architecture) and apt-get update"
  if [ "$newest" = 0 ]; then
    warn "$pkg $version (pinned in examples/packages/kernel/VERSION) is not on the mirror any more; using the newest, ${choice% *} ${choice#* }. Run scripts/fetch-kernel.sh --pin to move the pin."
  fi
  pkg=${choice% *}
  version=${choice#* }
fi
deb_name="${pkg}_${version//:/%3a}_${arch}.deb"

# Download into the cache (once).
cache=${OXKIT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oxkit/kernel-debs}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
exec 8>"$cache/.lock"
flock 8
if [ ! -s "$cache/$deb_name" ]; then
  echo "fetch-kernel: downloading $pkg $version ($arch)" >&2
  apt_opts=(-q)
  # As root apt drops to _apt for downloads, which cannot write into most cache directories.
  if [ "$(id -u)" = 0 ]; then apt_opts+=(-o APT::Sandbox::User=root); fi
  (cd "$cache" && apt-get "${apt_opts[@]}" download "$(apt_name "$pkg" "$arch")=$version" >&2) ||
    die "apt-get download $pkg=$version failed"
  [ -s "$cache/$deb_name" ] || die "apt-get did not produce $cache/$deb_name"
fi
flock -u 8

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
exec 9>"$dir/.fetch-kernel.lock"
flock 9

if [ "$mode" = deb ]; then
  if ! cmp -s "$cache/$deb_name" "$dir/$deb_name"; then
    # Older kernels for this architecture would only confuse the package build.
    rm -f "$dir"/linux-image-*_"$arch".deb
    cp "$cache/$deb_name" "$dir/$deb_name.tmp"
    mv "$dir/$deb_name.tmp" "$dir/$deb_name"
  fi
  echo "$dir/$deb_name"
  exit 0
fi

want="PACKAGE=$pkg
DEBIAN_VERSION=$version"
if [ -f "$dir/VERSION" ] && [ -f "$dir/vmlinuz" ] && [ -f "$dir/kernel.tar" ] && [ -f "$dir/config" ] &&
   [ "$(head -n 2 "$dir/VERSION")" = "$want" ]; then
  exit 0
fi

work=$(mktemp -d "$dir/.unpack.XXXXXX")
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$cache/$deb_name" "$work/root"
releases=$(ls "$work/root/lib/modules")
[ "$(echo "$releases" | wc -l)" = 1 ] || die "$deb_name holds several module trees: $releases"
release=$releases
[ -f "$work/root/boot/vmlinuz-$release" ] || die "$deb_name has no boot/vmlinuz-$release"

# The same module index the package's Dockerfile builds (busybox depmod, sorted lines).
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || die "busybox is needed for depmod: install busybox-static (scripts/install-deps)"
"$busybox" depmod -b "$work/root" "$release"
for f in modules.dep modules.alias modules.symbols; do
  p="$work/root/lib/modules/$release/$f"
  if [ -f "$p" ]; then LC_ALL=C sort -o "$p" "$p"; fi
done

# Reproducible: sorted names, numeric root owners, every mtime the package's build time.
stamp=$(stat -c %Y "$work/root/boot/vmlinuz-$release")
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$stamp" --format=gnu \
    -C "$work/root" -cf "$work/kernel.tar" lib
cp "$work/root/boot/vmlinuz-$release" "$work/vmlinuz"
cp "$work/root/boot/config-$release" "$work/config"
printf '%s\nKERNEL_RELEASE=%s\nARCH=%s\n' "$want" "$release" "$arch" > "$work/VERSION"
for f in vmlinuz kernel.tar config; do mv -f "$work/$f" "$dir/$f"; done
mv -f "$work/VERSION" "$dir/VERSION"   # last: its content says the rest is complete
echo "fetch-kernel: $dir: $pkg $version ($release)" >&2

#!/bin/sh
# Unpacks the Debian kernel package named by VERSION into LinuxKit's kernel image layout, with
# busybox alone (ar, tar -J, depmod, find, sort, touch). The Dockerfile runs it as
# `sh /src/extract.sh /src /out` for each target architecture, in that architecture's busybox.
#
#   SRC/VERSION    KERNEL_ABI= and DEBIAN_VERSION=: the pin (committed; it drives the tag)
#   SRC/debs/      linux-image-<abi>-cloud-<arch>_<version>_<arch>.deb, fetched by
#                  scripts/fetch-kernel.sh --deb <arch> examples/packages/kernel/debs
#   OUT/kernel              boot/vmlinuz-<release> (bzImage on amd64, Image on arm64)
#   OUT/kernel.tar          lib/modules/<release>/... as shipped (uncompressed .ko) plus
#                           modules.dep, modules.alias, modules.symbols (the .deb has none)
#   OUT/kernel-source-info  KERNEL_SOURCE= and KERNEL_RELEASE=
#
# Reproducible: kernel.tar lists its entries sorted, and every file it writes carries the
# mtime of the package's vmlinuz (Debian's build time), so the output depends on the .deb only.
set -eu

src=${1:?usage: extract.sh SRC OUT}
out=${2:?usage: extract.sh SRC OUT}
die() { echo "extract.sh: $*" >&2; exit 1; }

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) die "Debian's cloud kernel exists for amd64 and arm64 only, not $(uname -m)" ;;
esac

abi=$(sed -n 's/^KERNEL_ABI=//p' "$src/VERSION")
version=$(sed -n 's/^DEBIAN_VERSION=//p' "$src/VERSION")
[ -n "$abi" ] && [ -n "$version" ] || die "$src/VERSION must set KERNEL_ABI= and DEBIAN_VERSION="
pkg=linux-image-$abi-cloud-$arch
# apt writes an epoch's ':' as %3a in file names.
deb=$src/debs/${pkg}_$(echo "$version" | sed 's/:/%3a/g')_$arch.deb
[ -f "$deb" ] || die "$deb is missing: run scripts/fetch-kernel.sh --deb $arch examples/packages/kernel/debs before building (VERSION pins $pkg $version)"

work=/tmp/kernel-extract
rm -rf "$work"
mkdir -p "$work/control" "$work/root" "$out"
cd "$work"

# A .deb is an ar archive: debian-binary, control.tar.xz, data.tar.xz.
ar x "$deb"
[ -f data.tar.xz ] && [ -f control.tar.xz ] || die "$deb: expected control.tar.xz and data.tar.xz inside (found: $(ls | tr '\n' ' '))"
tar -xJf control.tar.xz -C control
field() { sed -n "s/^$1: //p" control/control; }
[ "$(field Package)" = "$pkg" ] && [ "$(field Version)" = "$version" ] ||
  die "$deb is $(field Package) $(field Version), not $pkg $version"

tar -xJf data.tar.xz -C root
release=$(ls root/lib/modules)
[ "$(echo "$release" | wc -l)" -eq 1 ] || die "$deb holds several module trees: $release"
vmlinuz=root/boot/vmlinuz-$release
[ -f "$vmlinuz" ] || die "$deb has no boot/vmlinuz-$release"

# The module index modprobe needs (Debian builds it in postinst, so the .deb has none).
# depmod's line order follows the directory order: sort it.
depmod -b root "$release"
for f in modules.dep modules.alias modules.symbols; do
  p=root/lib/modules/$release/$f
  if [ -f "$p" ]; then sort -o "$p" "$p"; fi
done

find root/lib -exec touch -h -r "$vmlinuz" {} +
cd root
entries=$(find lib | sort)
case "$entries" in
  *" "*) die "a module path contains a space; the sorted file list below cannot carry it" ;;
esac
# shellcheck disable=SC2086 # one word per path, checked above
tar -cf "$out/kernel.tar" --no-recursion $entries
cd "$work"

cp "$vmlinuz" "$out/kernel"
printf 'KERNEL_SOURCE=debian:%s=%s\nKERNEL_RELEASE=%s\n' "$pkg" "$version" "$release" > "$out/kernel-source-info"
touch -r "$vmlinuz" "$out/kernel" "$out/kernel.tar" "$out/kernel-source-info"
cd /
rm -rf "$work"

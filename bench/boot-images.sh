#!/usr/bin/env bash
# The bootable image outputs: `oxkit build -f raw-efi,iso-efi,qcow2-efi,iso-bios,raw-bios,
# qcow2-bios,vhd,vmdk,aws,gcp` against the standard tools doing the same job after `oxkit build -f kernel+initrd` in the same run:
# systemd's documented way to make a unified kernel image (`objcopy --add-section` onto the EFI
# stub); `sgdisk`, `mkfs.vfat --offset` and `mcopy` for the GPT disk and its EFI system
# partition; `mkfs.vfat`, `mcopy` and `xorriso -as mkisofs -e` for the ISO's El Torito UEFI boot
# image; `qemu-img convert -O qcow2` for the qcow2 disks; `genisoimage -b isolinux.bin
# -boot-info-table` and `isohybrid` (as LinuxKit's iso-bios) for the hybrid ISOLINUX CD, copied
# as the BIOS disks (raw-bios, aws); `qemu-img convert -O vpc -o subformat=fixed,force_size` (as LinuxKit's vhd)
# for the VHD; `qemu-img convert -O vmdk` (as LinuxKit's vmdk) for the VMDK; `tar --format=oldgnu -Sczf` (as Google documents it) for the GCP archive. Both start from the same
# images (about MB megabytes) with a warm page cache; medians of RUNS, and their ratio (below 1
# is faster).
#   bench/boot-images.sh [MB] [RUNS]   (default 100 MB, 5 runs; needs systemd-boot-efi,
#       binutils, gdisk, dosfstools, mtools, xorriso, qemu-utils, genisoimage, isolinux,
#       syslinux-common, syslinux-utils)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
total_mb=${1:-100}
runs=${2:-5}
stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
isolinux=/usr/lib/ISOLINUX/isolinux.bin ldlinux=/usr/lib/syslinux/modules/bios/ldlinux.c32
for t in objcopy sgdisk mkfs.vfat mcopy xorriso qemu-img genisoimage isohybrid; do
  command -v "$t" >/dev/null || { echo "boot-images.sh needs $t (binutils, gdisk, dosfstools, mtools, xorriso, qemu-utils, genisoimage, syslinux-utils)" >&2; exit 1; }
done
for f in "$stub" "$isolinux" "$ldlinux"; do
  [ -f "$f" ] || { echo "boot-images.sh needs $f (apt-get install systemd-boot-efi isolinux syslinux-common)" >&2; exit 1; }
done
build_oxkit
bench_workdir

bench_system "$work" "$total_mb"
printf 'ID=oxkit\n' >"$work/osrel"

ours() { "$ox" -q build -f raw-efi,iso-efi,qcow2-efi,iso-bios,raw-bios,qcow2-bios,vhd,vmdk,aws,gcp --dir "$work/ox" "$work/bench.yml"; }
tools() {
  local d=$work/tools
  rm -rf "$d" && mkdir -p "$d"
  "$ox" -q build -f kernel+initrd --dir "$d" "$work/bench.yml"
  objcopy --add-section .osrel="$work/osrel" --change-section-vma .osrel=0x20000 \
    --add-section .cmdline="$d/bench-cmdline" --change-section-vma .cmdline=0x30000 \
    --add-section .linux="$d/bench-kernel" --change-section-vma .linux=0x2000000 \
    --add-section .initrd="$d/bench-initrd.img" --change-section-vma .initrd=0x3000000 \
    "$stub" "$d/uki.efi"
  local uki_mb esp_mb
  uki_mb=$(( $(stat -c %s "$d/uki.efi") / 1048576 + 1 ))
  esp_mb=$(( uki_mb + uki_mb / 10 + 9 ))
  [ "$esp_mb" -lt 33 ] && esp_mb=33
  truncate -s $(( esp_mb + 2 ))M "$d/disk.img"
  sgdisk -q -n 1:2048:+${esp_mb}M -t 1:ef00 "$d/disk.img" >/dev/null
  mkfs.vfat -F 32 --offset 2048 "$d/disk.img" $(( esp_mb * 1024 )) >/dev/null 2>&1
  mmd -i "$d/disk.img@@1M" ::/EFI ::/EFI/BOOT
  mcopy -i "$d/disk.img@@1M" "$d/uki.efi" ::/EFI/BOOT/BOOTX64.EFI
  qemu-img convert -f raw -O qcow2 "$d/disk.img" "$d/disk.qcow2"
  mkdir -p "$d/iso/EFI/BOOT"
  truncate -s ${esp_mb}M "$d/iso/EFI/BOOT/EFIBOOT.IMG"
  mkfs.vfat -F 32 "$d/iso/EFI/BOOT/EFIBOOT.IMG" >/dev/null 2>&1
  mmd -i "$d/iso/EFI/BOOT/EFIBOOT.IMG" ::/EFI ::/EFI/BOOT
  mcopy -i "$d/iso/EFI/BOOT/EFIBOOT.IMG" "$d/uki.efi" ::/EFI/BOOT/BOOTX64.EFI
  xorriso -as mkisofs -quiet -V OXKIT -e EFI/BOOT/EFIBOOT.IMG -no-emul-boot -o "$d/efi.iso" "$d/iso" 2>/dev/null
  mkdir -p "$d/bios/isolinux"
  cp "$isolinux" "$ldlinux" "$d/bios/isolinux/"
  cp "$d/bench-kernel" "$d/bios/kernel"
  cp "$d/bench-initrd.img" "$d/bios/initrd.img"
  printf 'DEFAULT linux\nLABEL linux\n  KERNEL /kernel\n  APPEND initrd=/initrd.img %s\n' \
    "$(cat "$d/bench-cmdline")" >"$d/bios/isolinux/isolinux.cfg"
  genisoimage -quiet -o "$d/bios.iso" -V OXKIT -c isolinux/boot.cat -b isolinux/isolinux.bin \
    -no-emul-boot -boot-load-size 4 -boot-info-table "$d/bios" 2>/dev/null
  isohybrid "$d/bios.iso"
  cp "$d/bios.iso" "$d/bios.img"
  cp "$d/bios.iso" "$d/bios.raw"
  qemu-img convert -f raw -O qcow2 "$d/bios.img" "$d/bios.qcow2"
  qemu-img convert -f raw -O vpc -o subformat=fixed,force_size "$d/bios.img" "$d/bios.vhd"
  qemu-img convert -f raw -O vmdk "$d/bios.img" "$d/bios.vmdk"
  mkdir -p "$d/gcp"
  cp "$d/bios.iso" "$d/gcp/disk.raw"
  truncate -s 1G "$d/gcp/disk.raw"
  tar --format=oldgnu -Sczf "$d/bios.img.tar.gz" -C "$d/gcp" disk.raw
}
race "$runs" "$work"
printf 'images %d MB, %d runs, %d cores\n' "$total_mb" "$runs" "$(nproc)"
mb() { du -m --apparent-size "$1" | cut -f1; }
printf 'kernel+initrd, objcopy, sgdisk, mkfs.vfat, mcopy, xorriso, qemu-img, genisoimage, isohybrid  %6.2fs\n' "$t"
printf '  (%d MB disk, %d MB UEFI ISO, %d MB qcow2, %d MB BIOS ISO)\n' "$(mb "$work/tools/disk.img")" \
  "$(mb "$work/tools/efi.iso")" "$(mb "$work/tools/disk.qcow2")" "$(mb "$work/tools/bios.iso")"
printf 'oxkit build -f raw-efi,iso-efi,qcow2-efi,iso-bios,raw-bios,qcow2-bios,vhd,vmdk,aws,gcp        %6.2fs  ratio %.2f (target <= 1.0)\n' \
  "$o" "$(echo "$o / $t" | bc -l)"
printf '  (%d MB disk, %d MB UEFI ISO, %d MB qcow2, %d MB BIOS ISO)\n' "$(mb "$work/ox/bench-efi.img")" \
  "$(mb "$work/ox/bench-efi.iso")" "$(mb "$work/ox/bench-efi.qcow2")" "$(mb "$work/ox/bench.iso")"

#!/usr/bin/env bash
# Boots oxkit-init as PID 1 under QEMU (TCG) with Debian 12's cloud kernel and a hand-made
# initrd: busybox bundles for onboot (read-only, writable/overlay, malformed), two services (one
# asks PID 1 to power off with SIGUSR2) and onshutdown; modules loaded from .modinfo (overlay,
# virtio_net by coldplug). Checks the console for the expected lines. Not run by cargo: the
# assembler's end-to-end boot test will supersede it. Needs qemu-system-x86, busybox-static,
# cpio and Debian's apt mirror (apt-get download). OXKIT_INIT=path skips the build.
set -euo pipefail
here=$(cd "$(dirname "$0")/../../.." && pwd)
bin=${OXKIT_INIT:-$("$here/scripts/build-init.sh" | awk '{print $1}')}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
apt-get download "$pkg" >/dev/null 2>&1
dpkg-deb -x linux-image-*.deb k
kver=$(ls k/lib/modules)
kernel=$(ls k/boot/vmlinuz-*)

busybox_tree() {
  mkdir -p "$1/bin" "$1/proc" "$1/dev" "$1/sys" "$1/tmp" "$1/etc"
  cp /bin/busybox "$1/bin/"
  for a in $(/bin/busybox --list-full); do
    [ "$a" = bin/busybox ] || { mkdir -p "$1/$(dirname "$a")"; ln -sf /bin/busybox "$1/$a"; }
  done
}
# spec SCRIPT NAMESPACES(space separated) ROOT READONLY [EXTRA_MOUNT_JSON]
spec() {
  local ns="" n caps='"CAP_KILL","CAP_NET_ADMIN","CAP_SYS_ADMIN","CAP_NET_RAW"'
  for n in $2; do ns="$ns${ns:+,}{\"type\":\"$n\"}"; done
  cat <<JSON
{"ociVersion":"1.0.2","process":{"args":["sh","-c","$1"],"env":["PATH=/bin:/sbin:/usr/bin:/usr/sbin"],"cwd":"/",
 "capabilities":{"bounding":[$caps],"effective":[$caps],"permitted":[$caps]}},
 "root":{"path":"$3","readonly":$4},
 "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
  {"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","mode=755"]},
  {"destination":"/sys","type":"sysfs","source":"sysfs","options":["ro"]},
  {"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["ro"]}${5:+,$5}],
 "linux":{"namespaces":[$ns],"maskedPaths":["/proc/kcore"],"readonlyPaths":["/proc/sys"]}}
JSON
}
bundle() { mkdir -p "root/containers/$1/$2"; cat > "root/containers/$1/$2/config.json"; }

mkdir -p root/etc "root/lib/modules/$kver"
cp "$bin" root/init
echo smoke > root/etc/hostname
busybox_tree root/bb
for m in overlay virtio_net virtio_pci net_failover failover virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev; do
  f=$(cd "k/lib/modules/$kver" && find . -name "$m.ko")
  mkdir -p "root/lib/modules/$kver/$(dirname "$f")"
  cp "k/lib/modules/$kver/$f" "root/lib/modules/$kver/$f"
done
mkdir -p root/containers/volumes/data/lower root/containers/volumes/data/tmp root/containers/volumes/data/merged
echo from-volume > root/containers/volumes/data/lower/seed
spec 'echo hello pid=$$ host=$(hostname) $(cat /data/seed); echo w > /data/w' "pid mount ipc uts network" /bb true \
  '{"destination":"/data","type":"bind","source":"/containers/volumes/data/merged","options":["rbind","rw"]}' | bundle onboot 001-hello
spec 'echo data > /etc/written && cat /etc/written' "pid mount" rootfs false | bundle onboot 002-rw
busybox_tree root/containers/onboot/002-rw/lower
mkdir -p root/containers/onboot/002-rw/tmp root/containers/onboot/002-rw/rootfs
mkdir -p root/containers/onboot/003-bad && echo '{ nope' > root/containers/onboot/003-bad/config.json
spec 'ls /sys/class/net | tr -s \"\\\\n\" \" \"; echo; exec sleep 1000' "mount pid" /bb true | bundle services net
spec 'sleep 3; kill -USR2 1' "mount" /bb true | bundle services stopper
spec 'echo goodbye' "mount pid" /bb true | bundle onshutdown 001-bye
(cd root && find . | cpio -o -H newc --quiet | gzip -1) > initrd.gz

timeout 180 qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot -kernel "$kernel" -initrd initrd.gz \
  -append "console=ttyS0 panic=-1 quiet" -nic user,model=virtio-net-pci 2>&1 | tr -d '\r' | tee console.log

fail=0
for want in "001-hello: hello pid=1 host=smoke from-volume" "onboot 001-hello: done" "002-rw: data" "onboot 002-rw: done" \
            "onboot 003-bad: failed: /containers/onboot/003-bad/config.json:1:3" "net: eth0 lo" \
            "signal 12: power off" "001-bye: goodbye" "reboot: Power down"; do
  grep -qF "$want" console.log || { echo "qemu-smoke: missing: $want" >&2; fail=1; }
done
[ "$fail" = 0 ] && echo "qemu-smoke: ok ($(stat -c %s initrd.gz) bytes initrd, $kver)"
exit "$fail"

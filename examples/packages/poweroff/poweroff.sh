#!/bin/sh
# Waits DELAY seconds (first argument, default 30 as in LinuxKit's poweroff package), then
# powers the machine off with reboot(2) directly (busybox `poweroff -f`): no shutdown
# sequence, the file systems of an initrd hold nothing to lose.
delay=${1:-30}
echo "powering off in ${delay}s"
sleep "$delay"
echo "powering off now"
exec /sbin/poweroff -f

#!/bin/busybox sh
# /init of the Linux test guest that proves the Xen harness without Ringbolt, and the Linux
# side of `bench xen-boot`: prints one line and powers off at once. With harness_crash=1 on the
# command line it panics the kernel instead (sysrq c), which Xen reports as a crash.
# Only shell builtins besides the two mounts and the power-off: each fork costs under TCG.
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
read -r release </proc/sys/kernel/osrelease
read -r guest_type </sys/hypervisor/guest_type
read -r cmdline </proc/cmdline
echo "HARNESS-GUEST: hello from Linux $release as a $guest_type guest"
for arg in $cmdline; do
    if [ "$arg" = harness_crash=1 ]; then
        echo "HARNESS-GUEST: crashing on request"
        echo c >/proc/sysrq-trigger
    fi
done
$B poweroff -f

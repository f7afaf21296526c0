#!/bin/busybox sh
# /init of the Linux test guest that proves the Xen harness without Ringbolt.
# Prints one line and powers off; with harness_crash=1 on the command line it panics the
# kernel instead (sysrq c), which Xen reports as a crash.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "HARNESS-GUEST: hello from Linux $(uname -r) as a $(cat /sys/hypervisor/guest_type) guest"
for arg in $(cat /proc/cmdline); do
    if [ "$arg" = harness_crash=1 ]; then
        echo "HARNESS-GUEST: crashing on request"
        echo c >/proc/sysrq-trigger
    fi
done
echo "HARNESS-GUEST: powering off"
poweroff -f

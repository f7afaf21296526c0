#!/bin/busybox sh
# PID 1 of the Hyper-V harness's L1 VM (xtask/src/hyperv). L1 runs under QEMU TCG with
# -cpu max, whose emulated SVM lets this stock Debian kernel's kvm_amd offer KVM, Hyper-V
# emulation included, which the host's own KVM may lack. Nothing but busybox and modules is
# baked in: the host's root is borrowed read-only over 9p, so the host's own QEMU runs L2,
# the guest under test. The run folder (9p tag `harness`) brings L2's kernel and its QEMU
# command line, one argument a line. xtask reads these lines:
#   HARNESS-L2-START              L1 is up, L2's QEMU starts now
#   HARNESS-L2-EXIT status=N      L2's QEMU exited with N (may follow unended guest output)
#   HARNESS-MONITOR COMMAND       COMMAND went to L2's monitor (the run folder's `monitor`
#                                 file: the trigger text, then "DELAY COMMAND" lines, each
#                                 DELAY seconds after the step before)
#   HARNESS-L1-FAILED why=WHAT    L1 cannot run L2
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# Pass L2's console bytes through untouched (no \n -> \r\n on the way out).
stty -onlcr </dev/console
while read -r module; do
    insmod "/lib/modules/$module" || echo "HARNESS-L1: insmod $module failed"
done </lib/modules/order

# Every 9p round trip is emulated, so make them few: 512000 is the largest msize this
# kernel's virtio-9p takes, and cache=loose keeps what was read (safe: nothing writes either
# share during a run), which halves QEMU's exec time.
options=trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro
if ! mount -t 9p -o "$options" hostroot /host; then
    echo "HARNESS-L1-FAILED why=no-9p-host-root"
elif [ ! -c /dev/kvm ]; then
    echo "HARNESS-L1-FAILED why=no-/dev/kvm"
else
    # The host's /proc, /sys, /dev, /tmp and /run are not L1's: give the chroot its own.
    mount -t proc proc /host/proc
    mount -t sysfs sys /host/sys
    mount -t devtmpfs dev /host/dev
    mount -t tmpfs tmp /host/tmp
    mount -t tmpfs run /host/run
    mkdir /host/run/harness
    mount -t 9p -o "$options" harness /host/run/harness
    set --
    while IFS= read -r arg; do
        set -- "$@" "$arg"
    done </host/run/harness/l2-command
    echo "HARNESS-L2-START"
    if [ -f /host/run/harness/monitor ]; then
        # L2's monitor is a QEMU pipe chardev: write commands to .in, drain its echo from .out.
        read -r trigger </host/run/harness/monitor
        mkfifo /host/tmp/hv-monitor.in /host/tmp/hv-monitor.out
        cat /host/tmp/hv-monitor.out >/dev/null &
        # Watch L2's console line by line for the trigger; the status goes round the pipe.
        # Then each further line of the file, "DELAY COMMAND", after the one before it.
        { TMPDIR=/tmp chroot /host "$@" </dev/null 2>&1; echo $? >/host/tmp/l2-status; } |
            while IFS= read -r line || [ -n "$line" ]; do
                printf '%s\n' "$line"
                case "$line" in
                    *"$trigger"*)
                        tail -n +2 /host/run/harness/monitor |
                            while read -r delay command; do
                                sleep "$delay"
                                echo "HARNESS-MONITOR $command"
                                printf '%s\n' "$command" >/host/tmp/hv-monitor.in
                            done &
                        trigger="\n never again \n" ;;
                esac
            done
        echo "HARNESS-L2-EXIT status=$(cat /host/tmp/l2-status)"
    else
        TMPDIR=/tmp chroot /host "$@" </dev/null 2>&1
        echo "HARNESS-L2-EXIT status=$?"
    fi
fi
poweroff -f

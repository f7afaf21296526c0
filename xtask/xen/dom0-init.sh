#!/bin/bash
# /init of the harness dom0: a Linux PV dom0 whose root is this initramfs.
#
# Starts what `xl` needs (Xen device modules, xenfs, xenstored, the dom0 xenstore entries,
# xenconsoled logging every guest console to a file), puts up bridge xenbr0 on TEST-NET-1 for
# guest vifs with a DHCP server on it, runs the per-run script /harness/run.sh that xtask
# appended to this initramfs, and powers off, which makes Xen enter ACPI S5 and QEMU exit.
# Lines starting with HARNESS- are read by xtask (src/xen/run.rs); keep them in step.
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/usr/lib/xen-4.17/bin:/usr/local/bin
export HOME=/root TERM=vt100
XENBIN=/usr/lib/xen-4.17/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
# udev would make these; the hotplug scripts' locking opens /dev/fd/N and /dev/stdin.
ln -sfn /proc/self/fd /dev/fd
ln -sfn fd/0 /dev/stdin
ln -sfn fd/1 /dev/stdout
ln -sfn fd/2 /dev/stderr
exec </dev/console >/dev/console 2>&1

note() { echo "HARNESS: $*"; }
fail() {
    echo "HARNESS-END reason=dom0-failed detail=$*"
    poweroff -f
}

hostname dom0
ip link set lo up
modprobe -a xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs xen-netback xen-blkback \
    bridge loop || note "some modules did not load"
mount -t xenfs xenfs /proc/xen || fail "mount xenfs"
grep -q control_d /proc/xen/capabilities || fail "not the Xen control domain"

mkdir -p /run/xen /run/xenstored /run/xen-hotplug /run/lock /var/log/xen/console /var/lib/xen
XENSTORED_ROOTDIR=/run/xenstored "$XENBIN/xenstored" --pid-file /run/xen/xenstored.pid \
    || fail "xenstored"
# xenstored daemonises before it serves; xen-init-dom0 needs it serving.
for _ in $(seq 100); do
    xenstore-read -s / >/dev/null 2>&1 && break
    sleep 0.1
done
"$XENBIN/xen-init-dom0" >/dev/null || fail "xen-init-dom0"
"$XENBIN/xenconsoled" --pid-file=/run/xen/xenconsoled.pid --log=guest \
    --log-dir=/var/log/xen/console || fail "xenconsoled"

# 192.0.2.0/24 is TEST-NET-1 (RFC 5737): nothing outside this emulated machine answers there.
ip link add xenbr0 type bridge
ip link set xenbr0 type bridge stp_state 0 forward_delay 0
ip addr add 192.0.2.1/24 dev xenbr0
ip link set xenbr0 up
# DHCP on the bridge for guests without a static ip= (busybox udhcpd, a daemon), leasing from
# the top of the subnet, clear of the static 192.0.2.2. `-a 200`: it ARP-probes an address for
# 200 ms, not 2 s, before offering it.
cat >/etc/udhcpd.conf <<'EOF'
start 192.0.2.100
end 192.0.2.150
interface xenbr0
lease_file /run/udhcpd.leases
option router 192.0.2.1
option subnet 255.255.255.0
EOF
: >/run/udhcpd.leases
udhcpd -a 200 /etc/udhcpd.conf || fail "udhcpd"
echo "HARNESS-DOM0-READY kernel=$(uname -r)"

if [ -x /harness/run.sh ]; then
    /harness/run.sh
else
    echo "HARNESS-END reason=dom0-failed detail=no-run-script"
fi
sync
poweroff -f

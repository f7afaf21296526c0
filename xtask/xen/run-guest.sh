#!/bin/bash
# /harness/run.sh: the guest runs inside the harness dom0, appended by xtask for this boot.
#
# /harness/params sets NAMES (domain names, in order), WAIT_SECS (how long each may run),
# DISK_IMG (empty: no disk) and DISK_MIB (its size). For each name, one after the other: creates
# the domain from /harness/<name>.cfg (rendered by xtask), streams its console, waits for it to
# end (or the deadline), dumps a crashed or hung domain's vCPUs with xenctx, removes it, hashes
# the disk image if the domain had it, and reports.
# Lines read by xtask (src/xen/run.rs; keep them in step), n being the domain's place in
# NAMES from 1, and *_us dom0's clock in microseconds since the epoch:
#   HARNESS-CREATE-BEGIN n=N at_us=T           just before `xl create`
#   HARNESS-CREATE-DONE n=N at_us=T            `xl create` returned: the domain runs
#   guest| <console line>
#   probe| <line>                              output of /harness/<name>.probe, if there is
#                                              one, run when the shutdown trigger (below)
#                                              appears and before `xl shutdown`, with the
#                                              console line that held the trigger as $1
#   HARNESS-SHUTDOWN-SENT n=N at_us=T          `xl shutdown` ran: a console line contained the
#                                              text in /harness/<name>.shutdown-on
#   HARNESS-DISK-SHA256 n=N sha256=H          the disk image's hash once the domain is gone
#   HARNESS-END n=N reason=R code=C first_us=T end_us=T
#                                              first console line seen, shutdown reported
# Stamps come from bash's $EPOCHREALTIME, which costs no fork (a fork is milliseconds under
# TCG), and are taken where dom0 sees the event, so serial and QEMU latency stay out of them.
XENBIN=/usr/lib/xen-4.17/bin
XL=$XENBIN/xl
. /harness/params

if [ -n "$DISK_IMG" ]; then
    mkdir -p "$(dirname "$DISK_IMG")"
    truncate -s "${DISK_MIB}M" "$DISK_IMG"
fi

# Copies the console log to stdout as "guest| " lines until $KEEPER ends (tail then reads
# what is left and stops), and writes when the first line arrived to the file $2.
stream_console() {
    local line first=
    tail -q -n +1 -F -s 0.2 --pid="$KEEPER" "$1" 2>/dev/null |
        while IFS= read -r line || [ -n "$line" ]; do
            if [ -z "$first" ]; then
                first=${EPOCHREALTIME/./}
                echo "$first" >"$2"
            fi
            echo "guest| $line"
        done
}

# Runs the probe script $1, if there is one, with the console line that triggered it ($2) as
# its argument; its output (stdout and stderr) as "probe| " lines.
run_probe() {
    local line
    [ -x "$1" ] || return 0
    "$1" "$2" 2>&1 | while IFS= read -r line || [ -n "$line" ]; do
        echo "probe| $line"
    done
}

# Waits up to $1 seconds for xl's shutdown line on fd 3; sets code and end_us.
read_shutdown() {
    local line
    IFS= read -r -t "$1" line <&3 || return 1
    end_us=${EPOCHREALTIME/./}
    code=${line##*reason code }
    code=${code%% *}
}

n=0
for NAME in $NAMES; do
    n=$((n + 1))
    CONSOLE=/var/log/xen/console/guest-$NAME.log
    # xl's per-domain monitor logs "Domain N has shut down, reason code R 0x..." here before
    # it acts on on_poweroff/on_reboot/on_crash: the one place the reason survives a
    # destroyed domain.
    XLLOG=/var/log/xen/xl-$NAME.log
    FIRST=/tmp/first-$NAME
    code= end_us= reason=
    # tail follows an existing file through inotify, at once; a missing one it polls for.
    # xl moves an existing log aside (xl-NAME.log.1) and starts a new one, which -F follows.
    : >"$CONSOLE"
    : >"$XLLOG"
    # Both followers below stop when this does.
    sleep infinity &
    KEEPER=$!
    stream_console "$CONSOLE" "$FIRST" &
    STREAM=$!
    if [ -f "/harness/$NAME.shutdown-on" ]; then
        (trigger=$(tail -q -n +1 -F -s 0.2 --pid="$KEEPER" "$CONSOLE" 2>/dev/null |
            grep -m 1 -F -f "/harness/$NAME.shutdown-on") &&
            run_probe "/harness/$NAME.probe" "$trigger" &&
            echo "HARNESS-SHUTDOWN-SENT n=$n at_us=${EPOCHREALTIME/./}" &&
            "$XL" shutdown "$NAME" >/dev/null 2>&1) &
    fi
    exec 3< <(tail -q -n +1 -F -s 0.2 --pid="$KEEPER" "$XLLOG" 2>/dev/null |
        grep --line-buffered -m 1 'has shut down, reason code')

    echo "HARNESS-CREATE-BEGIN n=$n at_us=${EPOCHREALTIME/./}"
    if "$XL" create "/harness/$NAME.cfg" >/tmp/xl-create.log 2>&1; then
        echo "HARNESS-CREATE-DONE n=$n at_us=${EPOCHREALTIME/./}"
        deadline=$((${EPOCHREALTIME%.*} + WAIT_SECS))
        # Each xl invocation costs a second of TCG time, taken from the guest as it boots
        # (and from `bench xen-boot`'s figures), so ask whether the domain is gone only
        # when the log has been quiet for longer than a guest takes.
        until read_shutdown 10; do
            if [ "${EPOCHREALTIME%.*}" -ge "$deadline" ]; then
                reason=timeout
                break
            fi
            if ! "$XL" domid "$NAME" >/dev/null 2>&1; then
                read_shutdown 1 || reason=vanished
                break
            fi
        done
        case "$code" in
            0) reason=poweroff ;;
            1) reason=reboot ;;
            2) reason=suspend ;;
            3) reason=crash ;;
            4) reason=watchdog ;;
            5) reason=soft-reset ;;
            "") ;;
            *) reason=unknown-$code ;;
        esac
        # xl destroys a domain that powered off or rebooted. A crashed one is kept
        # (on_crash = "preserve"), a hung one still runs: show where its vCPUs are first.
        case "$reason" in
            poweroff | reboot) ;;
            *)
                if domid=$("$XL" domid "$NAME" 2>/dev/null); then
                    "$XENBIN/xenctx" -a -C "$domid" 2>&1 | head -n 80 | sed 's/^/xenctx| /'
                    "$XL" destroy "$NAME"
                fi
                ;;
        esac
    else
        sed 's/^/xl| /' /tmp/xl-create.log
        reason=create-failed
    fi
    # Let xenconsoled write the domain's last words before the stream stops.
    sleep 0.5
    kill "$KEEPER"
    wait "$STREAM"
    exec 3<&-
    if grep -q '^disk' "/harness/$NAME.cfg"; then
        sum=$(sha256sum "$DISK_IMG")
        echo "HARNESS-DISK-SHA256 n=$n sha256=${sum%% *}"
    fi
    first_us=
    [ -f "$FIRST" ] && read -r first_us <"$FIRST"
    echo "HARNESS-END n=$n reason=$reason code=${code:-none} first_us=$first_us end_us=$end_us"
done

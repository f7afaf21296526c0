#!/bin/bash
# /harness/run.sh: one guest run inside the harness dom0, appended by xtask for this run.
#
# Creates the domain from /harness/guest.cfg (rendered by xtask), streams its console as
# "guest| " lines, waits for the domain to end (or the deadline), reports Xen's shutdown
# reason as "HARNESS-END reason=...", and dumps a crashed or hung domain's vCPUs with xenctx.
# /harness/params sets NAME, WAIT_SECS and DISK_IMG (empty: no disk).
XENBIN=/usr/lib/xen-4.17/bin
XL=$XENBIN/xl
. /harness/params

CONSOLE=/var/log/xen/console/guest-$NAME.log
# xl's per-domain monitor logs "Domain N has shut down, reason code R 0x..." here before it
# acts on on_poweroff/on_reboot/on_crash: the one place the reason survives a destroyed domain.
XLLOG=/var/log/xen/xl-$NAME.log

if [ -n "$DISK_IMG" ]; then
    mkdir -p "$(dirname "$DISK_IMG")"
    truncate -s 64M "$DISK_IMG"
fi
: >"$CONSOLE"
tail -n +1 -F "$CONSOLE" 2>/dev/null | sed -u 's/^/guest| /' &
STREAM=$!

echo "HARNESS-CREATE-BEGIN"
if ! "$XL" create /harness/guest.cfg >/tmp/xl-create.log 2>&1; then
    sed 's/^/xl| /' /tmp/xl-create.log
    echo "HARNESS-END reason=create-failed"
    exit 1
fi
echo "HARNESS-CREATE-DONE domid=$("$XL" domid "$NAME")"

shutdown_code() {
    sed -n 's/.*has shut down, reason code \([0-9]*\).*/\1/p' "$XLLOG" 2>/dev/null | tail -n 1
}
deadline=$(($(cut -d. -f1 /proc/uptime) + WAIT_SECS))
reason=
polls=0
while [ -z "$reason" ]; do
    code=$(shutdown_code)
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
    [ -n "$reason" ] && break
    # Each xl invocation costs a second of TCG time, so ask whether the domain is gone
    # only every few polls; the log above answers the common case.
    polls=$((polls + 1))
    if [ $((polls % 10)) = 0 ] && ! "$XL" domid "$NAME" >/dev/null 2>&1; then
        sleep 1
        code=$(shutdown_code)
        [ -n "$code" ] && continue
        reason=vanished
        break
    fi
    if [ "$(cut -d. -f1 /proc/uptime)" -ge "$deadline" ]; then
        reason=timeout
        break
    fi
    sleep 0.3
done

# A crashed domain is kept (on_crash = "preserve"), a hung one is still running: show where
# its vCPUs are before removing it.
if "$XL" domid "$NAME" >/dev/null 2>&1; then
    "$XENBIN/xenctx" -a -C "$("$XL" domid "$NAME")" 2>&1 | head -n 80 | sed 's/^/xenctx| /'
    "$XL" destroy "$NAME"
fi
# Let the console stream catch up with the domain's last words.
sleep 1
kill "$STREAM" 2>/dev/null
echo "HARNESS-END reason=$reason code=${code:-none}"

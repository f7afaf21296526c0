#!/bin/bash
# /harness/<name>.probe for httpd: run in dom0 once httpd listens (its vif is on dom0's bridge
# xenbr0, 192.0.2.1/24). $1 is the console line that triggered it,
# "httpd: listening on A.B.C.D:80": the address probed is taken from it, so a static address
# and a DHCP lease are probed alike. Lines read by xtask (src/xen/cases.rs; keep them in step),
# each prefixed "probe| " by the run script:
#   "probe-address A.B.C.D"
#   ping's own summary ("3 packets transmitted, 3 received, ...") and "ping-status S"
#   "curl-body: <line>" for each line of / and then /stats, fetched over one connection
#   "curl-status S"
#   "parallel-body: <line>" for each of four fetches of / over concurrent connections, and
#   "parallel-status S"
#   "wrk: <line>" for each line of wrk's summary (64 connections for 10 s), and "wrk-status S"
addr=${1##*listening on }
addr=${addr%%:*}
echo "probe-address $addr"
ping -c 3 -W 5 "$addr"
echo "ping-status $?"
curl -s -m 20 "http://$addr/" "http://$addr/stats" | while IFS= read -r line; do
    echo "curl-body: $line"
done
echo "curl-status ${PIPESTATUS[0]}"
# Its progress meter goes to stderr even with -s in parallel mode (curl 7.88), so stderr is
# dropped; the status says how it went.
curl -s -m 20 -Z --parallel-immediate "http://$addr/?n=[1-4]" 2>/dev/null | while IFS= read -r line; do
    echo "parallel-body: $line"
done
echo "parallel-status ${PIPESTATUS[0]}"
wrk -t2 -c64 -d10s "http://$addr/" 2>&1 | while IFS= read -r line; do
    echo "wrk: $line"
done
echo "wrk-status ${PIPESTATUS[0]}"

#!/bin/bash
# /harness/<name>.probe for httpd: run in dom0 once httpd listens on 192.0.2.2 (its vif is on
# dom0's bridge xenbr0, 192.0.2.1/24). Lines read by xtask (src/xen/cases.rs; keep them in
# step), each prefixed "probe| " by the run script:
#   ping's own summary ("3 packets transmitted, 3 received, ...") and "ping-status S"
#   "curl-body: <line>" for each line of / and then /stats, fetched over one connection
#   "curl-status S"
#   "parallel-body: <line>" for each of four fetches of / over concurrent connections, and
#   "parallel-status S"
ping -c 3 -W 5 192.0.2.2
echo "ping-status $?"
curl -s -m 20 http://192.0.2.2/ http://192.0.2.2/stats | while IFS= read -r line; do
    echo "curl-body: $line"
done
echo "curl-status ${PIPESTATUS[0]}"
# Its progress meter goes to stderr even with -s in parallel mode (curl 7.88), so stderr is
# dropped; the status says how it went.
curl -s -m 20 -Z --parallel-immediate 'http://192.0.2.2/?n=[1-4]' 2>/dev/null | while IFS= read -r line; do
    echo "parallel-body: $line"
done
echo "parallel-status ${PIPESTATUS[0]}"

#!/usr/bin/env bash
# Validates the reference captures: every IPv4 header, TCP, UDP, ICMP and
# ICMPv6 checksum must be verified good by tshark, no frame may be truncated
# (full snaplen) and none may exceed an Ethernet frame (1514 bytes: a bigger
# one would mean GRO/GSO leaked into the capture). The replay also relies on
# order: frames must be in time order, and every TCP segment the router sends
# (source MAC = lan0's or wan0's) must come after the segment it forwards,
# seen entering on the other interface (matched on IP ID, TCP flags and TCP
# timestamps, which forwarding and NAT leave alone). Exits non-zero on any fault.
#
# Usage: tests/lab/check-captures.sh [file.pcapng...]   (default: tests/data/ftp/*.pcapng)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

for tool in tshark capinfos; do
    command -v "$tool" >/dev/null || {
        echo "check-captures: $tool is not installed (see tests/lab/packages.txt)" >&2
        exit 2
    }
done

# The router's own MACs (tests/lab/lab.sh): frames from them leave the router.
mac_lan0=02:00:c0:00:02:01
mac_wan0=02:00:c6:33:64:01

files=("$@")
if ((${#files[@]} == 0)); then
    shopt -s nullglob
    files=("$repo"/tests/data/ftp/*.pcapng)
    shopt -u nullglob
fi
if ((${#files[@]} == 0)); then
    echo "check-captures: no capture files found" >&2
    exit 2
fi

tmp=$(mktemp)
trap 'rm -f -- "$tmp"' EXIT

passed=0
failed=0
for f in "${files[@]}"; do
    # tshark prints checksum status as a number: 0 bad, 1 good, 2 unverified,
    # 3 not present, 4 illegal. All occurrences (ICMP errors quote headers).
    if ! tshark -n -r "$f" \
        -o tcp.check_checksum:TRUE -o ip.check_checksum:TRUE -o udp.check_checksum:TRUE \
        -T fields -E separator=/t -E occurrence=a -E aggregator=, \
        -e frame.number -e frame.len -e frame.cap_len \
        -e frame.interface_name -e eth.src -e ip.id -e tcp.flags \
        -e tcp.options.timestamp.tsval -e tcp.options.timestamp.tsecr \
        -e ip.checksum.status -e tcp.checksum.status -e udp.checksum.status \
        -e icmp.checksum.status -e icmpv6.checksum.status \
        >"$tmp" 2>/dev/null; then
        echo "FAIL $f: tshark cannot read it"
        failed=$((failed + 1))
        continue
    fi
    order=True
    capinfos -o "$f" 2>/dev/null | grep -q 'Strict time order: *True' || order=False
    if summary=$(awk -F'\t' -v name="$(basename "$f")" -v order="$order" \
        -v r1="$mac_lan0" -v r2="$mac_wan0" '
        BEGIN { split("ip tcp udp icmp icmpv6", proto, " ") }
        {
            frames++
            if ($3 + 0 < $2 + 0) { trunc++; if (!first) first = "frame " $1 " truncated" }
            if ($2 + 0 > 1514) { big++; if (!first) first = "frame " $1 " is " $2 " bytes" }
            if ($7 != "") {
                if ($5 == r1 || $5 == r2) {
                    key = $4 SUBSEP $6 SUBSEP $7 SUBSEP $8 SUBSEP $9
                    if (pending[key] > 0) pending[key]--
                    else { orphan++; if (!first) first = "frame " $1 " leaves before it entered" }
                } else {
                    other = ($4 == "lan0") ? "wan0" : "lan0"
                    pending[other SUBSEP $6 SUBSEP $7 SUBSEP $8 SUBSEP $9]++
                }
            }
            for (i = 10; i <= 14; i++) {
                if ($i == "") continue
                n = split($i, v, ",")
                for (k = 1; k <= n; k++) {
                    p = proto[i - 9]
                    if (v[k] == "1") good[p]++
                    else if (v[k] == "3") continue
                    else {
                        bad++
                        what = (v[k] == "0") ? "bad" : (v[k] == "2") ? "unverified" : "illegal"
                        if (!first) first = "frame " $1 ": " p " checksum " what
                    }
                }
            }
        }
        END {
            line = sprintf("%s: %d frames; good checksums: ip %d, tcp %d, udp %d, icmp %d, icmpv6 %d",
                name, frames, good["ip"], good["tcp"], good["udp"], good["icmp"], good["icmpv6"])
            if (frames == 0) { print line "; EMPTY"; exit 1 }
            if (order != "True") line = line "; NOT in time order"
            if (bad || trunc || big || orphan) {
                printf "%s; %d bad/unverified checksum(s), %d truncated, %d oversize, %d out of order (first: %s)\n",
                    line, bad, trunc, big, orphan, first
                exit 1
            }
            if (order != "True") { print line; exit 1 }
            print line
        }' "$tmp"); then
        echo "ok   $summary"
        passed=$((passed + 1))
    else
        echo "FAIL $summary"
        failed=$((failed + 1))
    fi
done

echo "$passed passed, $failed failed"
((failed == 0))

#!/usr/bin/env bash
# Validates reference captures of any IP traffic through the lab router (TCP,
# UDP, ICMP echo, ICMP errors):
#
# - every IPv4 header, TCP, UDP, ICMP and ICMPv6 checksum tshark can verify is
#   good, also in the headers an ICMP error quotes. A quoted TCP or UDP header
#   whose segment the error cut short (an ICMPv6 Packet Too Big quotes only
#   the first 1232 bytes) cannot be verified: that is accepted, and counted,
#   inside ICMP errors only. A UDP checksum of 0 (none, IPv4) is accepted;
# - no frame is truncated (full snaplen) and none exceeds an Ethernet frame
#   (1514 bytes: a bigger one would mean GRO/GSO leaked into the capture);
# - frames are in time order, and every IP frame the router sends that is not
#   link control (ARP, NDP, MLD) comes after the frame it forwards, seen
#   entering on the other interface. Frames are matched on what forwarding and
#   NAT leave alone: IPv4 IDs, IPv6 flow labels, protocols, TCP flags and
#   timestamps, UDP lengths and payloads, ICMP types, codes and echo sequence
#   numbers, in the outer and in any quoted header. (So a frame the router
#   originated itself, an ICMP error of its own say, fails the check.)
#
# Usage: tests/lab/check-ip-captures.sh [file.pcapng...]   (default: the reference sets, tests/data/{ftp,nat}/*.pcapng;
# the helpers' own recordings elsewhere under tests/data are made as users make them and fail the order check)
# Exits non-zero on any fault.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

for tool in tshark capinfos; do
    command -v "$tool" >/dev/null || {
        echo "check-ip-captures: $tool is not installed (see tests/lab/packages.txt)" >&2
        exit 2
    }
done

# The router's own MACs (tests/lab/lab.sh): frames from them leave the router.
mac_lan0=02:00:c0:00:02:01
mac_wan0=02:00:c6:33:64:01

files=("$@")
if ((${#files[@]} == 0)); then
    shopt -s nullglob
    files=("$repo"/tests/data/ftp/*.pcapng "$repo"/tests/data/nat/*.pcapng)
    shopt -u nullglob
fi
if ((${#files[@]} == 0)); then
    echo "check-ip-captures: no capture files found" >&2
    exit 2
fi

tmp=$(mktemp)
trap 'rm -f -- "$tmp"' EXIT

# Fields 1-8 describe the frame, 9-13 are checksum statuses, 14 on the key.
fields=(frame.number frame.len frame.cap_len frame.interface_name eth.src frame.protocols
    icmp.type icmpv6.type
    ip.checksum.status tcp.checksum.status udp.checksum.status icmp.checksum.status icmpv6.checksum.status
    ip.id ipv6.flow ip.proto ipv6.nxt tcp.flags tcp.options.timestamp.tsval tcp.options.timestamp.tsecr
    udp.length udp.payload icmp.code icmp.seq icmpv6.code icmpv6.echo.sequence_number)
tshark_fields=()
for f in "${fields[@]}"; do tshark_fields+=(-e "$f"); done

passed=0
failed=0
for f in "${files[@]}"; do
    # tshark prints checksum status as a number: 0 bad, 1 good, 2 unverified,
    # 3 not present, 4 illegal. All occurrences (ICMP errors quote headers).
    if ! tshark -n -r "$f" \
        -o tcp.check_checksum:TRUE -o ip.check_checksum:TRUE -o udp.check_checksum:TRUE \
        -T fields -E separator=/t -E occurrence=a -E aggregator=, "${tshark_fields[@]}" \
        >"$tmp" 2>/dev/null; then
        echo "FAIL $f: tshark cannot read it"
        failed=$((failed + 1))
        continue
    fi
    order=True
    capinfos -o "$f" 2>/dev/null | grep -q 'Strict time order: *True' || order=False
    if summary=$(awk -F'\t' -v name="$(basename "$f")" -v order="$order" \
        -v r1="$mac_lan0" -v r2="$mac_wan0" -v nf="${#fields[@]}" '
        BEGIN { split("ip tcp udp icmp icmpv6", proto, " ") }
        function fault(msg) { if (!first) first = "frame " $1 ": " msg }
        {
            frames++
            if ($3 + 0 < $2 + 0) { trunc++; fault("truncated") }
            if ($2 + 0 > 1514) { big++; fault($2 " bytes") }
            split($7, t4, ","); split($8, t6, ",")
            link = ($6 ~ /(^|:)arp(:|$)/) || (t6[1] != "" && ((t6[1] >= 130 && t6[1] <= 137) || t6[1] == 143))
            icmperr = (t4[1] != "" && (t4[1] == 3 || t4[1] == 4 || t4[1] == 5 || t4[1] == 11 || t4[1] == 12)) ||
                (t6[1] != "" && t6[1] >= 1 && t6[1] <= 4)
            out = ($5 == r1 || $5 == r2)
            if (link) { if (out) own++; else peer++ }
            else if ($6 ~ /(^|:)ip(v6)?(:|$)/) {
                key = ""
                for (i = 14; i <= nf; i++) key = key SUBSEP $i
                if (out) {
                    if (pending[$4 key] > 0) { pending[$4 key]--; fwd++ }
                    else { orphan++; fault("leaves before it entered (or the router sent it on its own)") }
                } else {
                    other = ($4 == "lan0") ? "wan0" : "lan0"
                    pending[other key]++
                }
            }
            for (i = 9; i <= 13; i++) {
                if ($i == "") continue
                n = split($i, v, ",")
                p = proto[i - 8]
                for (k = 1; k <= n; k++) {
                    if (v[k] == "1") good[p]++
                    else if (v[k] == "3") continue
                    else if (v[k] == "2" && icmperr && (p == "tcp" || p == "udp")) cut++
                    else {
                        bad++
                        fault(p " checksum " ((v[k] == "0") ? "bad" : (v[k] == "2") ? "unverified" : "illegal"))
                    }
                }
            }
        }
        END {
            line = sprintf("%s: %d frames (%d forwarded, link control %d from the router and %d from the peers); good checksums: ip %d, tcp %d, udp %d, icmp %d, icmpv6 %d",
                name, frames, fwd, own, peer, good["ip"], good["tcp"], good["udp"], good["icmp"], good["icmpv6"])
            if (cut) line = line sprintf("; %d quoted header(s) cut short, not verifiable", cut)
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

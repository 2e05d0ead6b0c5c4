#!/usr/bin/env bash
# What the SIP lab scripts share (tests/lab/e2e-sip.sh, tests/lab/e2e-sip-ua.sh): captures on both sides of the router,
# and the SIP messages of a capture as comparable text. Source after lab.sh and harness.sh; uses $C and $R (the client
# and router namespaces).

SIP_CAPTURE_PIDS=()

# sip_captures_start DIR : dumpcap on the router's wan0 (DIR/wan0.pcapng) and the client's eth0 (DIR/client.pcapng);
# returns once both capture.
sip_captures_start() {
    local out=$1
    mkdir -p "$out"
    SIP_CAPTURE_PIDS=()
    ip netns exec "$R" dumpcap -q -p -i wan0 -w "$out/wan0.pcapng" </dev/null >"$out/wan0.log" 2>&1 &
    SIP_CAPTURE_PIDS+=($!)
    ip netns exec "$C" dumpcap -q -p -i eth0 -w "$out/client.pcapng" </dev/null >"$out/client.log" 2>&1 &
    SIP_CAPTURE_PIDS+=($!)
    h_wait_for 15 grep -q '^File: ' "$out/wan0.log"
    h_wait_for 15 grep -q '^File: ' "$out/client.log"
    sleep 0.3
}

# sip_captures_stop : lets the last packets in, then stops both captures (SIGINT: dumpcap closes its file).
sip_captures_stop() {
    sleep 0.5
    kill -INT "${SIP_CAPTURE_PIDS[@]}" 2>/dev/null || true
    wait "${SIP_CAPTURE_PIDS[@]}" 2>/dev/null || true
    SIP_CAPTURE_PIDS=()
}

# sip_payloads FILE FILTER [compare] : the SIP messages of a capture matching FILTER, as text, sipp's random values
# masked (and with "compare", what each NAT chooses: the media port at the router and the body length). $router is
# the router's WAN address as SIP writes it (IPv6 in brackets).
sip_payloads() {
    tshark -n -r "$1" -Y "$2" -T fields -e udp.payload -e tcp.payload 2>/dev/null | python3 -c '
import re, sys
for line in sys.stdin:
    text = bytes.fromhex(line.strip().replace("\t", "").replace(":", "")).decode("ascii", "replace")
    text = re.sub(r"(branch|tag)=[^;>\r\n]*", r"\1=X", text)
    text = re.sub(r"Call-ID: [^\r\n]*", "Call-ID: X", text)
    text = re.sub(r"o=user1 \d+ \d+", "o=user1 N N", text)
    # The source port the router gave the signalling flow: the kernel keeps 5060, offloadd takes one of its nat-ports
    # (docs/steering.md), so the port after the router address differs by design.
    text = re.sub(re.escape(sys.argv[1]) + r":\d+", sys.argv[1] + ":PORT", text)
    text = re.sub(r"rport=\d+", "rport=PORT", text)
    if sys.argv[2:] == ["compare"]:
        # The media port at the router: the kernel keeps the phone port, offloadd places it in its nat-ports (checked
        # apart); the body length then differs by the digits.
        text = re.sub(r"m=audio \d+", "m=audio PORT", text)
        text = re.sub(r"Content-Length: *\d+", "Content-Length: N", text)
    print(text.replace("\r", ""))
    print("----")
' "$router" "${3-}"
}

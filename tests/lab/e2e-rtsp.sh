#!/usr/bin/env bash
# offloadd's RTSP helper end to end (issue 12): a GStreamer RTSP server (tests/lab/rtsp-server.py: H.264 video and
# PCMU audio, RTP over UDP) and ffmpeg as the client, through offloadd with the rtsp helper and no kernel helper (the
# kernel has none for RTSP). (1) Masquerade: the client behind the router, the server beyond the WAN, over IPv4 and
# IPv6 (NAT66). (2) Port forward: the server behind the router (a DNAT of TCP 554 at the router's WAN address), the
# client beyond the WAN. Each time the media arrives (ffmpeg decodes video and audio frames), offloadctl shows the
# helper's expectations while the stream runs and none after ffmpeg's TEARDOWN, the Transport headers that left on
# the WAN name the router's ports (from offloadd's nat-ports) and no private address (and those the masqueraded client
# received, its own ports again), and the WAN capture holds no LAN-private source and no reset. After the masqueraded
# stream, probes from the server show that nothing else was opened: datagrams to the announced ports from another port
# of the server (the pinholes are withdrawn) and to ports never announced reach nothing, while the same datagram from
# the server's media port (the media flow, still tracked) does. ffmpeg also plays the stream interleaved (RTP over the
# RTSP connection), which the helper leaves alone; offloadd --check accepts the helper's options and refuses a bad one.
#
# Output and environment: tests/lab/harness.sh (LAB_SUFFIX, default -rp; KEEP_WORK=1).
# Usage: tests/lab/e2e-rtsp.sh   (as root; builds the Release binaries if they are missing)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"

sfx=${LAB_SUFFIX--rp}
h_init ol-rtsp
# GStreamer's Python bindings are Debian's: the system interpreter, whatever python3 the PATH finds first.
PY=/usr/bin/python3
h_need_root_and_tools ip iptables ffmpeg dumpcap tshark dotnet "$PY"
"$PY" -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null ||
    h_die "missing GStreamer's RTSP server for Python (gir1.2-gst-rtsp-server-1.0, python3-gi: tests/lab/packages.txt)"
h_build
h_on_exit "lab_down '$sfx'"
h_on_exit 'jobs -p | xargs -r kill'

C=$(lab_ns client "$sfx")
R=$(lab_ns router "$sfx")
S=$(lab_ns server "$sfx")
started=$SECONDS

# transports FILE SOURCE : the Transport headers of the RTSP messages SOURCE sent in a capture, one per line.
transports() {
    tshark -n -r "$1" -Y "rtsp.transport && ip.src==$2" -T fields -e rtsp.transport 2>/dev/null | tr -d '\r'
}

# no_rtsp_expectations : offloadd holds no UDP expectation (the rtsp helper is its only helper).
no_rtsp_expectations() { ! h_ctl expect list 2>/dev/null | grep -qE "^[0-9]+ proto=17 "; }

# rtsp_expectations FILE : offloadd holds UDP expectations (the rtsp helper's); the listing is left in FILE.
rtsp_expectations() { h_ctl expect list >"$1" 2>&1 && grep -qE "^[0-9]+ proto=17 " "$1"; }

# stream NAME SERVER_NS SERVER_ADDRESS CLIENT_NS URL [ROUTER_WAN_ADDRESS] : the GStreamer server in SERVER_NS, ffmpeg
# in CLIENT_NS playing URL for 10 s of media (its RTP ports from 5000), the router's wan0 captured; checks what
# arrived and what offloadd held.
stream() {
    local name=$1 sns=$2 saddr=$3 cns=$4 url=$5 router=${6:-$LAB_WAN4_ROUTER} out=$H_WORK/$1 server ff capture rc=0 video audio mid after ip=ip
    mkdir -p "$out"
    ip netns exec "$sns" "$PY" "$here/rtsp-server.py" "$saddr" 554 >"$out/server.log" 2>&1 &
    server=$!
    h_wait_for 60 grep -q '^ready' "$out/server.log" || h_die "$name: the RTSP server did not start: $(tail -3 "$out/server.log")"
    h_capture_start "$R" wan0 "$out/wan0.pcapng"
    # What the client received, beside it.
    ip netns exec "$cns" dumpcap -q -p -s 512 -i eth0 -w "$out/client.pcapng" </dev/null >"$out/client.log" 2>&1 &
    capture=$!
    h_wait_for 15 grep -q '^File: ' "$out/client.log" || h_die "$name: dumpcap did not start in $cns"
    lab_wait_capture "$cns" 1
    timeout 120 ip netns exec "$cns" ffmpeg -nostdin -hide_banner -loglevel error -rtsp_transport udp -min_port 5000 -max_port 5009 \
        -i "$url" -t 10 -f framemd5 "$out/frames.md5" </dev/null >"$out/ffmpeg.log" 2>&1 &
    ff=$!
    # Once the SETUPs are answered, until the TEARDOWN, the expectations are there (those the media did not use).
    h_wait_for 90 rtsp_expectations "$out/expect-mid.txt" || true
    wait "$ff" || rc=$?
    h_wait_for 10 no_rtsp_expectations || true
    h_ctl expect list >"$out/expect-after.txt" 2>&1 || true
    h_capture_stop >/dev/null
    kill -INT "$capture" 2>/dev/null || true
    wait "$capture" 2>/dev/null || true
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true

    video=$(grep -c '^0,' "$out/frames.md5" 2>/dev/null || true)
    audio=$(grep -c '^1,' "$out/frames.md5" 2>/dev/null || true)
    h_result "$name: ffmpeg plays the stream through offloadd over RTP/UDP ($video video and $audio audio frames decoded)" \
        "$( ((rc == 0 && ${video:-0} >= 25 && ${audio:-0} >= 5)) || echo "ffmpeg exit $rc; $(tail -c 300 "$out/ffmpeg.log" | tr '\n' ' ')")"
    mid=$(grep -cE "^[0-9]+ proto=17 " "$out/expect-mid.txt" || true)
    h_result "$name: offloadctl expect list shows the helper's RTP/RTCP expectations while the stream runs ($mid)" \
        "$( ((mid >= 2)) || tr '\n' ';' <"$out/expect-mid.txt")"
    after=$(grep -cE "^[0-9]+ proto=17 " "$out/expect-after.txt" || true)
    h_result "$name: after ffmpeg's TEARDOWN no expectation of the helper is left" "$( ((after == 0)) || tr '\n' ';' <"$out/expect-after.txt")"
    # The WAN capture: nothing with a private source; no reset but ffmpeg's own on its control connection (it closes
    # right after sending TEARDOWN, so its kernel resets when the answer arrives), so no flow was taken for a new one.
    local leaks natted resets
    leaks=$(h_sources_in "$out/wan0.pcapng" "$LAB_LAN4_PREFIX" "$LAB_LAN6_PREFIX")
    [[ $router == *:* ]] && ip=ipv6
    natted=$(h_count "$out/wan0.pcapng" "udp && ($ip.src==$router || $ip.dst==$router)")
    h_result "$name: WAN capture: no packet with a LAN-private source ($natted datagrams to or from the router's address)" \
        "$([[ ${leaks%%$'\n'*} == 0 ]] && ((natted > 100)) || echo "$leaks leaked, $natted datagrams")"
    resets=$(h_count "$out/wan0.pcapng" "tcp.flags.reset==1 && !(tcp.dstport==554)")
    h_result "$name: WAN capture: no TCP reset but the client's after its TEARDOWN" "$( ((resets == 0)) || echo "$resets resets")"
}

# in_nat_ports PORT... : every port lies in offloadd's nat-ports (61000-65535).
in_nat_ports() {
    local p
    (($# > 0)) || return 1
    for p in "$@"; do ((p >= 61000 && p <= 65535)) || return 1; done
}

# --- 0: offloadd --check: the rtsp helper's options --------------------------------------------------------------
sed 's/^  - name: rtsp$/  - name: rtsp\n    ports: [554, 8554]\n    options: { any-source: true }/' "$here/offloadd-rtsp.yaml" >"$H_WORK/good.yaml"
sed 's/^  - name: rtsp$/  - name: rtsp\n    options: { any-source: maybe }/' "$here/offloadd-rtsp.yaml" >"$H_WORK/bad.yaml"
check_rc=0
check_out=$(dotnet "$H_OFFLOADD" --check --config "$H_WORK/good.yaml" 2>&1) || check_rc=$?
h_result "offloadd --check accepts the rtsp helper with ports [554, 8554] and any-source: true" "$( ((check_rc == 0)) || echo "exit $check_rc: $check_out")"
check_rc=0
check_out=$(dotnet "$H_OFFLOADD" --check --config "$H_WORK/bad.yaml" 2>&1) || check_rc=$?
h_result "offloadd --check refuses any-source: maybe, naming the option" \
    "$( ((check_rc != 0)) && grep -q 'any-source' <<<"$check_out" || echo "exit $check_rc: $check_out")"

# --- 1: masquerade: the client behind the router ------------------------------------------------------------------
lab_up "$sfx" >/dev/null
h_daemon_start "$R" "$H_REPO/tests/lab/offloadd-rtsp.yaml" --apply-rules || h_die "offloadd did not start: $(tail -5 "$H_DAEMON_LOG")"
h_on_exit "ip netns exec '$R' dotnet '$H_OFFLOADCTL' rules remove >/dev/null 2>&1"
kernel_rules=$({ ip netns exec "$R" iptables-save && ip netns exec "$R" ip6tables-save; } | grep -E -- '--helper|MASQUERADE|SNAT|DNAT' | grep -v -- '^-A OFFLOAD-NAT-' || true)
h_result "masquerade: offloadd started with the rtsp helper; no kernel NAT and no kernel helper rules" "$kernel_rules"
stream masquerade "$S" "$LAB_WAN4_SERVER" "$C" "rtsp://$LAB_WAN4_SERVER:554/test"
out=$H_WORK/masquerade

# What left on the WAN: the SETUPs name the router's ports, never the client's address.
mapfile -t setups < <(transports "$out/wan0.pcapng" "$LAB_WAN4_ROUTER")
mapfile -t answers < <(transports "$out/wan0.pcapng" "$LAB_WAN4_SERVER")
read -r -a announced <<<"$(printf '%s\n' "${setups[@]}" | grep -o 'client_port=[0-9]*-[0-9]*' | tr '=-' '  ' | awk '{print $2, $3}' | tr '\n' ' ')"
h_result "masquerade: the SETUPs that left on the WAN announce the router's ports from offloadd's nat-ports (${announced[*]:-none}), no private address" \
    "$( ((${#setups[@]} >= 2)) && in_nat_ports "${announced[@]}" && ! printf '%s\n' "${setups[@]}" | grep -qF "$LAB_LAN4_PREFIX" || printf '%s; ' "${setups[@]}")"
# What reached the client: the answers name its own ports again (ffmpeg's, from 5000), never the router's.
mapfile -t received < <(transports "$out/client.pcapng" "$LAB_WAN4_SERVER")
read -r -a own <<<"$(printf '%s\n' "${received[@]}" | grep -o 'client_port=[0-9]*-[0-9]*' | tr '=-' '  ' | awk '{print $2, $3}' | tr '\n' ' ')"
own_ok=1
for p in "${own[@]}"; do ((p >= 5000 && p <= 5009)) || own_ok=0; done
h_result "masquerade: the answers the client received name its own ports again (${own[*]:-none})" \
    "$( ((${#received[@]} >= 2 && ${#own[@]} >= 2 && own_ok)) || printf '%s; ' "${received[@]}")"
stats=$(h_ctl stats 2>&1) || true
info "offloadd stats: $(grep -E '^ +(ExpectationsCreated|ConnectionsExpected|PayloadRewrites|Helper[A-Za-z]+|Dropped[A-Za-z]*) +[1-9]' <<<"$stats" | tr -s ' ' | tr '\n' ';')"

# Nothing else was opened. The client listens on its media ports again (ffmpeg has gone); the server sends to each
# port it was told, from another port of its own (only a pinhole would let that in: they were withdrawn), and to ports
# never announced; then from its media port to the first (the media flow is still tracked: it arrives).
media_sport=$(printf '%s\n' "${answers[@]}" | grep -o 'server_port=[0-9]*' | head -1 | cut -d= -f2)
if ((${#announced[@]} >= 2)) && [[ -n $media_sport ]]; then
    : >"$out/probe.txt"
    ip netns exec "$C" "$PY" "$here/udp-probe.py" listen "$out/probe.txt" 5000 5001 5002 5003 5004 5005 >"$out/listen.log" 2>&1 &
    listener=$!
    h_wait_for 20 grep -q '^ready' "$out/listen.log" || h_die "the UDP listener did not start: $(cat "$out/listen.log")"
    never=()
    for p in 61001 62001 63001 64001 65001; do [[ " ${announced[*]} " == *" $p "* ]] || never+=("$p"); done
    ip netns exec "$S" "$PY" "$here/udp-probe.py" send "$LAB_WAN4_ROUTER" 40000 "${announced[@]}" "${never[@]}"
    sleep 2
    stray=$(wc -l <"$out/probe.txt")
    h_result "masquerade: after TEARDOWN, datagrams from another port of the server to the announced ports, and to ${#never[@]} ports never announced, reach nothing" \
        "$( ((stray == 0)) || echo "$stray arrived at the client: $(sort "$out/probe.txt" | uniq -c | tr '\n' ' ')")"
    ip netns exec "$S" "$PY" "$here/udp-probe.py" send "$LAB_WAN4_ROUTER" "$media_sport" "${announced[0]}"
    h_wait_for 10 test -s "$out/probe.txt" || true
    h_result "masquerade: the same datagram from the server's media port $media_sport to ${announced[0]} (the media flow, still tracked) reaches the client (at its port $(sort -u "$out/probe.txt" | tr '\n' ' '))" \
        "$([[ -s $out/probe.txt ]] || echo "nothing arrived")"
    kill "$listener" 2>/dev/null || true
    wait "$listener" 2>/dev/null || true
else
    not_ok "masquerade: probes after TEARDOWN" "no SETUP and answer seen on the WAN (${setups[*]:-} / ${answers[*]:-})"
fi

# Interleaved (RTP over the RTSP connection, ffmpeg's -rtsp_transport tcp): left alone, nothing expected, and the
# media frames on the control connection (the helper steps over them by their length) are never read as requests.
out=$H_WORK/interleaved
mkdir -p "$out"
ip netns exec "$S" "$PY" "$here/rtsp-server.py" "$LAB_WAN4_SERVER" 554 >"$out/server.log" 2>&1 &
server=$!
h_wait_for 60 grep -q '^ready' "$out/server.log" || h_die "interleaved: the RTSP server did not start: $(tail -3 "$out/server.log")"
created_before=$(h_ctl stats 2>/dev/null | awk '$1 == "ExpectationsCreated" {print $2}')
rc=0
timeout 120 ip netns exec "$C" ffmpeg -nostdin -hide_banner -loglevel error -rtsp_transport tcp -i "rtsp://$LAB_WAN4_SERVER:554/test" \
    -t 10 -f framemd5 "$out/frames.md5" </dev/null >"$out/ffmpeg.log" 2>&1 || rc=$?
kill "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
video=$(grep -c '^0,' "$out/frames.md5" 2>/dev/null || true)
stats=$(h_ctl stats 2>&1) || true
created_after=$(awk '$1 == "ExpectationsCreated" {print $2}' <<<"$stats")
h_result "interleaved: ffmpeg plays the stream as RTP over the RTSP connection through offloadd ($video video frames), and the helper expected nothing for it" \
    "$( ((rc == 0 && ${video:-0} >= 25)) && [[ ${created_before:-0} == "${created_after:-0}" ]] || echo "ffmpeg exit $rc; expectations created ${created_before:-0} -> ${created_after:-0}; $(tail -c 300 "$out/ffmpeg.log" | tr '\n' ' ')")"

# The same over IPv6 (NAT66: the masquerade rule names no family).
stream masquerade-ipv6 "$S" "$LAB_WAN6_SERVER" "$C" "rtsp://[$LAB_WAN6_SERVER]:554/test" "$LAB_WAN6_ROUTER"
mapfile -t setups < <(tshark -n -r "$H_WORK/masquerade-ipv6/wan0.pcapng" -Y "rtsp.transport && ipv6.src==$LAB_WAN6_ROUTER" -T fields -e rtsp.transport 2>/dev/null)
h_result "masquerade-ipv6: the SETUPs that left on the WAN announce ports from offloadd's nat-ports, no private address" \
    "$( ((${#setups[@]} >= 2)) && in_nat_ports $(printf '%s\n' "${setups[@]}" | grep -o 'client_port=[0-9]*-[0-9]*' | tr '=-' '  ' | awk '{print $2, $3}') &&
        ! printf '%s\n' "${setups[@]}" | grep -qF "$LAB_LAN6_CLIENT" || printf '%s; ' "${setups[@]}")"
stats=$(h_ctl stats 2>&1) || true
h_result "masquerade: no helper failure and no warning in offloadd's log" "$(grep -E '^ +HelperFailures +[1-9]' <<<"$stats"; h_daemon_log_problems)"
h_daemon_stop
lab_down "$sfx" >/dev/null 2>&1 || true

# --- 2: port forward: the server behind the router -------------------------------------------------------------------
lab_up "$sfx" >/dev/null
cat >"$H_WORK/forward.yaml" <<YAML
# e2e-rtsp.sh: the RTSP server on the LAN, reached at the router's WAN address (DNAT of TCP 554)
interfaces:
  - name: lan0
  - name: wan0
nat:
  - {type: dnat, protocol: tcp, destination: $LAB_WAN4_ROUTER/32, dport: 554, to: $LAB_LAN4_CLIENT, ports: 554}
  - {type: masquerade, out: wan0}
helpers:
  - name: rtsp
steering:
  from: [lan0]
  to: [wan0]
  queue-pre: 0
  queue-post: 1
  nat-ports: 61000-65535
YAML
rm -f "$H_WORK/state" # a fresh table: the first lab's connections are not this one's
h_daemon_start "$R" "$H_WORK/forward.yaml" --apply-rules || h_die "offloadd did not start: $(tail -5 "$H_DAEMON_LOG")"
stream forward "$C" "$LAB_LAN4_CLIENT" "$S" "rtsp://$LAB_WAN4_ROUTER:554/test"
out=$H_WORK/forward
mapfile -t answers < <(transports "$out/wan0.pcapng" "$LAB_WAN4_ROUTER")
read -r -a placed <<<"$(printf '%s\n' "${answers[@]}" | grep -o 'server_port=[0-9]*-[0-9]*' | tr '=-' '  ' | awk '{print $2, $3}' | tr '\n' ' ')"
h_result "forward: the answers that left on the WAN announce the server's ports at the router, from offloadd's nat-ports (${placed[*]:-none}), no private address" \
    "$( ((${#answers[@]} >= 2)) && in_nat_ports "${placed[@]}" && ! printf '%s\n' "${answers[@]}" | grep -qF "$LAB_LAN4_CLIENT" || printf '%s; ' "${answers[@]}")"
media=$(h_count "$out/wan0.pcapng" "udp && ip.src==$LAB_WAN4_ROUTER && udp.srcport==${placed[0]:-0}")
h_result "forward: the server's RTP leaves the router from the announced port ${placed[0]:-?} ($media datagrams)" "$( ((media >= 25)) || echo "too few")"
stats=$(h_ctl stats 2>&1) || true
h_result "forward: no helper failure and no warning in offloadd's log" "$(grep -E '^ +HelperFailures +[1-9]' <<<"$stats"; h_daemon_log_problems)"
h_daemon_stop
info "runtime $((SECONDS - started)) s"
h_finish

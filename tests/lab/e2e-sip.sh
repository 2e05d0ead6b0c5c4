#!/usr/bin/env bash
# offloadd's SIP helper end to end (issue 12): sipp as the phone in the client namespace calls a sipp user agent in
# the server namespace through the router (tests/lab/offloadd-sip.yaml: every flow, MASQUERADE on wan0, the sip
# helper; no kernel helper). The call must complete (INVITE, 180, 200 with SDP, ACK, BYE, 200), and G.711 RTP must
# flow both ways: the far side plays to the media address the INVITE's SDP announced, which only a rewritten SDP and
# the RTP expectation it opened make reach the phone. The WAN capture must hold no LAN-private source address, and
# the SIP the far side received no LAN-private address. Then a fresh lab runs the same call through the kernel's
# MASQUERADE and its own sip helper (-j CT --helper sip, nf_nat_sip), and the INVITE and 200 OK as each NAT
# forwarded them are compared line by line (sipp's random tags, branches and Call-IDs aside). Each runs over UDP, TCP
# and IPv6 (UDP; both NATs masquerade IPv6 too, NAT66). A registration, an inbound call and baresip: e2e-sip-ua.sh.
#
# Output and environment: tests/lab/harness.sh (LAB_SUFFIX, default -sp; KEEP_WORK=1).
# Usage: tests/lab/e2e-sip.sh   (as root; builds the Release binaries if they are missing)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"
# shellcheck source=tests/lab/sip.sh
. "$here/sip.sh"

sfx=${LAB_SUFFIX--sp}
h_init ol-sip
h_need_root_and_tools ip iptables sipp dumpcap tshark python3 dotnet
h_build
h_on_exit "lab_down '$sfx'"
h_on_exit 'jobs -p | xargs -r kill'

data=$H_REPO/tests/data/sip
C=$(lab_ns client "$sfx")
R=$(lab_ns router "$sfx")
S=$(lab_ns server "$sfx")
phone_media=6000
peer_media=7000
started=$SECONDS

# call NAME [TRANSPORT] [FAMILY] : one call through the router as it is set up now (sipp's transport: u1, UDP, by
# default; t1, TCP; family 4 by default, or 6); captures wan0 (router) and eth0 (client).
call() {
    local name=$1 transport=${2:-u1} family=${3:-4} proto=udp out=$H_WORK/$1 uas uac rc_uac=0 rc_uas=0
    local ipf=ip server=$LAB_WAN4_SERVER phone=$LAB_LAN4_CLIENT router_ip=$LAB_WAN4_ROUTER remote=$LAB_WAN4_SERVER
    router=$LAB_WAN4_ROUTER
    if ((family == 6)); then
        ipf=ipv6 server=$LAB_WAN6_SERVER phone=$LAB_LAN6_CLIENT router_ip=$LAB_WAN6_ROUTER remote="[$LAB_WAN6_SERVER]"
        router="[$LAB_WAN6_ROUTER]"
    fi
    [[ $transport == t1 ]] && proto=tcp
    sip_captures_start "$out"
    timeout 40 ip netns exec "$S" sipp -sf "$data/uas.xml" -i "$server" -p 5060 -mi "$server" \
        -mp "$peer_media" -t "$transport" -m 1 -nostdin -trace_err -error_file "$out/uas.err" </dev/null >"$out/uas.log" 2>&1 &
    uas=$!
    lab_wait_port "$S" 5060 10 "$proto" >/dev/null
    timeout 40 ip netns exec "$C" sipp -sf "$data/uac.xml" "$remote:5060" -s bob -i "$phone" -p 5060 \
        -mi "$phone" -mp "$phone_media" -t "$transport" -m 1 -nostdin -trace_err -error_file "$out/uac.err" </dev/null >"$out/uac.log" 2>&1 &
    uac=$!
    wait "$uac" || rc_uac=$?
    wait "$uas" || rc_uas=$?
    sip_captures_stop
    h_result "$name: the call completes (INVITE, 200 with SDP, ACK, BYE, 200: both sipp exit 0)" \
        "$( ((rc_uac == 0 && rc_uas == 0)) || echo "uac $rc_uac, uas $rc_uas; $(tail -c 300 "$out/uac.err" "$out/uas.err" 2>/dev/null | tr '\n' ' ')")"

    local sent heard_wan heard
    sent=$(h_count "$out/wan0.pcapng" "udp && $ipf.src==$router_ip && udp.dstport==$peer_media")
    heard_wan=$(h_count "$out/wan0.pcapng" "udp && $ipf.src==$server && udp.srcport==$peer_media && $ipf.dst==$router_ip")
    heard=$(h_count "$out/client.pcapng" "udp && $ipf.src==$server && udp.srcport==$peer_media && $ipf.dst==$phone && udp.dstport==$phone_media")
    h_result "$name: RTP flows both ways (phone to peer on the WAN: $sent, peer to the router: $heard_wan, reaching the phone at :$phone_media: $heard)" \
        "$( ((sent > 50 && heard > 50)) || echo "too few")"

    local leaks
    leaks=$(h_sources_in "$out/wan0.pcapng" "$LAB_LAN4_PREFIX" "$LAB_LAN6_PREFIX")
    h_result "$name: no packet with a LAN-private source on the WAN" "$([[ ${leaks%%$'\n'*} == 0 ]] || echo "$leaks")"

    sip_payloads "$out/wan0.pcapng" "sip && $ipf.src==$router_ip" >"$out/sip-out-raw.txt"
    sip_payloads "$out/wan0.pcapng" "sip && $ipf.src==$router_ip" compare >"$out/sip-out.txt"
    sip_payloads "$out/client.pcapng" "sip && $ipf.dst==$phone" >"$out/sip-in.txt"
    if grep -q INVITE "$out/sip-out-raw.txt" && ! grep -qF "$phone" "$out/sip-out-raw.txt"; then
        ok "$name: the SIP that left on the WAN names the router, never the phone ($(grep -c '^----' "$out/sip-out.txt") messages)"
    else
        not_ok "$name: the SIP that left on the WAN names the router, never the phone" "$(grep -F "$phone" "$out/sip-out-raw.txt" | head -3 | tr '\n' ' ')"
    fi
}

# --- 1: offloadd in the router --------------------------------------------------------------------------------
lab_up "$sfx" >/dev/null
h_daemon_start "$R" "$H_REPO/tests/lab/offloadd-sip.yaml" --apply-rules || h_die "offloadd did not start: $(tail -5 "$H_DAEMON_LOG")"
h_on_exit "ip netns exec '$R' dotnet '$H_OFFLOADCTL' rules remove >/dev/null 2>&1"
kernel_rules=$({ ip netns exec "$R" iptables-save && ip netns exec "$R" ip6tables-save; } | grep -E -- '--helper|MASQUERADE|SNAT|DNAT' | grep -v -- '^-A OFFLOAD-NAT-' || true)
h_result "router: offloadd started with the sip helper; no kernel NAT and no kernel helper rules" "$kernel_rules"
call offloadd
call offloadd-tcp t1
call offloadd-v6 u1 6
stats=$(h_ctl stats 2>&1) || true
info "offloadd stats: $(grep -E '^ +(ExpectationsCreated|ConnectionsExpected|PayloadRewrites|Helper[A-Za-z]+|Dropped[A-Za-z]*) +[1-9]' <<<"$stats" | tr -s ' ' | tr '\n' ';')"
expected=$(grep -E '^ +ConnectionsExpected ' <<<"$stats" | awk '{print $2}' || true)
h_result "offloadd: the peer's media came in as an expected connection ($expected)" "$( ((${expected:-0} >= 1)) || echo none)"
media_port=$(grep -o 'm=audio [0-9]*' "$H_WORK/offloadd/sip-out-raw.txt" | head -1 | awk '{print $2}')
h_result "offloadd: the INVITE announces a media port at the router from its nat-ports 61000-65535 (${media_port:-none}), where the steering rules queue the peer's RTP" \
    "$([[ $media_port =~ ^[0-9]+$ ]] && ((media_port >= 61000 && media_port <= 65535)) || echo "not in range")"
h_result "offloadd: no helper failure and no warning in its log" "$(grep -E '^ +HelperFailures +[1-9]' <<<"$stats"; h_daemon_log_problems)"
h_daemon_stop
lab_down "$sfx" >/dev/null 2>&1 || true

# --- 2: the same call through the kernel's MASQUERADE and its sip helper (nf_conntrack_sip, nf_nat_sip) ----------
lab_up "$sfx" >/dev/null
lab_kernel_nat "$sfx"
for ipt in iptables ip6tables; do
    ip netns exec "$R" "$ipt" -t raw -A PREROUTING -p udp --dport 5060 -j CT --helper sip
    ip netns exec "$R" "$ipt" -t raw -A PREROUTING -p tcp --dport 5060 -j CT --helper sip
done
call kernel
call kernel-tcp t1
call kernel-v6 u1 6

# --- 3: what each NAT sent on: the SIP that left on the WAN and the SIP the phone received ---------------------------
for run in "" -tcp -v6; do
    for dir in out in; do
        what="${run:+${run#-}: }the SIP messages $([[ $dir == out ]] && echo 'that left on the WAN' || echo 'the phone received') are the same through the kernel and through offloadd"
        if diff "$H_WORK/kernel$run/sip-$dir.txt" "$H_WORK/offloadd$run/sip-$dir.txt" >"$H_WORK/sip$run-$dir.diff"; then
            ok "$what"
        else
            not_ok "$what" "$(grep '^[<>]' "$H_WORK/sip$run-$dir.diff" | head -8 | tr '\n' ' ')"
        fi
    done
done
info "runtime $((SECONDS - started)) s"
h_finish

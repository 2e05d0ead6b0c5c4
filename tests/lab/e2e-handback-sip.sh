#!/usr/bin/env bash
# Hand-back of UDP (tests/lab/offloadd-handback-sip.yaml): SIP calls through offloadd (sipp calls sipp, masqueraded,
# IPv4), whose RTP, an expected connection of the sip helper, is handed to the kernel's conntrack once answered and past
# 20 packets, while the SIP signalling stays with offloadd. Two calls: in the first the phone's RTP opens the media
# flow (the peer's begins 500 ms after the ACK), in the second the peer's (the phone's begins late). For each: the kernel's table holds the RTP flow in the middle of the call, translated
# to the port offloadd chose (the one the INVITE's SDP announced on the WAN), and forwarded most of the RTP both ways
# (its accounting); every RTP packet sent reached the other end, without a gap longer than 250 ms (the audio has 30 ms
# between packets); nothing with a LAN-private source left on the WAN; the signalling is in offloadd's table and not in
# the kernel's; and once the call is over and the kernel's entry times out (UDP timeouts shortened to 3 s in the
# router), offloadd's entry and the hand-back set's entries go with it.
#
# FLOWS=all runs the same with steering flows: all, where the hand-back set alone lets the RTP past the rules.
#
# Output and environment: tests/lab/harness.sh (LAB_SUFFIX, default -hbU; KEEP_WORK=1). Ends with "N passed, N failed".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"
# shellcheck source=tests/lab/sip.sh
. "$here/sip.sh"

sfx=${LAB_SUFFIX:--hbU}
h_init "ol-handback-sip$sfx"
h_need_root_and_tools ip iptables ipset conntrack sipp dumpcap tshark python3 dotnet
h_build
h_on_exit "lab_down '$sfx'"
h_on_exit 'jobs -p | xargs -r kill'
work=$H_WORK
cfg=$work/offloadd.yaml
h_flows_config "$H_REPO/tests/lab/offloadd-handback-sip.yaml" "$cfg"
flows=$H_FLOWS
# The lab's phone scenario, with 6 s of RTP rather than 3: time for the hand-back to be seen in the middle of the call.
sed 's/<pause milliseconds="3000"\/>/<pause milliseconds="6000"\/>/' "$H_REPO/tests/data/sip/uac.xml" >"$work/uac.xml"
grep -q 'milliseconds="6000"' "$work/uac.xml" || h_die "no 3000 ms pause in tests/data/sip/uac.xml"
# Who opens the media flow: the side that begins its RTP 500 ms after the ACK (sent or received) is second.
late() { sed 's/^  <nop>$/  <pause milliseconds="500"\/>\n  <nop>/' "$1" >"$2" && grep -q 'milliseconds="500"' "$2"; }
late "$work/uac.xml" "$work/uac-late.xml" || h_die "no <nop> line in tests/data/sip/uac.xml"
late "$H_REPO/tests/data/sip/uas.xml" "$work/uas-late.xml" || h_die "no <nop> line in tests/data/sip/uas.xml"

C=$(lab_ns client "$sfx")
R=$(lab_ns router "$sfx")
S=$(lab_ns server "$sfx")
phone=$LAB_LAN4_CLIENT
server=$LAB_WAN4_SERVER
router=$LAB_WAN4_ROUTER
phone_media=6000
peer_media=7000
started=$SECONDS

lab_up "$sfx" >/dev/null
# The kernel's accounting (packets per direction in conntrack -L), and UDP timeouts of 3 s rather than 30 and 120, so
# that the kernel's entry ends (and offloadd's with it) within the test once the call is over.
ip netns exec "$R" sysctl -qw net.netfilter.nf_conntrack_acct=1 net.netfilter.nf_conntrack_udp_timeout=3 \
    net.netfilter.nf_conntrack_udp_timeout_stream=3

if h_daemon_start "$R" "$cfg" --apply-rules --remove-rules-on-stop; then
    ok "offloadd started in flows: $flows with hand-back of sip"
else
    not_ok "offloadd started in flows: $flows with hand-back of sip" "$(tail -5 "$H_DAEMON_LOG")"
    h_die "offloadd did not start"
fi

kernel_udp() { ip netns exec "$R" conntrack -L -p udp 2>/dev/null || true; }
# The RTP flow (whichever side began it), and the router's port in it: the peer's RTP arrives there.
rtp_of() { grep -E "sport=$phone_media dport=$peer_media |sport=$peer_media dport=$phone_media " <<<"$1" || true; }
port_of() { sed -nE "s/.* src=${server//./\\.} dst=${router//./\\.} sport=$peer_media dport=([0-9]+) .*/\1/p" <<<"$1" | head -n 1; }
has_kernel_rtp() { [[ -n $(rtp_of "$(kernel_udp)") ]]; }
# rtp_stream FILE FILTER : how many packets match, and the longest time between two of them in ms.
rtp_stream() {
    tshark -n -r "$1" -Y "$2" -T fields -e frame.time_epoch 2>/dev/null |
        awk 'NR > 1 && ($1 - t) * 1000 > g {g = ($1 - t) * 1000} {t = $1} END {printf "%d %d\n", NR, g}'
}

# call NAME PHONE FAR : one call with the phone's scenario PHONE and the far side's FAR, and the checks of the hand-back
# of its RTP.
call() {
    local name=$1 out=$work/$1 uas uac rc_uac=0 rc_uas=0 in_kernel ours kernel_port our_port at_end dropped line handed
    local by_kernel_out by_kernel_back phone_sent phone_heard phone_gap peer_sent peer_heard peer_gap media_port leaks withdrawn

    # 1. Captures on the WAN, at the phone and at the far side; the far side answers, the phone calls.
    sip_captures_start "$out"
    h_capture_start "$S" eth0 "$out/server.pcapng"
    timeout 40 ip netns exec "$S" sipp -sf "$3" -i "$server" -p 5060 -mi "$server" \
        -mp "$peer_media" -t u1 -m 1 -nostdin -trace_err -error_file "$out/uas.err" </dev/null >"$out/uas.log" 2>&1 &
    uas=$!
    lab_wait_port "$S" 5060 10 udp >/dev/null
    timeout 40 ip netns exec "$C" sipp -sf "$2" "$server:5060" -s bob -i "$phone" -p 5060 \
        -mi "$phone" -mp "$phone_media" -t u1 -m 1 -nostdin -trace_err -error_file "$out/uac.err" </dev/null >"$out/uac.log" 2>&1 &
    uac=$!

    # In the middle of the call: the kernel has the RTP flow, on offloadd's port; offloadd keeps the signalling.
    h_wait_for 8 has_kernel_rtp || true
    in_kernel=$(kernel_udp)
    ours=$(h_ctl conntrack list)
    kernel_port=$(port_of "$(rtp_of "$in_kernel")")
    our_port=$(port_of "$(rtp_of "$ours")")
    h_result "$name: in the call, the kernel's table holds the RTP flow translated to offloadd's port (kernel ${kernel_port:-none}, offloadd ${our_port:-none})" \
        "$([[ -n $kernel_port && $kernel_port == "$our_port" ]] && ((kernel_port >= 61000)) || echo "kernel: '$(rtp_of "$in_kernel")'; offloadd: '$(rtp_of "$ours")'")"
    h_result "$name: the kernel's RTP entry is assured and has no helper" \
        "$(rtp_of "$in_kernel" | grep -q '\[ASSURED\]' && ! rtp_of "$in_kernel" | grep -q 'helper=' || echo "'$(rtp_of "$in_kernel")'")"
    h_result "$name: the SIP signalling stays with offloadd: in its table, not in the kernel's" \
        "$([[ -n $(signalling "$ours") && -z $(signalling "$in_kernel") ]] || echo "offloadd: '$(signalling "$ours")'; kernel: '$(signalling "$in_kernel")'")"

    wait "$uac" || rc_uac=$?
    wait "$uas" || rc_uas=$?
    # Read at once, before the kernel's entry times out: what the kernel forwarded of the RTP, each way.
    at_end=$(rtp_of "$(kernel_udp)")
    sip_captures_stop
    dropped=$(h_capture_stop)
    h_result "$name: the call completes (INVITE, 200 with SDP, ACK, BYE, 200: both sipp exit 0)" \
        "$( ((rc_uac == 0 && rc_uas == 0)) || echo "uac $rc_uac, uas $rc_uas; $(tail -c 300 "$out/uac.err" "$out/uas.err" 2>/dev/null | tr '\n' ' ')")"
    read -r by_kernel_out by_kernel_back < <(grep -oE 'packets=[0-9]+' <<<"$at_end" | cut -d= -f2 | tr '\n' ' ') || true
    h_result "$name: the kernel forwarded most of the RTP, after the hand-back (${by_kernel_out:-0} and ${by_kernel_back:-0} packets each way)" \
        "$( ((${by_kernel_out:-0} >= 100 && ${by_kernel_back:-0} >= 100)) || echo "too few: '$at_end'")"

    # 2. Every RTP packet sent reached the other end, through the hand-back, without a gap.
    read -r phone_sent _ < <(rtp_stream "$out/client.pcapng" "udp && ip.src==$phone && udp.srcport==$phone_media && udp.dstport==$peer_media")
    read -r phone_heard phone_gap < <(rtp_stream "$out/client.pcapng" "udp && ip.src==$server && udp.srcport==$peer_media && ip.dst==$phone && udp.dstport==$phone_media")
    read -r peer_sent _ < <(rtp_stream "$out/server.pcapng" "udp && ip.src==$server && udp.srcport==$peer_media")
    read -r peer_heard peer_gap < <(rtp_stream "$out/server.pcapng" "udp && ip.src==$router && ip.dst==$server && udp.dstport==$peer_media")
    h_result "$name: the phone heard all the peer's RTP ($phone_heard of $peer_sent), the longest gap $phone_gap ms" \
        "$( ((phone_heard == peer_sent && phone_heard > 150 && phone_gap < 250)) || echo "lost or late")"
    h_result "$name: the peer heard all the phone's RTP ($peer_heard of $phone_sent), the longest gap $peer_gap ms${dropped:+ (dumpcap dropped $dropped)}" \
        "$( ((peer_heard == phone_sent && peer_heard > 150 && peer_gap < 250)) || echo "lost or late")"
    media_port=$(sip_payloads "$out/wan0.pcapng" "sip && ip.src==$router" | grep -o 'm=audio [0-9]*' | head -n 1 | awk '{print $2}')
    h_result "$name: the INVITE on the WAN announced the port the kernel's entry translates to (${media_port:-none})" \
        "$([[ -n $media_port && $media_port == "$kernel_port" ]] || echo "kernel ${kernel_port:-none}")"

    # 3. Nothing untranslated on the WAN.
    leaks=$(h_sources_in "$out/wan0.pcapng" "$LAB_LAN4_PREFIX" "$LAB_LAN6_PREFIX")
    h_result "$name: no packet with a LAN-private source on the WAN" "$([[ ${leaks%%$'\n'*} == 0 ]] || echo "$leaks")"

    line=$(h_ctl stats | grep '^handback' || true)
    handed=$(sed -nE 's/.*handed back ([0-9]+).*/\1/p' <<<"$line")
    h_result "$name: offloadd handed the RTP back, the kernel refused none (${line:-no handback line})" \
        "$( ((${handed:-0} >= handed_before + 1)) && grep -q 'refused 0,' <<<"$line" || echo "no more than before ($handed_before)")"
    handed_before=${handed:-0}

    # 4. The call is over: the kernel's entry times out (3 s), and its destroy event takes offloadd's and the hand-back
    # set's entries with it. The kernel reaps an expired entry when its garbage collector passes, or when a dump meets
    # it (here).
    h_wait_for 15 kernel_done || true
    h_result "$name: the kernel's RTP entry ended" "$(rtp_of "$(kernel_udp)")"
    if h_wait_for 5 no_rtp_left; then
        ok "$name: offloadd's RTP entry went with the kernel's"
    else
        not_ok "$name: offloadd's RTP entry went with the kernel's" "$(rtp_of "$(h_ctl conntrack list)")"
    fi
    withdrawn=$(h_ctl stats | sed -nE 's/^handback:.*withdrawn after the kernel.s end ([0-9]+).*/\1/p')
    h_result "$name: withdrawn after the kernel's destroy event: ${withdrawn:-none}" \
        "$( ((${withdrawn:-0} >= withdrawn_before + 1)) || echo "no more than before ($withdrawn_before)")"
    withdrawn_before=${withdrawn:-0}
    h_wait_for 3 set_empty || true
    h_result "$name: the hand-back set is empty again" "$(set_empty || echo "$(set_entries) entries: $(ip netns exec "$R" ipset list offloadh4 | tail -n 3 | tr '\n' ' ')")"
}
# The SIP flow's own line (offloadd's lines name it as the RTP's master= too), in either listing's format.
signalling() { grep -E "^(ipv4 +2 +)?udp +17 +[0-9]+ src=$phone dst=$server sport=5060 dport=5060 " <<<"$1" || true; }
kernel_done() { [[ -z $(rtp_of "$(kernel_udp)") ]]; }
no_rtp_left() { [[ -z $(rtp_of "$(h_ctl conntrack list)") ]]; }
set_entries() { ip netns exec "$R" ipset list -t offloadh4 | sed -nE 's/^Number of entries: ([0-9]+)/\1/p'; }
set_empty() { [[ $(set_entries) == 0 ]]; }
handed_before=0 withdrawn_before=0

# The peer's RTP begins 500 ms after the ACK: the phone's opens the media flow, from the port the INVITE announced.
call phone-first "$work/uac.xml" "$work/uas-late.xml"
# The phone's RTP begins 500 ms after its ACK: the peer's opens the flow, at that port.
call peer-first "$work/uac-late.xml" "$H_REPO/tests/data/sip/uas.xml"

h_daemon_stop
h_result "no warning or error in offloadd's log" "$(h_daemon_log_problems | head -3)"
info "runtime $((SECONDS - started)) s"
h_finish

#!/usr/bin/env bash
# offloadd's SIP helper with a registration and a real user agent (issue 12), beside tests/lab/e2e-sip.sh:
# 1. REGISTER, then an inbound call: sipp as the phone in the client namespace registers with a sipp registrar in the
#    server namespace through the router (tests/lab/offloadd-sip.yaml: MASQUERADE on wan0, the sip helper, no kernel
#    helper); the Contact the registrar gets must name the router, and a caller in the server namespace then calls that
#    Contact from another port: a new flow that only the router's signalling expectation lets in, to the phone. The
#    call must complete with RTP both ways.
# 2. baresip (Debian's user agent) as the phone calls the sipp far side, with G.711 both ways.
# Both run through offloadd, then through the kernel's MASQUERADE and its own helper (-j CT --helper sip, nf_nat_sip),
# and the SIP of the registered call as each NAT forwarded it (to the phone, and out on the WAN) is compared.
#
# Output and environment: tests/lab/harness.sh (LAB_SUFFIX, default -su; KEEP_WORK=1).
# Usage: tests/lab/e2e-sip-ua.sh   (as root; builds the Release binaries if they are missing)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"
# shellcheck source=tests/lab/sip.sh
. "$here/sip.sh"

sfx=${LAB_SUFFIX--su}
h_init ol-sip-ua
h_need_root_and_tools ip iptables sipp baresip dumpcap tshark python3 dotnet
h_build
h_on_exit "lab_down '$sfx'"
h_on_exit 'jobs -p | xargs -r kill'

data=$H_REPO/tests/data/sip
C=$(lab_ns client "$sfx")
R=$(lab_ns router "$sfx")
S=$(lab_ns server "$sfx")
phone_media=6000
peer_media=7000
router=$LAB_WAN4_ROUTER
started=$SECONDS

# rtp_checks NAME DIR PHONE_PORTS : RTP both ways (the phone's left on the WAN from the router, the far side's reached
# the phone at a port matching the display filter PHONE_PORTS), and no LAN-private source on the WAN.
rtp_checks() {
    local name=$1 out=$2 ports=$3 sent heard leaks
    sent=$(h_count "$out/wan0.pcapng" "udp && ip.src==$LAB_WAN4_ROUTER && udp.dstport==$peer_media")
    heard=$(h_count "$out/client.pcapng" "udp && ip.src==$LAB_WAN4_SERVER && udp.srcport==$peer_media && ip.dst==$LAB_LAN4_CLIENT && ($ports)")
    h_result "$name: RTP flows both ways (phone to peer on the WAN: $sent, peer reaching the phone: $heard)" \
        "$( ((sent > 50 && heard > 50)) || echo "too few")"
    leaks=$(h_sources_in "$out/wan0.pcapng" "$LAB_LAN4_PREFIX" "$LAB_LAN6_PREFIX")
    h_result "$name: no packet with a LAN-private source on the WAN" "$([[ ${leaks%%$'\n'*} == 0 ]] || echo "$leaks")"
}

# registered_call NAME [CMD] : the phone registers, CMD (if any) runs while the registration stands (its output in
# NAME/after-register.txt), then the far side calls the Contact the registrar got, from port 5070.
registered_call() {
    local name=$1 out=$H_WORK/$1 reg rc_reg=0 rc_phone=0 contact uas uac rc_uas=0 rc_uac=0
    sip_captures_start "$out"
    timeout 40 ip netns exec "$S" sipp -sf "$data/registrar.xml" -i "$LAB_WAN4_SERVER" -p 5060 -m 1 -nostdin \
        -trace_msg -message_file "$out/registrar.msg" -trace_err -error_file "$out/registrar.err" </dev/null >"$out/registrar.log" 2>&1 &
    reg=$!
    lab_wait_port "$S" 5060 10 udp >/dev/null
    timeout 40 ip netns exec "$C" sipp -sf "$data/register.xml" "$LAB_WAN4_SERVER:5060" -i "$LAB_LAN4_CLIENT" -p 5060 -m 1 \
        -nostdin -trace_err -error_file "$out/register.err" </dev/null >"$out/register.log" 2>&1 || rc_phone=$?
    wait "$reg" || rc_reg=$?
    h_result "$name: the phone registers (REGISTER, 200: both sipp exit 0)" "$( ((rc_phone == 0 && rc_reg == 0)) || echo "phone $rc_phone, registrar $rc_reg")"
    contact=$(grep -o 'Contact: *<sip:alice@[^>;]*' "$out/registrar.msg" 2>/dev/null | head -1 | sed 's/.*@//')
    h_result "$name: the registrar got a Contact at the router (${contact:-none})" "$([[ $contact == "$LAB_WAN4_ROUTER":* ]] || echo "not the router's")"
    [[ -z ${2-} ]] || eval "$2" >"$out/after-register.txt" 2>&1 || true

    # The phone answers calls now; the far side calls the registered Contact from another port: a new flow.
    timeout 40 ip netns exec "$C" sipp -sf "$data/uas.xml" -i "$LAB_LAN4_CLIENT" -p 5060 -mi "$LAB_LAN4_CLIENT" -mp "$phone_media" \
        -m 1 -nostdin -trace_err -error_file "$out/uas.err" </dev/null >"$out/uas.log" 2>&1 &
    uas=$!
    lab_wait_port "$C" 5060 10 udp >/dev/null
    timeout 40 ip netns exec "$S" sipp -sf "$data/uac.xml" "${contact:-$LAB_WAN4_ROUTER:5060}" -s alice -i "$LAB_WAN4_SERVER" -p 5070 \
        -mi "$LAB_WAN4_SERVER" -mp "$peer_media" -m 1 -nostdin -trace_err -error_file "$out/uac.err" </dev/null >"$out/uac.log" 2>&1 &
    uac=$!
    wait "$uac" || rc_uac=$?
    wait "$uas" || rc_uas=$?
    sip_captures_stop
    h_result "$name: the far side's call from port 5070 to the registered Contact reaches the phone and completes (both sipp exit 0)" \
        "$( ((rc_uac == 0 && rc_uas == 0)) || echo "caller $rc_uac, phone $rc_uas; $(tail -c 300 "$out/uac.err" "$out/uas.err" 2>/dev/null | tr '\n' ' ')")"
    rtp_checks "$name" "$out" "udp.dstport==$phone_media"
    sip_payloads "$out/wan0.pcapng" "sip && ip.src==$LAB_WAN4_ROUTER" >"$out/sip-out-raw.txt"
    sip_payloads "$out/wan0.pcapng" "sip && ip.src==$LAB_WAN4_ROUTER" compare >"$out/sip-out.txt"
    sip_payloads "$out/client.pcapng" "sip && ip.dst==$LAB_LAN4_CLIENT" compare >"$out/sip-in.txt"
    local announced left
    announced=$(grep -o 'm=audio [0-9]*' "$out/sip-out-raw.txt" 2>/dev/null | tail -1 | awk '{print $2}' || true)
    left=$(tshark -n -r "$out/wan0.pcapng" -Y "udp && ip.src==$LAB_WAN4_ROUTER && udp.dstport==$peer_media" -T fields -e udp.srcport 2>/dev/null | sort -u | xargs || true)
    h_result "$name: the phone's RTP leaves from the router's port its answer announced (${announced:-none}; left from: ${left:-nothing}): one flow with the peer's" \
        "$([[ -n $announced && $left == "$announced" ]] || echo differ)"
    if grep -q REGISTER "$out/sip-out-raw.txt" && grep -q '^SIP/2.0 200' "$out/sip-out-raw.txt" && ! grep -qF "$LAB_LAN4_CLIENT" "$out/sip-out-raw.txt"; then
        ok "$name: the SIP that left on the WAN (REGISTER, the phone's answers) names the router, never the phone"
    else
        not_ok "$name: the SIP that left on the WAN names the router, never the phone" "$(grep -F "$LAB_LAN4_CLIENT" "$out/sip-out-raw.txt" | head -3 | tr '\n' ' ')"
    fi
}

# baresip_call NAME : baresip as the phone (G.711 A-law, a 440 Hz tone as its microphone) calls the sipp far side for
# about 8 s and hangs up (BYE).
baresip_call() {
    local name=$1 out=$H_WORK/$1 cfg uas rc_uas=0 rc_ua=0
    cfg=$out/baresip
    mkdir -p "$cfg"
    cat >"$cfg/config" <<EOC
poll_method epoll
sip_listen $LAB_LAN4_CLIENT:5060
sip_transports udp
audio_player aufile,$cfg/heard.wav
audio_source ausine,440
ausrc_srate 48000
ausrc_channels 2
auplay_srate 48000
audio_alert aufile,/dev/null
rtp_ports 10000-10020
module_path /usr/lib/baresip/modules
module g711.so
module ausine.so
module aufile.so
module account.so
module menu.so
EOC
    echo "<sip:phone@$LAB_LAN4_CLIENT>;regint=0;audio_codecs=PCMA" >"$cfg/accounts"
    sip_captures_start "$out"
    timeout 40 ip netns exec "$S" sipp -sf "$data/uas.xml" -i "$LAB_WAN4_SERVER" -p 5060 -mi "$LAB_WAN4_SERVER" -mp "$peer_media" \
        -m 1 -nostdin -trace_err -error_file "$out/uas.err" </dev/null >"$out/uas.log" 2>&1 &
    uas=$!
    lab_wait_port "$S" 5060 10 udp >/dev/null
    timeout 40 ip netns exec "$C" baresip -f "$cfg" -e "/dial sip:bob@$LAB_WAN4_SERVER" -t 8 </dev/null >"$out/baresip.log" 2>&1 || rc_ua=$?
    wait "$uas" || rc_uas=$?
    sip_captures_stop
    h_result "$name: baresip's call is established and ends with its BYE (sipp far side exits 0)" \
        "$(grep -q 'Call established' "$out/baresip.log" && ((rc_uas == 0)) || echo "baresip $rc_ua, sipp $rc_uas; $(grep -aE 'call:|session closed|error' "$out/baresip.log" | head -3 | tr '\n' ' ')")"
    h_result "$name: baresip says the far side's RTP reached it" "$(grep -q "incoming rtp for 'audio' established" "$out/baresip.log" || echo "no incoming RTP in its log")"
    rtp_checks "$name" "$out" "udp.dstport>=10000 && udp.dstport<=10020"
    # baresip's a=ssrc CNAME (sip:phone@LAN address) is an identifier, not an address anyone sends to: neither NAT rewrites it.
    sip_payloads "$out/wan0.pcapng" "sip && ip.src==$LAB_WAN4_ROUTER" | grep -v '^a=ssrc:' >"$out/sip-out-raw.txt"
    if grep -q INVITE "$out/sip-out-raw.txt" && ! grep -qF "$LAB_LAN4_CLIENT" "$out/sip-out-raw.txt"; then
        ok "$name: baresip's SIP that left on the WAN names the router, never the phone"
    else
        not_ok "$name: baresip's SIP that left on the WAN names the router, never the phone" "$(grep -F "$LAB_LAN4_CLIENT" "$out/sip-out-raw.txt" | head -3 | tr '\n' ' ')"
    fi
}

# --- 1: offloadd in the router --------------------------------------------------------------------------------
lab_up "$sfx" >/dev/null
h_daemon_start "$R" "$H_REPO/tests/lab/offloadd-sip.yaml" --apply-rules || h_die "offloadd did not start: $(tail -5 "$H_DAEMON_LOG")"
h_on_exit "ip netns exec '$R' dotnet '$H_OFFLOADCTL' rules remove >/dev/null 2>&1"
registered_call offloadd-register "h_ctl expect list"
port=$(grep -o 'Contact: *<sip:alice@[^>;]*' "$H_WORK/offloadd-register/registrar.msg" 2>/dev/null | head -1 | sed 's/.*://')
h_result "offloadd: offloadctl expect list shows the registration's signalling expectation, from the registrar to the Contact's port at the router (${port:-none})" \
    "$(grep -qE "src=$LAB_WAN4_SERVER dst=$LAB_WAN4_ROUTER sport=0 dport=${port:-none} .*helper=sip class=signalling" "$H_WORK/offloadd-register/after-register.txt" \
        || tr '\n' ';' <"$H_WORK/offloadd-register/after-register.txt")"
baresip_call offloadd-baresip
stats=$(h_ctl stats 2>&1) || true
info "offloadd stats: $(grep -E '^ +(ExpectationsCreated|ConnectionsExpected|PayloadRewrites|Helper[A-Za-z]+|Dropped[A-Za-z]*) +[1-9]' <<<"$stats" | tr -s ' ' | tr '\n' ';')"
h_result "offloadd: no helper failure and no warning in its log" "$(grep -E '^ +HelperFailures +[1-9]' <<<"$stats"; h_daemon_log_problems)"
h_daemon_stop
lab_down "$sfx" >/dev/null 2>&1 || true

# --- 2: the same through the kernel's MASQUERADE and its sip helper (nf_conntrack_sip, nf_nat_sip) ---------------------
lab_up "$sfx" >/dev/null
lab_kernel_nat "$sfx"
ip netns exec "$R" iptables -t raw -A PREROUTING -p udp --dport 5060 -j CT --helper sip
registered_call kernel-register
baresip_call kernel-baresip

# --- 3: the registered call as each NAT forwarded it -------------------------------------------------------------------
for dir in out in; do
    what="registered call: the SIP messages $([[ $dir == out ]] && echo 'that left on the WAN' || echo 'the phone received') are the same through the kernel and through offloadd"
    if diff "$H_WORK/kernel-register/sip-$dir.txt" "$H_WORK/offloadd-register/sip-$dir.txt" >"$H_WORK/register-$dir.diff"; then
        ok "$what"
    else
        not_ok "$what" "$(grep '^[<>]' "$H_WORK/register-$dir.diff" | head -8 | tr '\n' ' ')"
    fi
done
info "runtime $((SECONDS - started)) s"
h_finish

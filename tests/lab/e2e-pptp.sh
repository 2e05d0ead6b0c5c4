#!/usr/bin/env bash
# offloadd's PPTP helper and GRE tracking end to end (issue 13): pptpd in the server namespace answers two PPTP
# clients behind the router's one address, both calling it with the same call ID (0x1111) at once. The control
# channel is real (pptpd); the kernel has no PPP, so pppd cannot carry the call, and its GRE comes from scripted peers
# (tests/lab/pptp-peer.py: the clients, and beside pptpd an echo that answers each call's GRE to the call ID pptpd's
# Outgoing-Call-Reply paired with it). Through offloadd (tests/lab/offloadd-pptp.yaml: MASQUERADE, the pptp helper,
# no kernel helper) and then through the kernel's MASQUERADE and its own helper (-j CT --helper pptp, nf_nat_pptp):
# each call is set up, the reply names each client's own call ID, pptpd sees the two calls under distinct call IDs
# (the control connection's translated port, the kernel's choice), the GRE passes both ways to the right client, the
# WAN capture holds no LAN-private source and no reset, and the PPTP messages pptpd received and the clients received
# are the same through both NATs (the translated ports aside). Then an IPv6 call through offloadd's NAT66 (a scripted
# server: pptpd and the kernel's helper are IPv4 only).
#
# Output and environment: tests/lab/harness.sh (LAB_SUFFIX, default -gr; KEEP_WORK=1).
# Usage: tests/lab/e2e-pptp.sh   (as root; builds the Release binaries if they are missing)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"

sfx=${LAB_SUFFIX--gr}
h_init ol-pptp
h_need_root_and_tools ip iptables pptpd dumpcap tshark python3 dotnet
h_build
h_on_exit "lab_down '$sfx'"
h_on_exit 'jobs -p | xargs -r kill'

peer=$here/pptp-peer.py
C=$(lab_ns client "$sfx")
R=$(lab_ns router "$sfx")
S=$(lab_ns server "$sfx")
client2=192.0.2.3
call_id=0x1111
count=10
started=$SECONDS

# pptp_messages FILE FILTER : each control connection's PPTP messages matching FILTER, one line per message (type
# and bytes), a call ID equal to the connection's port at the router shown as PORT, the connections sorted (two
# clients at once: their order is a race).
pptp_messages() {
    tshark -n -r "$1" -Y "pptp && ($2)" -T fields -e tcp.srcport -e tcp.dstport -e tcp.payload 2>/dev/null | python3 -c '
import sys
flows = {}
for line in sys.stdin:
    sport, dport, payload = line.rstrip("\n").split("\t")
    port = int(dport) if sport == "1723" else int(sport)
    data = bytes.fromhex(payload.replace(":", ""))
    off = 0
    while off + 12 <= len(data):
        length = int.from_bytes(data[off:off + 2], "big")
        if length < 12:
            break
        msg = bytearray(data[off:off + length])
        kind = int.from_bytes(msg[8:10], "big")
        text = msg.hex()
        # Call ID fields (RFC 2637): the sender s call ID, and the peer s in replies.
        for field in (12, 14) if kind in (8, 10) else (12,):
            if len(msg) >= field + 2 and int.from_bytes(msg[field:field + 2], "big") == port:
                text = text[:2 * field] + "PORT" + text[2 * field + 4:]
        arrow = "<" if sport == "1723" else ">"
        flows.setdefault(port, []).append(f"{arrow} {kind} {text}")
        off += length
# A control connection pptpd closed before the call (the client dialled again) is left out: only calls compare.
for flow in sorted("\n".join(lines) for lines in flows.values() if any(line.startswith("< 8 ") for line in lines)):
    print(flow)
    print("----")
'
}

# calls NAME : two clients call pptpd at once through the router as it is set up now.
calls() {
    local name=$1 out=$H_WORK/$1 echo cap pids=() rc=0
    mkdir -p "$out"
    printf 'option %s\nlocalip 10.99.0.1\nremoteip 10.99.0.100-200\nlisten %s\n' "$out/options" "$LAB_WAN4_SERVER" >"$out/pptpd.conf"
    echo "name pptpd" >"$out/options"
    ip netns exec "$S" pptpd -f -c "$out/pptpd.conf" -o "$out/options" -p "$out/pptpd.pid" </dev/null >"$out/pptpd.log" 2>&1 &
    pids+=($!)
    lab_wait_port "$S" 1723 15 >/dev/null || h_die "pptpd did not listen: $(cat "$out/pptpd.log")"
    ip netns exec "$S" python3 "$peer" gre-echo eth0 120 </dev/null >"$out/echo.json" 2>"$out/echo.err" &
    echo=$!
    h_wait_for 15 grep -q ready "$out/echo.err" || h_die "the GRE echo did not start: $(cat "$out/echo.err")"
    ip netns exec "$C" dumpcap -q -p -i eth0 -w "$out/client.pcapng" </dev/null >"$out/client.log" 2>&1 &
    cap=$!
    h_wait_for 15 grep -q '^File: ' "$out/client.log"
    h_capture_start "$R" wan0 "$out/wan0.pcapng"
    # Both router interfaces in one file, as a user records a router, for the replay (section 3).
    ip netns exec "$R" dumpcap -q -p -i lan0 -i wan0 -w "$out/router.pcapng" </dev/null >"$out/router.log" 2>&1 &
    local both=$!
    h_wait_for 15 grep -q '^File: ' "$out/router.log"
    sleep 0.3

    # pptpd closes each control connection once pppd fails: the clients wait for that (a loaded machine may take a while)
    # rather than clear a call on a closing connection, which pptpd would answer with a reset.
    ip netns exec "$C" env PPTP_WAIT_CLOSE=30 timeout 60 python3 "$peer" client "$LAB_WAN4_SERVER" "$LAB_LAN4_CLIENT" "$call_id" "$count" </dev/null >"$out/c1.json" 2>"$out/c1.err" &
    local c1=$!
    ip netns exec "$C" env PPTP_WAIT_CLOSE=30 timeout 60 python3 "$peer" client "$LAB_WAN4_SERVER" "$client2" "$call_id" "$count" </dev/null >"$out/c2.json" 2>"$out/c2.err" &
    local c2=$!
    wait "$c1" || rc=$?
    wait "$c2" || rc=$?
    sleep 0.5
    h_capture_stop >/dev/null
    kill -INT "$cap" "$both" 2>/dev/null || true
    wait "$cap" "$both" 2>/dev/null || true
    kill -TERM "$echo" 2>/dev/null || true
    wait "$echo" 2>/dev/null || true
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    h_result "$name: both clients ran their call to the end" "$( ((rc == 0)) || echo "exit $rc: $(tail -c 300 "$out/c1.err" "$out/c2.err" | tr '\n' ' ')")"

    local c want="{\"peer\": $((call_id)), \"result\": 1, \"sent\": $count, \"received\": $count}" got
    for c in c1 c2; do
        got=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({k: d[k] for k in ("peer","result","sent","received")}))' "$out/$c.json" 2>/dev/null || echo "none")
        h_result "$name: client ${c#c}: the call is accepted, its reply names the client's own call ID, and its GRE passes both ways ($got)" \
            "$([[ $got == "$want" ]] || echo "expected $want")"
    done

    # The call IDs pptpd answered under: one per client, each the control connection's translated port.
    local ports seen
    ports=$(tshark -n -r "$out/wan0.pcapng" -Y "tcp.flags.syn==1 && tcp.flags.ack==0 && tcp.dstport==1723" -T fields -e tcp.srcport 2>/dev/null | sort -n | tr '\n' ' ')
    seen=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(str(k) for k in sorted(int(x) for x in d if d[x] == int(sys.argv[2]))))' "$out/echo.json" "$count" 2>/dev/null || true)
    h_result "$name: pptpd knew the two calls by distinct call IDs, the control connections' ports at the router (${seen:-none})" \
        "$(python3 -c 'import sys; seen, ports = sys.argv[1].split(), sys.argv[2].split(); sys.exit(len(set(seen)) != 2 or not set(seen) <= set(ports))' "$seen" "$ports" || echo "ports $ports")"

    h_wan_clean "$name: WAN" "$out/wan0.pcapng" "ip.src==$LAB_WAN4_ROUTER" 4 "$LAB_LAN4_PREFIX" "$LAB_LAN6_PREFIX"
    local gre_leaks
    gre_leaks=$(h_count "$out/wan0.pcapng" "gre && !(ip.src==$LAB_WAN4_ROUTER || ip.dst==$LAB_WAN4_ROUTER)")
    h_result "$name: every GRE packet on the WAN is from or to the router's address" "$( ((gre_leaks == 0)) || echo "$gre_leaks others")"

    pptp_messages "$out/wan0.pcapng" "ip.addr==$LAB_WAN4_SERVER" >"$out/pptp-wan.txt"
    pptp_messages "$out/client.pcapng" "ip.addr==$LAB_LAN4_CLIENT || ip.addr==$client2" >"$out/pptp-client.txt"
}

# --- 1: offloadd in the router --------------------------------------------------------------------------------
lab_up "$sfx" >/dev/null
ip -n "$C" addr add "$client2/24" dev eth0
h_daemon_start "$R" "$H_REPO/tests/lab/offloadd-pptp.yaml" --apply-rules || h_die "offloadd did not start: $(tail -5 "$H_DAEMON_LOG")"
h_on_exit "ip netns exec '$R' dotnet '$H_OFFLOADCTL' rules remove >/dev/null 2>&1"
kernel_rules=$({ ip netns exec "$R" iptables-save && ip netns exec "$R" ip6tables-save; } | grep -E -- '--helper|MASQUERADE|SNAT|DNAT' | grep -v -- '^-A OFFLOAD-NAT-' || true)
h_result "router: offloadd started with the pptp helper; no kernel NAT and no kernel helper rules" "$kernel_rules"
calls offloadd

# IPv6, which the kernel's helper lacks: a scripted server, the call's GRE through offloadd's NAT66.
out6=$H_WORK/offloadd-ipv6
mkdir -p "$out6"
ip netns exec "$S" python3 "$peer" pac "$LAB_WAN6_SERVER" 120 </dev/null >"$out6/pac.json" 2>"$out6/pac.err" &
pac=$!
h_wait_for 15 grep -q ready "$out6/pac.err" || h_die "the scripted server did not start: $(cat "$out6/pac.err")"
h_capture_start "$R" wan0 "$out6/wan0.pcapng"
rc6=0
ip netns exec "$C" timeout 60 python3 "$peer" client "$LAB_WAN6_SERVER" "$LAB_LAN6_CLIENT" "$call_id" "$count" </dev/null >"$out6/c.json" 2>"$out6/c.err" || rc6=$?
h_capture_stop >/dev/null
kill -TERM "$pac" 2>/dev/null || true
wait "$pac" 2>/dev/null || true
got6=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["peer"], d["sent"], d["received"])' "$out6/c.json" 2>/dev/null || echo "none")
h_result "offloadd: an IPv6 call through NAT66: the reply names the client's call ID and its GRE passes both ways (peer, sent, received: $got6)" \
    "$([[ $rc6 == 0 && $got6 == "$((call_id)) $count $count" ]] || echo "exit $rc6: $(tail -c 200 "$out6/c.err")")"
leaks6=$(h_sources_in "$out6/wan0.pcapng" "$LAB_LAN4_PREFIX" "$LAB_LAN6_PREFIX")
h_result "offloadd: IPv6: no packet with a LAN-private source on the WAN" "$([[ ${leaks6%%$'\n'*} == 0 ]] || echo "$leaks6")"

stats=$(h_ctl stats 2>&1) || true
info "offloadd stats: $(grep -E '^ +(ExpectationsCreated|ConnectionsExpected|PayloadRewrites|Helper[A-Za-z]+|Dropped[A-Za-z]*) +[1-9]' <<<"$stats" | tr -s ' ' | tr '\n' ';')"
expected=$(grep -E '^ +ConnectionsExpected ' <<<"$stats" | awk '{print $2}' || true)
h_result "offloadd: each call's GRE came in as an expected connection ($expected)" "$( ((${expected:-0} >= 3)) || echo "fewer than 3")"
h_result "offloadd: no helper failure and no warning in its log" "$(grep -E '^ +HelperFailures +[1-9]' <<<"$stats"; h_daemon_log_problems)"
h_daemon_stop
lab_down "$sfx" >/dev/null 2>&1 || true

# --- 1b: offloadd in helpers mode (a fresh state: the first run's connections are of a lab gone): only the control
# connections and the calls' GRE are offloadd's -----------------------------------------------------------------------------
lab_up "$sfx" >/dev/null
ip -n "$C" addr add "$client2/24" dev eth0
sed 's/^  queue-pre: 0$/  flows: helpers/; /^  queue-post: 1$/d' "$H_REPO/tests/lab/offloadd-pptp.yaml" >"$H_WORK/offloadd-helpers.yaml"
h_daemon_start "$R" "$H_WORK/offloadd-helpers.yaml" --apply-rules --state "$H_WORK/state-helpers" || h_die "offloadd (helpers mode) did not start: $(tail -5 "$H_DAEMON_LOG")"
calls offloadd-helpers
stats=$(h_ctl stats 2>&1) || true
expected=$(grep -E '^ +ConnectionsExpected ' <<<"$stats" | awk '{print $2}' || true)
h_result "offloadd, helpers mode: each call's GRE came in as an expected connection ($expected)" "$( ((${expected:-0} >= 2)) || echo "fewer than 2")"
h_result "offloadd, helpers mode: no helper failure and no warning in its log" "$(grep -E '^ +HelperFailures +[1-9]' <<<"$stats"; h_daemon_log_problems)"
h_daemon_stop
lab_down "$sfx" >/dev/null 2>&1 || true

# --- 2: the same calls through the kernel's MASQUERADE and its pptp helper (nf_conntrack_pptp, nf_nat_pptp) -------
lab_up "$sfx" >/dev/null
ip -n "$C" addr add "$client2/24" dev eth0
lab_kernel_nat "$sfx"
ip netns exec "$R" iptables -t raw -A PREROUTING -p tcp --dport 1723 -j CT --helper pptp
calls kernel

# --- 3: what each NAT sent on -------------------------------------------------------------------------------------
for side in wan client; do
    what="the PPTP messages $([[ $side == wan ]] && echo 'pptpd received and sent' || echo 'the clients received and sent') are the same through the kernel and through offloadd"
    if [[ -s $H_WORK/kernel/pptp-$side.txt ]] && diff "$H_WORK/kernel/pptp-$side.txt" "$H_WORK/offloadd/pptp-$side.txt" >"$H_WORK/pptp-$side.diff"; then
        ok "$what ($(grep -c '^[<>]' "$H_WORK/kernel/pptp-$side.txt") messages)"
    else
        not_ok "$what" "$(grep '^[<>]' "$H_WORK/pptp-$side.diff" | head -4 | cut -c1-120 | tr '\n' ' ')"
    fi
done

# The kernel's recording replayed through the engine (offloadctl replay, no port range, as the kernel): every packet
# that left the kernel's router, the GRE and the rewritten control messages included, leaves ours the same.
replayed=$(dotnet "$H_OFFLOADCTL" replay --config "$H_REPO/tests/data/pptp/lab.yaml" --compare "$H_WORK/kernel/router.pcapng" "$H_WORK/kernel/router.pcapng" 2>&1) && rc=0 || rc=$?
info "replay: $(tail -n 1 <<<"$replayed")"
h_result "the kernel's recording replayed through offloadd's engine: every packet that left is the kernel's" \
    "$( ((rc == 0)) || echo "exit $rc: $(tail -n 4 <<<"$replayed")")"
if [[ -n ${PPTP_KEEP_CAPTURE:-} ]]; then
    cp "$H_WORK/kernel/router.pcapng" "$PPTP_KEEP_CAPTURE"
fi
info "runtime $((SECONDS - started)) s"
h_finish

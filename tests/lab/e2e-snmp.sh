#!/usr/bin/env bash
# offloadd's SNMP and NetBIOS-NS helpers end to end (issue 13), with net-snmp and samba's nmblookup, through offloadd
# (tests/lab/offloadd-snmp.yaml: the LAN masqueraded, SNMP on the WAN address forwarded to an agent on the LAN; no
# kernel NAT, no kernel helper) and then, in a fresh lab, through the kernel's MASQUERADE and DNAT with its own
# helpers attached (-j CT --helper snmp, snmp_trap, netbios-ns: nf_conntrack_snmp, nf_nat_snmp_basic,
# nf_conntrack_netbios_ns). The same exchanges in both:
#
#   1. snmptrap -v 1 and -v 2c from the LAN agent (192.0.2.2) to snmptrapd beyond the WAN, naming the agent's own
#      address (the v1 trap's agent-addr and an IpAddress binding): what snmptrapd logged and what left on the WAN;
#   2. snmpget and snmpset (an IpAddress naming the manager) from the LAN manager to snmpd beyond the WAN;
#   3. snmpwalk of ipAdEntAddr from beyond the WAN to the LAN's snmpd through the port forward;
#   4. nmblookup on the LAN for a name held beyond the WAN, by a query to the WAN's broadcast address that the router
#      forwards (bc_forwarding); and the router's own query (nmblookup in the router, the kernel's helper in OUTPUT).
#
# The traps and the name query run once more through offloadd in helpers mode (flows: helpers).
#
# What must be equal: the v2c trap and the set request as they left on the WAN, and what snmptrapd logged of the v2c
# trap. What differs by design (docs/architecture.md): the kernel drops the v1 trap ("parser failed") where offloadd
# translates its agent-addr; the kernel leaves the forwarded agent's private address in its walk's answers; the
# kernel's netbios-ns helper serves only the router's own queries, offloadd's the forwarded one.
#
# Output and environment: tests/lab/harness.sh (LAB_SUFFIX, default -sn; KEEP_WORK=1).
# Usage: tests/lab/e2e-snmp.sh   (as root; builds the Release binaries if they are missing)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/lab-snmp.sh
. "$here/lab-snmp.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"

sfx=${LAB_SUFFIX--sn}
h_init ol-snmp
h_need_root_and_tools ip iptables snmpd snmptrapd snmpget snmpset snmpwalk snmptrap nmblookup dumpcap tshark python3 dotnet
h_build
h_on_exit "lab_down '$sfx'"
h_on_exit 'jobs -p | xargs -r kill'

C=$(lab_ns client "$sfx")
R=$(lab_ns router "$sfx")
S=$(lab_ns server "$sfx")
started=$SECONDS
name=$LAB_NBNS_NAME
setup() { snmp_lab_up "$sfx" "$H_WORK/$1" || h_die "the lab's peers did not start"; }

# exchanges NAME : every exchange through the router as set up now; wan0 captured into $H_WORK/NAME/wan0.pcapng.
exchanges() {
    local name_=$1 out=$H_WORK/$1 rc
    h_capture_start "$R" wan0 "$out/wan0.pcapng"

    snmp_tool "$C" snmptrap -v 1 -c public "$LAB_WAN4_SERVER" 1.3.6.1.4.1.8072.2.3 "$LAB_LAN4_CLIENT" 6 17 4242 \
        "1.3.6.1.2.1.4.20.1.1.$LAB_LAN4_CLIENT" a "$LAB_LAN4_CLIENT" >"$out/trap1.out" 2>&1 || true
    snmp_tool "$C" snmptrap -v 2c -c public "$LAB_WAN4_SERVER" 4242 1.3.6.1.4.1.8072.2.3.0.1 \
        "1.3.6.1.2.1.4.20.1.1.$LAB_LAN4_CLIENT" a "$LAB_LAN4_CLIENT" >"$out/trap2.out" 2>&1 || true

    rc=0
    snmp_tool "$C" snmpget -v 2c -c public "$LAB_WAN4_SERVER" 1.3.6.1.2.1.1.1.0 >"$out/get.out" 2>&1 || rc=$?
    h_result "$name_: snmpget from the LAN reaches snmpd beyond the WAN" "$( ((rc == 0)) && grep -q 'offload lab agent' "$out/get.out" || echo "exit $rc: $(tail -2 "$out/get.out")")"
    # snmpd refuses the set (nothing is writable there) and echoes the binding it received.
    snmp_tool "$C" snmpset -v 2c -c private "$LAB_WAN4_SERVER" "1.3.6.1.2.1.4.20.1.1.$LAB_LAN4_CLIENT" a "$LAB_LAN4_CLIENT" \
        >"$out/set.out" 2>&1 || true
    h_result "$name_: snmpset from the LAN is answered" "$(grep -qiE 'error|not writable|noCreation|IpAddress' "$out/set.out" || tail -2 "$out/set.out")"

    rc=0
    snmp_tool "$S" snmpwalk -v 2c -c public "$LAB_WAN4_ROUTER" 1.3.6.1.2.1.4.20.1.1 >"$out/walk.out" 2>&1 || rc=$?
    h_result "$name_: snmpwalk from beyond the WAN reaches the LAN's snmpd through the port forward" \
        "$( ((rc == 0)) && grep -q IpAddress "$out/walk.out" || echo "exit $rc: $(tail -2 "$out/walk.out")")"

    rc=0
    timeout 30 ip netns exec "$C" nmblookup -B 198.51.100.255 "$name" >"$out/nmb-forwarded.out" 2>&1 || rc=$?
    echo "$rc" >"$out/nmb-forwarded.rc"
    rc=0
    timeout 30 ip netns exec "$R" nmblookup -B 198.51.100.255 "$name" >"$out/nmb-router.out" 2>&1 || rc=$?
    h_result "$name_: the router's own broadcast name query is answered (the kernel's helper in OUTPUT)" \
        "$( ((rc == 0)) && grep -q "$LAB_WAN4_SERVER $name<00>" "$out/nmb-router.out" || echo "exit $rc: $(tail -2 "$out/nmb-router.out")")"

    h_wait_for 10 grep -qF '6.3.1.1.4.1.0 = OID' "$out/traps.log" || true
    sleep 1
    h_capture_stop >/dev/null
    # The SNMP that left on the WAN from the router: PDU, agent-addr, IpAddress values (request ids and ports aside).
    tshark -n -r "$out/wan0.pcapng" -Y "snmp && ip.src==$LAB_WAN4_ROUTER" -T fields -E separator=' ' \
        -e udp.dstport -e snmp.data -e snmp.agent_addr -e snmp.value.ipv4 2>/dev/null | tr -s ' ' | sed 's/^[0-9]\{5\} /reply /' >"$out/snmp-out.txt"
    # What snmptrapd logged: dates and the router's source port aside.
    sed -E 's/^[0-9-]+ [0-9:]+ //; s/\]:[0-9]+->/]:PORT->/g' "$out/traps.log" | grep -v '^NET-SNMP version' >"$out/traps.txt" || true
}

# --- 1: offloadd in the router --------------------------------------------------------------------------------
setup offloadd
ip netns exec "$R" iptables -t raw -A OUTPUT -p udp --dport 137 -j CT --helper netbios-ns
h_daemon_start "$R" "$H_REPO/tests/lab/offloadd-snmp.yaml" --apply-rules || h_die "offloadd did not start: $(tail -5 "$H_DAEMON_LOG")"
h_on_exit "ip netns exec '$R' dotnet '$H_OFFLOADCTL' rules remove >/dev/null 2>&1"
exchanges offloadd
o=$H_WORK/offloadd
stats=$(h_ctl stats 2>&1) || true
info "offloadd stats: $(grep -E '^ +(ExpectationsCreated|ConnectionsExpected|PayloadRewrites|Helper[A-Za-z]+|Dropped[A-Za-z]*) +[1-9]' <<<"$stats" | tr -s ' ' | tr '\n' ';')"
h_result "offloadd: snmptrapd logged the v1 trap with the router's address as its agent-addr and binding" \
    "$(grep -q "\[$LAB_WAN4_ROUTER\] (via UDP: \[$LAB_WAN4_ROUTER\]:PORT->\[$LAB_WAN4_SERVER\]:162) TRAP, SNMP v1" "$o/traps.txt" &&
        grep -q "Enterprise Specific Trap (17)" "$o/traps.txt" && grep -q "4.20.1.1.$LAB_LAN4_CLIENT = IpAddress: $LAB_WAN4_ROUTER" "$o/traps.txt" || cat "$o/traps.txt")"
h_result "offloadd: the v1 trap left on the WAN with agent-addr and binding translated" \
    "$(grep -qx "162 4 $LAB_WAN4_ROUTER $LAB_WAN4_ROUTER" "$o/snmp-out.txt" || cat "$o/snmp-out.txt")"
h_result "offloadd: the forwarded agent's walk answer names the router, not its LAN address" \
    "$(grep -q "IpAddress: $LAB_WAN4_ROUTER" "$o/walk.out" && ! grep -q "IpAddress: $LAB_LAN4_CLIENT" "$o/walk.out" || cat "$o/walk.out")"
h_result "offloadd: nmblookup on the LAN finds the name held beyond the WAN by broadcast (the answer came from another host than the one asked)" \
    "$( (($(cat "$o/nmb-forwarded.rc") == 0)) && grep -q "$LAB_WAN4_SERVER $name<00>" "$o/nmb-forwarded.out" || tail -2 "$o/nmb-forwarded.out")"
qport=$(tshark -n -r "$o/wan0.pcapng" -Y "nbns && ip.dst==198.51.100.255 && ip.src==$LAB_WAN4_ROUTER" -T fields -e udp.srcport 2>/dev/null | head -1)
expected=$(grep -E '^ +ConnectionsExpected ' <<<"$stats" | awk '{print $2}' || true)
h_result "offloadd: the forwarded query left masqueraded by offloadd (port ${qport:-none} in its nat-ports) and the answer came in as an expected connection (${expected:-0})" \
    "$([[ $qport =~ ^[0-9]+$ ]] && ((qport >= 61000 && ${expected:-0} >= 1)) || echo "port '$qport', expected '${expected:-0}'")"
leaks=$(h_sources_in "$o/wan0.pcapng" "$LAB_LAN4_PREFIX" "$LAB_LAN6_PREFIX")
inside=$(h_count "$o/wan0.pcapng" "snmp.agent_addr==$LAB_LAN4_PREFIX || snmp.value.ipv4==$LAB_LAN4_PREFIX")
h_result "offloadd: WAN capture clean: no LAN source, no LAN address in any SNMP IpAddress" \
    "$([[ ${leaks%%$'\n'*} == 0 ]] && ((inside == 0)) || echo "$leaks; $inside SNMP packets name a LAN address")"
h_result "offloadd: no helper failure and no warning in its log" "$(grep -E '^ +HelperFailures +[1-9]' <<<"$stats"; h_daemon_log_problems)"
h_daemon_stop
lab_down "$sfx" >/dev/null 2>&1 || true

# --- 2: the kernel's NAT and helpers (nf_nat_snmp_basic, nf_conntrack_netbios_ns) --------------------------------
setup kernel
snmp_kernel_router "$sfx"
exchanges kernel
k=$H_WORK/kernel
lab_down "$sfx" >/dev/null 2>&1 || true

# --- 3: offloadd in helpers mode (only the helpers' flows and what they expect are the daemon's) --------------------
# A port forward to a helper's port is refused in that mode (docs/steering.md), so the traps and the name query only.
setup helpers
sed -e '/type: dnat/d' -e 's/^  nat-ports: 61000-65535$/  nat-ports: 61000-65535\n  flows: helpers/' \
    "$H_REPO/tests/lab/offloadd-snmp.yaml" >"$H_WORK/helpers/offloadd.yaml"
h_daemon_start "$R" "$H_WORK/helpers/offloadd.yaml" --apply-rules || h_die "offloadd (helpers mode) did not start: $(tail -5 "$H_DAEMON_LOG")"
hm=$H_WORK/helpers
snmp_tool "$C" snmptrap -v 1 -c public "$LAB_WAN4_SERVER" 1.3.6.1.4.1.8072.2.3 "$LAB_LAN4_CLIENT" 6 17 4242 \
    "1.3.6.1.2.1.4.20.1.1.$LAB_LAN4_CLIENT" a "$LAB_LAN4_CLIENT" >"$hm/trap1.out" 2>&1 || true
rc=0
timeout 30 ip netns exec "$C" nmblookup -B 198.51.100.255 "$name" >"$hm/nmb-forwarded.out" 2>&1 || rc=$?
h_wait_for 10 grep -q 'TRAP, SNMP v1' "$hm/traps.log" || true
h_result "helpers mode: snmptrapd logged the v1 trap with the router's address as its agent-addr" \
    "$(grep -q "\[$LAB_WAN4_ROUTER\] (via UDP: \[$LAB_WAN4_ROUTER\]:[0-9]*->\[$LAB_WAN4_SERVER\]:162) TRAP, SNMP v1" "$hm/traps.log" || cat "$hm/traps.log")"
h_result "helpers mode: nmblookup on the LAN finds the name held beyond the WAN by broadcast" \
    "$( ((rc == 0)) && grep -q "$LAB_WAN4_SERVER $name<00>" "$hm/nmb-forwarded.out" || tail -2 "$hm/nmb-forwarded.out")"
h_result "helpers mode: no warning in offloadd's log" "$(h_daemon_log_problems)"
h_daemon_stop
lab_down "$sfx" >/dev/null 2>&1 || true

# --- 4: the kernel and offloadd side by side -------------------------------------------------------------------------------------
v2_of() { grep -E '^162 7 ' "$1" || true; }
set_of() { grep -E '^161 3 ' "$1" || true; }
h_result "the v2c trap left on the WAN the same through the kernel and offloadd ($(v2_of "$o/snmp-out.txt"))" \
    "$([[ -n $(v2_of "$o/snmp-out.txt") && $(v2_of "$k/snmp-out.txt") == "$(v2_of "$o/snmp-out.txt")" ]] || echo "kernel '$(v2_of "$k/snmp-out.txt")', offloadd '$(v2_of "$o/snmp-out.txt")'")"
h_result "the set request left on the WAN the same, naming the router ($(set_of "$o/snmp-out.txt"))" \
    "$([[ $(set_of "$o/snmp-out.txt") == "161 3 $LAB_WAN4_ROUTER" && $(set_of "$k/snmp-out.txt") == "$(set_of "$o/snmp-out.txt")" ]] || echo "kernel '$(set_of "$k/snmp-out.txt")', offloadd '$(set_of "$o/snmp-out.txt")'")"
kv2=$(grep -F '6.3.1.1.4.1.0 = OID' "$k/traps.txt" || true)
ov2=$(grep -F '6.3.1.1.4.1.0 = OID' "$o/traps.txt" || true)
h_result "snmptrapd logged the v2c trap the same through both" "$([[ -n $kv2 && $kv2 == "$ov2" ]] || echo "kernel '$kv2', offloadd '$ov2'")"
# The documented differences, checked so that a change in either shows.
h_result "kernel (documented difference): nf_nat_snmp_basic drops the v1 trap; none left on the WAN, snmptrapd logged none" \
    "$(! grep -qE '^162 4 ' "$k/snmp-out.txt" && ! grep -q 'Enterprise Specific' "$k/traps.txt" || echo "a v1 trap passed: $(cat "$k/snmp-out.txt")")"
h_result "kernel (documented difference): the forwarded agent's walk answer keeps its LAN address" \
    "$(grep -q "IpAddress: $LAB_LAN4_CLIENT" "$k/walk.out" || cat "$k/walk.out")"
h_result "kernel (documented difference): its netbios-ns helper does not serve a forwarded query" \
    "$( (($(cat "$k/nmb-forwarded.rc") != 0)) || cat "$k/nmb-forwarded.out")"
info "runtime $((SECONDS - started)) s"
h_finish

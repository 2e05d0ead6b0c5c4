#!/usr/bin/env bash
# The SNMP and NetBIOS-NS lab's peers and the kernel's reference router, shared by tests/lab/e2e-snmp.sh and
# tests/lab/record-snmp-captures.sh. Source after lab.sh.
#
#   snmp_lab_up SFX DIR     the lab (lab_up), the router's WAN address with its broadcast (the kernel's broadcast helper
#                           reads the mask there), directed broadcasts forwarded (bc_forwarding), and the peers:
#                           snmptrapd (DIR/traps.log) and snmpd beyond the WAN, snmpd on the LAN (192.0.2.2), a NetBIOS
#                           name server beyond the WAN holding $LAB_NBNS_NAME (DIR/nbns.log)
#   snmp_kernel_router SFX  the kernel's MASQUERADE, a port forward of UDP 161 on the WAN address to the LAN's agent, and
#                           the kernel's helpers: snmp, snmp_trap and netbios-ns before routing, netbios-ns in OUTPUT
#   snmp_tool NS TOOL ARGS  a net-snmp tool in NS with numeric OIDs and no MIB files (Debian ships none), 5 s x 3 tries

LAB_SNMP_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_NBNS_NAME=WORKGROUP

snmp_lab_up() {
    local sfx=$1 out=$2 c r s ns addr
    c=$(lab_ns client "$sfx") && r=$(lab_ns router "$sfx") && s=$(lab_ns server "$sfx") || return 1
    mkdir -p "$out" || return 1
    lab_up "$sfx" >/dev/null || return 1
    ip -n "$r" addr del "$LAB_WAN4_ROUTER/24" dev wan0 &&
        ip -n "$r" addr add "$LAB_WAN4_ROUTER/24" brd + dev wan0 || return 1
    for ns in all lan0 wan0; do ip netns exec "$r" sysctl -q -w "net.ipv4.conf.$ns.bc_forwarding=1" || return 1; done

    printf 'disableAuthorization yes\n' >"$out/snmptrapd.conf"
    ip netns exec "$s" snmptrapd -f -n -C -c "$out/snmptrapd.conf" -Lf "$out/traps.log" -M /nonexistent -m '' \
        "udp:$LAB_WAN4_SERVER:162" </dev/null >/dev/null 2>&1 &
    for addr in "$s:$LAB_WAN4_SERVER" "$c:$LAB_LAN4_CLIENT"; do
        ns=${addr%%:*}
        printf 'agentaddress udp:%s:161\nrocommunity public\nrwcommunity private\nsysDescr offload lab agent\n' "${addr#*:}" >"$out/snmpd-$ns.conf"
        ip netns exec "$ns" snmpd -f -Lf "$out/snmpd-$ns.log" -C -c "$out/snmpd-$ns.conf" -M /nonexistent -m '' \
            -p "$out/snmpd-$ns.pid" </dev/null >/dev/null 2>&1 &
    done
    ip netns exec "$s" python3 "$LAB_SNMP_HERE/netbios-responder.py" "$LAB_NBNS_NAME" "$LAB_WAN4_SERVER" "$out/nbns.log" </dev/null >/dev/null 2>&1 &
    lab_wait_port "$s" 162 15 udp >/dev/null && lab_wait_port "$s" 161 15 udp >/dev/null &&
        lab_wait_port "$c" 161 15 udp >/dev/null && lab_wait_port "$s" 137 15 udp >/dev/null
}

snmp_kernel_router() {
    local r
    r=$(lab_ns router "$1") || return 1
    lab_kernel_nat "$1" &&
        ip netns exec "$r" iptables -t nat -A PREROUTING -i wan0 -d "$LAB_WAN4_ROUTER" -p udp --dport 161 -j DNAT --to-destination "$LAB_LAN4_CLIENT" &&
        ip netns exec "$r" iptables -t raw -A PREROUTING -p udp --dport 161 -j CT --helper snmp &&
        ip netns exec "$r" iptables -t raw -A PREROUTING -p udp --dport 162 -j CT --helper snmp_trap &&
        ip netns exec "$r" iptables -t raw -A PREROUTING -p udp --dport 137 -j CT --helper netbios-ns &&
        ip netns exec "$r" iptables -t raw -A OUTPUT -p udp --dport 137 -j CT --helper netbios-ns
}

snmp_tool() {
    local ns=$1 tool=$2
    shift 2
    MIBS= MIBDIRS=/nonexistent ip netns exec "$ns" "$tool" -m '' -On -t 5 -r 2 "$@"
}

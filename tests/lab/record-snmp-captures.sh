#!/usr/bin/env bash
# Records the kernel reference captures of the SNMP and NetBIOS-NS helpers into tests/data/snmp/kernel/NAME.pcapng
# (see tests/data/snmp/README.md): the lab of tests/lab/lab-snmp.sh with the kernel's MASQUERADE, its port forward
# of UDP 161 and its own helpers (snmp, snmp_trap, netbios-ns), dumpcap in the router on lan0 and wan0, every offload
# off, each file sorted by time. One exchange per file:
#
#   v2c-trap        snmptrap -v 2c from the LAN agent, an IpAddress binding naming it (the kernel translates it)
#   get-set         snmpget, then snmpset of an IpAddress naming the LAN manager (translated), to snmpd beyond the WAN
#   v1-trap         snmptrap -v 1 from the LAN agent (the kernel drops it: "parser failed")
#   walk-forwarded  snmpwalk of ipAdEntAddr from beyond the WAN through the port forward (the kernel leaves the agent's
#                   LAN address in the answers)
#   nbns-broadcast  nmblookup on the LAN by the WAN's directed broadcast (the kernel's helper serves only the router's
#                   own queries: the answer is refused by the router)
#
# Usage: tests/lab/record-snmp-captures.sh [NAME...]   (default: all; as root)
# Environment: OUT_DIR (default tests/data/snmp/kernel), LAB_SUFFIX (default -snr).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/lab-snmp.sh
. "$here/lab-snmp.sh"

out_dir=${OUT_DIR:-$repo/tests/data/snmp/kernel}
sfx=${LAB_SUFFIX--snr}
all=(v2c-trap get-set v1-trap walk-forwarded nbns-broadcast)
C=$(lab_ns client "$sfx")
R=$(lab_ns router "$sfx")
S=$(lab_ns server "$sfx")
work=$(mktemp -d)
dumpcap_pid=

cleanup() {
    [[ -n $dumpcap_pid ]] && kill -INT "$dumpcap_pid" 2>/dev/null
    lab_down "$sfx" >/dev/null 2>&1 || true
    rm -rf -- "$work"
}
trap cleanup EXIT
die() {
    echo "record-snmp-captures: $*" >&2
    exit 1
}

exchange() {
    case $1 in
    v2c-trap)
        snmp_tool "$C" snmptrap -v 2c -c public "$LAB_WAN4_SERVER" 4242 1.3.6.1.4.1.8072.2.3.0.1 \
            "1.3.6.1.2.1.4.20.1.1.$LAB_LAN4_CLIENT" a "$LAB_LAN4_CLIENT"
        ;;
    get-set)
        snmp_tool "$C" snmpget -v 2c -c public "$LAB_WAN4_SERVER" 1.3.6.1.2.1.1.1.0
        snmp_tool "$C" snmpset -v 2c -c private "$LAB_WAN4_SERVER" "1.3.6.1.2.1.4.20.1.1.$LAB_LAN4_CLIENT" a "$LAB_LAN4_CLIENT" || true
        ;;
    v1-trap)
        snmp_tool "$C" snmptrap -v 1 -c public "$LAB_WAN4_SERVER" 1.3.6.1.4.1.8072.2.3 "$LAB_LAN4_CLIENT" 6 17 4242 \
            "1.3.6.1.2.1.4.20.1.1.$LAB_LAN4_CLIENT" a "$LAB_LAN4_CLIENT"
        ;;
    walk-forwarded)
        snmp_tool "$S" snmpwalk -v 2c -c public "$LAB_WAN4_ROUTER" 1.3.6.1.2.1.4.20.1.1
        ;;
    nbns-broadcast)
        ip netns exec "$C" nmblookup -B 198.51.100.255 "$LAB_NBNS_NAME" || true
        ;;
    *) die "unknown exchange '$1' (${all[*]})" ;;
    esac
}

mkdir -p "$out_dir"
names=("$@")
((${#names[@]})) || names=("${all[@]}")
for name in "${names[@]}"; do
    snmp_lab_up "$sfx" "$work/$name" || die "$name: the lab's peers did not start"
    snmp_kernel_router "$sfx" || die "$name: kernel rules"
    ip netns exec "$R" dumpcap -q -p -s 262144 -i lan0 -i wan0 -w "$work/$name.raw.pcapng" </dev/null >"$work/dumpcap.log" 2>&1 &
    dumpcap_pid=$!
    for _ in $(seq 1 200); do grep -q '^File: ' "$work/dumpcap.log" && break; sleep 0.05; done
    lab_wait_capture "$R" 2 || die "dumpcap is not capturing"
    exchange "$name" >"$work/$name.out" 2>&1 || die "$name failed: $(tail -3 "$work/$name.out")"
    sleep 1
    kill -INT "$dumpcap_pid"
    wait "$dumpcap_pid" || true
    dumpcap_pid=
    reordercap "$work/$name.raw.pcapng" "$out_dir/$name.pcapng" >/dev/null
    chmod 0644 "$out_dir/$name.pcapng"
    lab_down "$sfx" >/dev/null
    echo "$name.pcapng: $(capinfos -c -M "$out_dir/$name.pcapng" | awk '/Number of packets/ {print $NF}') frames ($(tr '\n' ' ' <"$work/$name.out" | cut -c1-100))" >&2
done

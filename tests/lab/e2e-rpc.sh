#!/usr/bin/env bash
# offloadd's RPC portmapper helper end to end (issue 13): Debian's rpcbind and rpcinfo, and a small RPC service
# (tests/lab/rpc-peer.py, registered with rpcbind for TCP and UDP, IPv4 and IPv6), through the router with
# tests/lab/offloadd-rpc.yaml (every flow is offloadd's; no kernel NAT, and the kernel has no RPC helper).
#
#   masquerade:   the LAN client asks the WAN server's rpcbind: rpcinfo -p (DUMP), rpcinfo -T tcp|udp|tcp6|udp6
#                 (version 4 GETADDR, then the service's NULL procedure; IPv6 through NAT66), and version 2 GETPORT
#                 (rpc-peer.py getport, as glibc and NFS mounts ask); the service connection must arrive as an
#                 expected connection.
#   port forward: a WAN host asks the router's port 111 (IPv4 and IPv6), forwarded to rpcbind on the LAN host: the
#                 answers must name the router and a port of offloadd's nat-ports (the universal address rewritten:
#                 rpcbind writes the LAN host's own address), and the service is reached only through the
#                 expectation; a connection to the service without a lookup, or a second one after the lookup's
#                 was made, is refused.
#   helpers mode: the masquerade lookups again with flows: helpers (tests/lab/offloadd-rpc-helpers.yaml): offloadd
#                 sees only port 111 and, through its ipset sets, the expected service connections.
#
# The WAN capture must hold no LAN-private source and no universal address naming the LAN. Then the same lookups
# go through the kernel's NAT alone (MASQUERADE and the same port forward; the kernel has no RPC helper, and
# conntrack-tools' userspace "rpc" helper reads only version 2 GETPORT and rewrites no address): through the port
# forward, rpcinfo is handed the LAN host's private address and fails.
#
# Output and environment: tests/lab/harness.sh (LAB_SUFFIX, default -rp; KEEP_WORK=1).
# Usage: tests/lab/e2e-rpc.sh   (as root; builds the Release binaries if they are missing)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"

sfx=${LAB_SUFFIX--rp}
h_init ol-rpc
h_need_root_and_tools ip iptables rpcbind rpcinfo unshare dumpcap tshark python3 dotnet
h_build
h_on_exit "lab_down '$sfx'"

C=$(lab_ns client "$sfx")
R=$(lab_ns router "$sfx")
S=$(lab_ns server "$sfx")
peer=$here/rpc-peer.py
prog=536871065 # 0x20000099, of the range RFC 5531 leaves to anyone
service=4711
started=$SECONDS

# rpc_up NS : rpcbind in NS (with a /run of its own: one rpcbind per /run, and the host may run one too) and the
# service registered with it for TCP and UDP at $service.
rpc_up() {
    local ns=$1
    ip netns exec "$ns" unshare -m sh -c 'mount -t tmpfs offload-rpc /run && exec rpcbind -f' \
        </dev/null >"$H_WORK/rpcbind-$ns.log" 2>&1 &
    lab_wait_port "$ns" 111 15 tcp && lab_wait_port "$ns" 111 15 udp || h_die "rpcbind did not start in $ns: $(cat "$H_WORK/rpcbind-$ns.log")"
    ip netns exec "$ns" python3 "$peer" serve "$prog" 1 "$service" </dev/null >"$H_WORK/peer-$ns.log" 2>&1 &
    h_wait_for 20 grep -q '^registered' "$H_WORK/peer-$ns.log" || h_die "the service did not register in $ns: $(cat "$H_WORK/peer-$ns.log")"
}

# lookup WHAT EXPECT NS CMD... : runs CMD in NS (at most 20 s); ok when it succeeds (EXPECT=pass) or fails (fail).
lookup() {
    local what=$1 expect=$2 ns=$3 out rc=0
    shift 3
    out=$(timeout -k 2 20 ip netns exec "$ns" "$@" 2>&1) || rc=$?
    printf '%s\n' "$out" >>"$H_WORK/lookups.log"
    if [[ $expect == pass ]]; then
        h_result "$what" "$( ((rc == 0)) || echo "exit $rc: $(tail -n 2 <<<"$out")")"
    else
        h_result "$what" "$( ((rc != 0)) || echo "it succeeded: $(tail -n 2 <<<"$out")")"
    fi
}

# uaddrs FILE : the universal addresses in the GETADDR answers of a capture, one a line.
uaddrs() { tshark -n -r "$1" -Y 'portmap.uaddr' -T fields -e portmap.uaddr 2>/dev/null; }

# capture_holds FILE N : the running capture has written N GETADDR answers (dumpcap writes its file every 100 ms).
capture_holds() { (($(uaddrs "$1" | wc -l) >= $2)); }

# --- 1: offloadd in the router ------------------------------------------------------------------------------------
lab_up "$sfx" >/dev/null
rpc_up "$S"
rpc_up "$C"
h_daemon_start "$R" "$H_REPO/tests/lab/offloadd-rpc.yaml" --apply-rules || h_die "offloadd did not start: $(tail -5 "$H_DAEMON_LOG")"
h_on_exit "ip netns exec '$R' dotnet '$H_OFFLOADCTL' rules remove >/dev/null 2>&1"
kernel_rules=$(ip netns exec "$R" iptables-save | grep -E -- '--helper|MASQUERADE|SNAT|DNAT' | grep -v -- '^-A OFFLOAD-NAT-' || true)
h_result "router: offloadd started with the rpc helper; no kernel NAT and no kernel helper rules" "$kernel_rules"

h_capture_start "$R" wan0 "$H_WORK/wan0.pcapng"
lookup "masquerade: rpcinfo -p lists the service (DUMP passes)" pass "$C" \
    sh -c "rpcinfo -p $LAB_WAN4_SERVER | grep -E '^ *$prog +1 +tcp +$service'"
lookup "masquerade: rpcinfo -T tcp (GETADDR v4 over TCP, then the service over TCP)" pass "$C" rpcinfo -T tcp "$LAB_WAN4_SERVER" "$prog" 1
lookup "masquerade: rpcinfo -T udp (GETADDR v4 over UDP, then the service over UDP)" pass "$C" rpcinfo -T udp "$LAB_WAN4_SERVER" "$prog" 1
lookup "masquerade: GETPORT v2 for TCP, then the service over TCP" pass "$C" python3 "$peer" getport "$LAB_WAN4_SERVER" "$prog" 1 tcp
lookup "masquerade: GETPORT v2 for UDP, then the service over UDP" pass "$C" python3 "$peer" getport "$LAB_WAN4_SERVER" "$prog" 1 udp
lookup "masquerade, IPv6 (NAT66): rpcinfo -T tcp6" pass "$C" rpcinfo -T tcp6 "$LAB_WAN6_SERVER" "$prog" 1
lookup "masquerade, IPv6 (NAT66): rpcinfo -T udp6" pass "$C" rpcinfo -T udp6 "$LAB_WAN6_SERVER" "$prog" 1
stats=$(h_ctl stats 2>&1) || true
masq_expected=$(grep -E '^ +ConnectionsExpected ' <<<"$stats" | awk '{print $2}' || true)
# rpcinfo -p first looks up where rpcbind itself listens (GETADDR for program 100000) and makes its DUMP there.
h_result "masquerade: each connection after a lookup arrived as an expected connection (${masq_expected:-0} of 7)" \
    "$( ((${masq_expected:-0} == 7)) || echo "expected 7")"

lookup "port forward: rpcinfo -p at the router lists the LAN host's service" pass "$S" \
    sh -c "rpcinfo -p $LAB_WAN4_ROUTER | grep -E '^ *$prog +1 +udp +$service'"
lookup "port forward: rpcinfo -T tcp at the router reaches the LAN host's service" pass "$S" rpcinfo -T tcp "$LAB_WAN4_ROUTER" "$prog" 1
lookup "port forward: rpcinfo -T udp at the router reaches the LAN host's service" pass "$S" rpcinfo -T udp "$LAB_WAN4_ROUTER" "$prog" 1
lookup "port forward: GETPORT v2 for TCP at the router, then the service" pass "$S" python3 "$peer" getport "$LAB_WAN4_ROUTER" "$prog" 1 tcp
lookup "port forward: GETPORT v2 for UDP at the router, then the service" pass "$S" python3 "$peer" getport "$LAB_WAN4_ROUTER" "$prog" 1 udp
lookup "port forward, IPv6: rpcinfo -T tcp6 at the router reaches the LAN host's service" pass "$S" rpcinfo -T tcp6 "$LAB_WAN6_ROUTER" "$prog" 1
lookup "port forward, IPv6: rpcinfo -T udp6 at the router reaches the LAN host's service" pass "$S" rpcinfo -T udp6 "$LAB_WAN6_ROUTER" "$prog" 1
answered=$(grep -c '^answered' "$H_WORK/peer-$C.log" || true)
h_result "port forward: the LAN host's service answered the 6 calls, from the WAN host ($answered)" \
    "$( ((answered == 6)) && ! grep '^answered' "$H_WORK/peer-$C.log" | grep -vEq " ($LAB_WAN4_SERVER|$LAB_WAN6_SERVER)\$" || grep '^answered' "$H_WORK/peer-$C.log" | tr '\n' ' ')"
h_wait_for 15 capture_holds "$H_WORK/wan0.pcapng" 10 || info "the capture holds fewer GETADDR answers than 10"
h_capture_stop >/dev/null

# What left on the WAN: the masqueraded client's lookups name the server itself; the forwarded ones the router at a
# port of nat-ports, never the LAN host.
mapfile -t addrs < <(uaddrs "$H_WORK/wan0.pcapng")
at_router="^(${LAB_WAN4_ROUTER//./\\.}|$LAB_WAN6_ROUTER)\.[0-9]+\.[0-9]+\$"
forwarded=$(printf '%s\n' "${addrs[@]}" | grep -cE "$at_router" || true)
placed=$(printf '%s\n' "${addrs[@]}" | grep -E "$at_router" | awk -F. '{print $(NF - 1) * 256 + $NF}' | sort -u | tr '\n' ' ')
h_result "WAN: the forwarded GETADDR answers name the router, IPv4 and IPv6, at ports of nat-ports 61000-65535 ($forwarded answers: ${placed:-none})" \
    "$( ((forwarded == 5)) && for p in $placed; do ((p >= 61000 && p <= 65535)) || echo "$p out of range"; done || echo "${addrs[*]}")"
h_result "WAN: no universal address names the LAN (${#addrs[@]} answers)" "$(printf '%s\n' "${addrs[@]}" | grep -E "^(192\.0\.2\.|2001:db8:1:)" || true)"
getports=$(tshark -n -r "$H_WORK/wan0.pcapng" -Y "portmap.procedure_v2==3 && ip.src==$LAB_WAN4_ROUTER && rpc.msgtyp==1" -T fields -e portmap.port 2>/dev/null | sort -u | tr '\n' ' ')
h_result "WAN: the forwarded GETPORT answers name ports of nat-ports (${getports:-none})" \
    "$([[ -n $getports ]] && for p in $getports; do ((p >= 61000 && p <= 65535)) || echo "$p out of range"; done || echo none)"
leaks=$(h_sources_in "$H_WORK/wan0.pcapng" "$LAB_LAN4_PREFIX" "$LAB_LAN6_PREFIX")
h_result "WAN: no packet with a LAN-private source" "$([[ ${leaks%%$'\n'*} == 0 ]] || echo "$leaks")"

# Without a lookup, or once the lookup's connection was made, the service is not reachable through the router.
# (rpc-peer.py call: rpcinfo -n still asks rpcbind first.)
lookup "port forward: the service port at the router without a lookup is refused (TCP)" fail "$S" \
    python3 "$peer" call "$LAB_WAN4_ROUTER" "$service" "$prog" 1 tcp
lookup "port forward: the service port at the router without a lookup is refused (UDP)" fail "$S" \
    python3 "$peer" call "$LAB_WAN4_ROUTER" "$service" "$prog" 1 udp
for p in $placed; do
    lookup "port forward: a connection to a placed port ($p) without a new lookup is refused (the lookup's connection was made)" fail "$S" \
        python3 "$peer" call "$LAB_WAN4_ROUTER" "$p" "$prog" 1 tcp
done
lookup "port forward: the LAN host's service at its own address is out of reach from the WAN" fail "$S" \
    python3 "$peer" call "$LAB_LAN4_CLIENT" "$service" "$prog" 1 tcp

stats=$(h_ctl stats 2>&1) || true
info "offloadd stats: $(grep -E '^ +(ExpectationsCreated|ConnectionsExpected|PayloadRewrites|Helper[A-Za-z]+|Dropped[A-Za-z]*) +[1-9]' <<<"$stats" | tr -s ' ' | tr '\n' ';')"
expected=$(grep -E '^ +ConnectionsExpected ' <<<"$stats" | awk '{print $2}' || true)
h_result "offloadd: the 14 connections after a lookup were expected ones, and nothing else (${expected:-0})" "$( ((${expected:-0} == 14)) || echo "expected 14")"
h_result "offloadd: nothing counted malformed or partial, no helper failure, no warning in its log" \
    "$(grep -E '^ +(HelperMalformedCommand|HelperPartialCommand|HelperFailures|HelperRewriteFailed) +[1-9]' <<<"$stats"; h_daemon_log_problems)"
h_daemon_stop
lab_down "$sfx" >/dev/null 2>&1 || true

# --- 2: offloadd in helpers mode: the kernel's NAT for everything but the portmapper and what it announces --------
lab_up "$sfx" >/dev/null
rpc_up "$S"
h_daemon_start "$R" "$H_REPO/tests/lab/offloadd-rpc-helpers.yaml" --apply-rules || h_die "offloadd did not start: $(tail -5 "$H_DAEMON_LOG")"
lookup "helpers mode: rpcinfo -T tcp" pass "$C" rpcinfo -T tcp "$LAB_WAN4_SERVER" "$prog" 1
lookup "helpers mode: rpcinfo -T udp" pass "$C" rpcinfo -T udp "$LAB_WAN4_SERVER" "$prog" 1
lookup "helpers mode: GETPORT v2 for TCP, then the service" pass "$C" python3 "$peer" getport "$LAB_WAN4_SERVER" "$prog" 1 tcp
lookup "helpers mode: GETPORT v2 for UDP, then the service" pass "$C" python3 "$peer" getport "$LAB_WAN4_SERVER" "$prog" 1 udp
stats=$(h_ctl stats 2>&1) || true
expected=$(grep -E '^ +ConnectionsExpected ' <<<"$stats" | awk '{print $2}' || true)
h_result "helpers mode: the 4 service connections reached offloadd through its sets as expected connections (${expected:-0})" \
    "$( ((${expected:-0} == 4)) || echo "expected 4")"
h_result "helpers mode: nothing counted, no helper failure, no warning in its log" \
    "$(grep -E '^ +(HelperMalformedCommand|HelperPartialCommand|HelperFailures|HelperRewriteFailed) +[1-9]' <<<"$stats"; h_daemon_log_problems)"
h_daemon_stop
ip netns exec "$R" dotnet "$H_OFFLOADCTL" rules remove >/dev/null 2>&1 || true
lab_down "$sfx" >/dev/null 2>&1 || true

# --- 3: the kernel's NAT alone (no RPC helper exists in the kernel) -------------------------------------------------
lab_up "$sfx" >/dev/null
rpc_up "$S"
rpc_up "$C"
lab_kernel_nat "$sfx"
for p in tcp udp; do
    ip netns exec "$R" iptables -t nat -A PREROUTING -i wan0 -d "$LAB_WAN4_ROUTER" -p "$p" --dport 111 \
        -j DNAT --to-destination "$LAB_LAN4_CLIENT:111"
done
h_capture_start "$R" wan0 "$H_WORK/kernel-wan0.pcapng"
lookup "kernel: masquerade: rpcinfo -T tcp works without a helper (the client's own connection goes out)" pass "$C" \
    rpcinfo -T tcp "$LAB_WAN4_SERVER" "$prog" 1
lookup "kernel: port forward: rpcinfo -T tcp at the router fails: the answer names the LAN host" fail "$S" \
    rpcinfo -T tcp "$LAB_WAN4_ROUTER" "$prog" 1
h_wait_for 15 capture_holds "$H_WORK/kernel-wan0.pcapng" 2 || info "the capture holds fewer GETADDR answers than 2"
h_capture_stop >/dev/null
private=$(uaddrs "$H_WORK/kernel-wan0.pcapng" | grep -c "^192\.0\.2\." || true)
h_result "kernel: the universal address the kernel forwarded names the LAN host ($private answers; offloadd rewrote it)" \
    "$( ((private >= 1)) || uaddrs "$H_WORK/kernel-wan0.pcapng" | tr '\n' ' ')"
info "runtime $((SECONDS - started)) s"
h_finish

#!/usr/bin/env bash
# Router failover with replicated state (issue 11): two routers, r1 and r2, in a VRRP pair (keepalived, one sync
# group for the LAN gateway addresses and the WAN addresses, IPv4 and IPv6) between a LAN switch and a WAN switch,
# each running offloadd with flows: all and SNAT to the WAN addresses (NAT44 and NAT66), replicating over a dedicated
# sync link. The client's transfers (tests/lab/transfers.sh: FTP over IPv4 and IPv6, active downloads with a second
# file on the same control connection, passive uploads; a long TCP stream) run through the active router,
# rate-limited so that they outlive the failure. Then the active
# router fails (offloadd and keepalived killed with SIGKILL, its interfaces downed); the standby takes over with the
# same NAT bindings; every transfer must complete byte-identical, no packet with a LAN-private source may reach the
# WAN, and the time to take over is printed. Then bad input on the sync link (garbage, a wrong key, a replayed
# datagram, a flood): refused and counted, never applied.
#
#   client ── LAN switch ── lan0 r1 wan0 ── WAN switch ── server
#                      └─── lan0 r2 wan0 ───┘
#                r1 sync0 ─────────── sync0 r2      (the replication link)
#
# Output and environment: tests/lab/harness.sh (LAB_SUFFIX, default -fo; KEEP_WORK=1).
# Usage: tests/lab/e2e-failover.sh   (as root; builds the Release binaries if they are missing)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"
# shellcheck source=tests/lab/transfers.sh
. "$here/transfers.sh"

sfx=${LAB_SUFFIX--fo}
_lab_check_suffix "$sfx" || exit 1
h_init ol-failover
h_need_root_and_tools ip bridge iptables-save keepalived vsftpd curl dumpcap tshark python3 dotnet cmp
h_build

C=$(lab_ns client "$sfx")
S=$(lab_ns server "$sfx")
R1=${LAB_NS_PREFIX}r1$sfx
R2=${LAB_NS_PREFIX}r2$sfx
SW=${LAB_NS_PREFIX}switch$sfx
LAN_VIP=192.0.2.1
WAN_VIP=198.51.100.1
LAN_VIP6=2001:db8:1::1
WAN_VIP6=2001:db8:2::1
declare -A lan_ip=([1]=192.0.2.11 [2]=192.0.2.12) wan_ip=([1]=198.51.100.11 [2]=198.51.100.12) sync_ip=([1]=10.99.0.1 [2]=10.99.0.2)
declare -A lan_ip6=([1]=2001:db8:1::11 [2]=2001:db8:1::12) wan_ip6=([1]=2001:db8:2::11 [2]=2001:db8:2::12)
declare -A ns_of=([1]=$R1 [2]=$R2) dpid kpid

down_all() {
    local ns
    for ns in "$R1" "$R2" "$SW"; do
        [[ -e /run/netns/$ns ]] || continue
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
    lab_down "$sfx"
}
h_on_exit "down_all"
h_on_exit 'jobs -p | xargs -r kill'

# --- the lab ------------------------------------------------------------------------------------------

down_all 2>/dev/null
mkdir -p "$(lab_tmp "$sfx")"
for ns in "$C" "$S" "$R1" "$R2" "$SW"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
_lab_ns_sysctls "$C" 0 && _lab_ns_sysctls "$S" 0 && _lab_ns_sysctls "$R1" 1 && _lab_ns_sysctls "$R2" 1
for br in brlan brwan; do
    ip -n "$SW" link add "$br" type bridge mcast_snooping 0
    ip -n "$SW" link set "$br" up
done
# port NS DEV BRIDGE PORTNAME : a veth from a namespace to the switch.
port() {
    ip -n "$SW" link add "$4" type veth peer name "$2" netns "$1"
    ip -n "$SW" link set "$4" master "$3" up
    ip -n "$1" link set "$2" up
}
port "$C" eth0 brlan c-eth0
port "$S" eth0 brwan s-eth0
for i in 1 2; do
    port "${ns_of[$i]}" lan0 brlan "r$i-lan0"
    port "${ns_of[$i]}" wan0 brwan "r$i-wan0"
    ip -n "${ns_of[$i]}" addr add "${lan_ip[$i]}/24" dev lan0
    ip -n "${ns_of[$i]}" addr add "${wan_ip[$i]}/24" dev wan0
    ip -n "${ns_of[$i]}" addr add "${lan_ip6[$i]}/64" dev lan0 nodad
    ip -n "${ns_of[$i]}" addr add "${wan_ip6[$i]}/64" dev wan0 nodad
done
ip -n "$R1" link add sync0 type veth peer name sync0 netns "$R2"
for i in 1 2; do
    ip -n "${ns_of[$i]}" addr add "${sync_ip[$i]}/30" dev sync0
    ip -n "${ns_of[$i]}" link set sync0 up
done
ip -n "$C" addr add "$LAB_LAN4_CLIENT/24" dev eth0
ip -n "$C" route add default via "$LAN_VIP" dev eth0
ip -n "$C" addr add "$LAB_LAN6_CLIENT/64" dev eth0 nodad
ip -n "$C" -6 route add default via "$LAN_VIP6" dev eth0
ip -n "$S" addr add "$LAB_WAN4_SERVER/24" dev eth0
ip -n "$S" addr add "$LAB_WAN6_SERVER/64" dev eth0 nodad
for dev in "$C eth0" "$S eth0" "$R1 lan0" "$R1 wan0" "$R2 lan0" "$R2 wan0"; do
    # Wire-size segments and final checksums in the WAN capture, as in the other labs.
    # shellcheck disable=SC2086
    _lab_no_offloads $dev && lab_wait_link $dev
done

lab_vsftpd_uploads "$sfx" 2>/dev/null

# The shared key: root's alone, in a directory of root's alone (not under /tmp), as offloadd demands.
keydir=/run/ol-failover$sfx
rm -rf "$keydir"
install -d -m 0700 "$keydir"
h_on_exit "rm -rf '$keydir'"
key=$keydir/replication.key
(umask 077 && head -c 32 /dev/urandom | base64 >"$key")

# vrrp_instance NAME IFACE VRID SOURCE PEER VIP VIP6 : one VRRP instance of router $prio, unicast to its peer; the
# IPv6 address moves with it (keepalived sends its unsolicited neighbour advertisements too).
vrrp_instance() {
    cat <<EOF
vrrp_instance $1 {
    state BACKUP
    interface $2
    virtual_router_id $3
    priority $prio
    advert_int 0.2
    unicast_src_ip $4
    unicast_peer {
        $5
    }
    virtual_ipaddress {
        $6/24 dev $2
    }
    virtual_ipaddress_excluded {
        $7/64 dev $2
    }
}
EOF
}

for i in 1 2; do
    peer=$((3 - i))
    cat >"$H_WORK/r$i.yaml" <<EOF
interfaces:
  - name: lan0
  - name: wan0
nat:
  - type: snat
    family: ipv4
    out: wan0
    to: $WAN_VIP
  - type: snat
    family: ipv6
    out: wan0
    to: $WAN_VIP6
helpers:
  - name: ftp
    ports: [21]
steering:
  from: [lan0]
  to: [wan0]
  queue-pre: 0
  queue-post: 1
  nat-ports: 61000-65535
  flows: all
replication:
  listen: ${sync_ip[$i]}:3780
  peer: ${sync_ip[$peer]}:3780
  key-file: $key
  notify-fifo: $H_WORK/r$i.fifo
  vrrp: G1
EOF
    mkfifo -m 0600 "$H_WORK/r$i.fifo"
    prio=$((i == 1 ? 150 : 100))
    cat >"$H_WORK/keepalived-r$i.conf" <<EOF
global_defs {
    router_id r$i
    notify_fifo $H_WORK/r$i.fifo
    vrrp_garp_master_delay 0
    vrrp_garp_master_repeat 2
    vrrp_version 3
}
vrrp_sync_group G1 {
    group {
        LAN
        WAN
    }
}
$(vrrp_instance LAN lan0 51 "${lan_ip[$i]}" "${lan_ip[$peer]}" "$LAN_VIP" "$LAN_VIP6")
$(vrrp_instance WAN wan0 52 "${wan_ip[$i]}" "${wan_ip[$peer]}" "$WAN_VIP" "$WAN_VIP6")
EOF
done

# daemon_start I : offloadd in router I, its socket and log in the work directory; waits for "Ready:".
daemon_start() {
    local i=$1 log=$H_WORK/offloadd-r$1.log deadline
    : >"$log"
    ip netns exec "${ns_of[$i]}" dotnet "$H_OFFLOADD" --config "$H_WORK/r$i.yaml" --socket "$H_WORK/r$i.sock" \
        --state none --apply-rules </dev/null >"$log" 2>&1 &
    dpid[$i]=$!
    deadline=$((SECONDS + 60))
    until grep -qE '\] Ready: ' "$log"; do
        kill -0 "${dpid[$i]}" 2>/dev/null || h_die "offloadd in r$i exited: $(tail -n 5 "$log")"
        ((SECONDS < deadline)) || h_die "offloadd in r$i is not ready: $(tail -n 5 "$log")"
        sleep 0.05
    done
}
ctl() { timeout -k 2 "$H_CTL_TIMEOUT" dotnet "$H_OFFLOADCTL" "${@:2}" --socket "$H_WORK/r$1.sock"; }
status_of() { ctl "$1" replication status 2>/dev/null || true; }
field() { sed -n "s/.*$2 \([0-9]*\).*/\1/p" <<<"$1" | head -n 1; }

daemon_start 1
daemon_start 2
# The sync link, captured from before r1 becomes active, for the replay below.
ip netns exec "$R2" dumpcap -q -i sync0 -f "udp port 3780" -w "$H_WORK/sync.pcapng" </dev/null >"$H_WORK/sync.log" 2>&1 &
sync_capture=$!
h_wait_for 15 grep -q '^File: ' "$H_WORK/sync.log" || h_die "dumpcap on sync0 did not start: $(cat "$H_WORK/sync.log")"
for i in 1 2; do
    ip netns exec "${ns_of[$i]}" keepalived -n -l -P -f "$H_WORK/keepalived-r$i.conf" \
        -p "$H_WORK/keepalived-r$i.pid" -r "$H_WORK/keepalived-vrrp-r$i.pid" </dev/null >"$H_WORK/keepalived-r$i.log" 2>&1 &
    kpid[$i]=$!
done

active() { [[ $(status_of "$1") == "role: active"* ]]; }
peer_up() { grep -q '^peer: .* up,' <<<"$(status_of "$1")"; }
h_wait_for 30 active 1 || h_die "r1 did not become active: $(status_of 1) $(tail -n 5 "$H_WORK/keepalived-r1.log")"
h_wait_for 15 peer_up 2 || h_die "r2 does not hear r1: $(status_of 2)"
h_result "keepalived makes r1 active and r2 standby through the notify FIFO; the sync link is up both ways" \
    "$(active 2 && echo "r2 is active too")$(peer_up 1 || echo "r1 does not hear r2")"
lab_exec "$C" ping -c 1 -W 2 "$LAB_WAN4_SERVER" >/dev/null || h_die "no IPv4 path through the VIP"
h_wait_for 10 lab_exec "$C" ping -6 -c 1 -W 1 "$LAB_WAN6_SERVER" || h_die "no IPv6 path through the VIP"

h_capture_start "$S" eth0 "$H_WORK/wan.pcapng"

# --- transfers through r1 -----------------------------------------------------------------------------

tr_start "$sfx" "$H_WORK" || h_die "the transfers did not start"

# stream_bytes : what the stream's server has received so far (its socket's bytes_received).
stream_bytes() {
    local n
    n=$(ip netns exec "$S" ss -Htin state established '( sport = :5001 )' 2>/dev/null | grep -o 'bytes_received:[0-9]*' | head -n 1)
    echo "${n#bytes_received:}"
}

sleep 4

# tcp_bindings I : the TCP connections router I tracks, as "original source > destination via reply port", sorted.
tcp_bindings() {
    ctl "$1" conntrack list 2>/dev/null | grep -E '^ipv[46] +[0-9]+ tcp ' |
        sed -E 's/^[^=]* src=([^ ]+) dst=([^ ]+) sport=([0-9]+) dport=([0-9]+) (\[UNREPLIED\] )?src=[^ ]+ dst=[^ ]+ sport=[0-9]+ dport=([0-9]+).*/\1:\3>\2:\4 via \6/' | sort
}
# Replication runs every 50 ms: a connection opened a moment ago may not be there yet, so look again a few times.
same_bindings() {
    b1=$(tcp_bindings 1)
    b2=$(tcp_bindings 2)
    n1=$(grep -c . <<<"$b1" || true)
    ((n1 >= 9)) && [[ $b1 == "$b2" ]]
}
h_wait_for 5 same_bindings || true
info "r1 tracks $n1 TCP connections; r2 holds $(grep -c . <<<"$b2" || true)"
h_result "before the failure, the standby holds the active router's TCP connections with the same NAT ports" \
    "$(same_bindings || echo "r1: ${b1//$'\n'/; } | r2: ${b2//$'\n'/; }")"
s1=$(status_of 1)
info "r1 replicated so far: $(grep '^sent:' <<<"$s1")"
h_result "r1 sends batches to r2 and r2 acknowledges them" \
    "$( (($(field "$s1" "datagrams") > 0 && $(field "$s1" "acked") > 0)) || echo "${s1//$'\n'/ | }")"
h_result "every transfer is still running when r1 fails" "$(tr_all_running || echo "some ended already: the failover proves nothing for them")"

# --- r1 fails -----------------------------------------------------------------------------------------

progress_before=$(stream_bytes)
t0=$(date +%s%N)
kill -KILL "${dpid[1]}" "$(cat "$H_WORK/keepalived-vrrp-r1.pid")" "${kpid[1]}" 2>/dev/null || true
{ wait "${dpid[1]}" "${kpid[1]}"; } 2>/dev/null || true
ip -n "$R1" link set lan0 down
ip -n "$R1" link set wan0 down
h_wait_for 20 active 2 || not_ok "r2 takes over" "$(status_of 2)"
t1=$(date +%s%N)
moved() { (($(stream_bytes) > ${progress_before:-0} + 8192)); }
h_wait_for 30 moved || true
t2=$(date +%s%N)
takeover_ms=$(((t1 - t0) / 1000000))
resume_ms=$(((t2 - t0) / 1000000))
info "time to take over: r2 active ${takeover_ms} ms after r1 failed; the stream moved on through r2 after ${resume_ms} ms"
h_result "r2 takes over (keepalived MASTER, offloadd active) and the stream goes on through it" \
    "$(active 2 || echo "r2 is not active")$(moved || echo " the stream did not move on")"

# --- every transfer completes intact ------------------------------------------------------------------

tr_wait
for k in "${TR_KEYS[@]}"; do
    h_result "${TR_WHAT[$k]}: complete and byte-identical across the failover" "$(tr_intact "$k")"
done

h_capture_stop >/dev/null
h_wan_clean "the WAN across the failover" "$H_WORK/wan.pcapng" "ip.src==$WAN_VIP || ipv6.src==$WAN_VIP6" 500 \
    "$LAB_LAN4_PREFIX" "$LAB_LAN6_PREFIX"
s2=$(status_of 2)
info "r2 applied: $(grep '^applied:' <<<"$s2")"

# --- bad input on the sync link: refused, counted, never applied ----------------------------------------

kill -INT "$sync_capture" 2>/dev/null || true
wait "$sync_capture" 2>/dev/null || true
table_before=$(ctl 2 conntrack list | grep -c . || true)
refused_before=$(field "$s2" "refused:")
# From r1's sync address and port (its daemon is dead): garbage, a wrong key, a replay of r1's first data datagram,
# then a flood of wrong-key datagrams.
# The type is the datagram's sixth byte: 1 is data.
tshark -r "$H_WORK/sync.pcapng" -T fields -e ip.src -e udp.payload 2>/dev/null |
    awk -v src="${sync_ip[1]}" '$1 == src && substr($2, 11, 2) == "01" { print $2; exit }' >"$H_WORK/old.hex" || true
ip -n "$R1" link set sync0 up
ip netns exec "$R1" python3 - "${sync_ip[1]}" "${sync_ip[2]}" "$H_WORK/old.hex" <<'PY'
import hashlib, hmac, os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 3780))
peer = (sys.argv[2], 3780)
s.sendto(os.urandom(200), peer)                                  # garbage
s.sendto(b"OFRP\x01", peer)                                      # truncated
header = b"OFRP" + bytes([1, 1, 0, 0]) + os.urandom(4) + struct.pack(">qIHH", 1, 1, 8, 0)
body = b"\x02" + os.urandom(7)
s.sendto(header + body + hmac.new(b"a wrong key, thirty-two bytes...", header + body, hashlib.sha256).digest(), peer)
old = open(sys.argv[3]).read().strip().replace(":", "")
if old:
    s.sendto(bytes.fromhex(old), peer)                           # a replay of r1's first data datagram
for _ in range(30000):                                           # a flood
    s.sendto(header + body + os.urandom(32), peer)
PY
sleep 1
s2=$(status_of 2)
table_after=$(ctl 2 conntrack list | grep -c . || true)
info "r2 after the bad input: $(grep '^refused:' <<<"$s2")"
refused=$(($(field "$s2" "refused:") - refused_before))
h_result "garbage, a truncated datagram, a wrong key and a flood on the sync link are refused and counted" \
    "$( ((refused >= 1000 && $(field "$s2" "bad key") >= 1 && $(field "$s2" "foreign") + $(field "$s2" "truncated") >= 2)) || echo "${s2//$'\n'/ | }")"
h_result "a replayed datagram of the dead peer is refused as a replay" \
    "$([[ -s $H_WORK/old.hex ]] && (($(field "$s2" "replayed") >= 1)) || echo "$(grep '^refused:' <<<"$s2") (old datagram: $(wc -c <"$H_WORK/old.hex") hex)")"
h_result "nothing of it was applied: r2's table is as it was ($table_after entries)" "$( ((table_after <= table_before)) || echo "$table_before before, $table_after after")"
h_result "r2 still answers and its log has no error" \
    "$(kill -0 "${dpid[2]}" || echo "r2's offloadd died")$(grep -E '\[(ERR|FTL)\]' "$H_WORK/offloadd-r2.log" | head -n 2)"
h_finish

#!/usr/bin/env bash
# The router parity matrix: a new user's dual-stack router, every everyday shape of traffic, once through the
# kernel alone (its NAT rules, its ftp helper where FTP needs one) and once through offloadd, each behind a
# stateful FORWARD policy with default DROP: through the kernel the usual one (INVALID dropped, ESTABLISHED and
# RELATED accepted, new flows from the LAN, hairpin, --ctstate DNAT), through offloadd the one `offloadctl rules
# firewall` prints (the same with offloadd's state marks). The kernel is the reference: a shape that works through
# it and not through offloadd fails here. A capture on the router's wan0 proves that no packet with a LAN-private
# source ever leaves, and scapy's bad input (broken ICMP errors, IPv6 behind AH, Mobility or a broken header chain,
# a short flood) from both sides changes nothing of that.
#
# Topology (namespaces rl-ROLE$LAB_SUFFIX, documentation addresses only):
#
#   client 192.0.2.2 ─┐
#                      switch (bridge) ── lan0 router wan0 ── eth0 hop eth1 ─────── eth0 server
#   lansrv 192.0.2.3 ─┘                   192.0.2.1 198.51.100.1   198.51.100.2  203.0.113.1    203.0.113.2
#                                        2001:db8:1::1 2001:db8:2::1  2001:db8:2::2  2001:db8:3::1   2001:db8:3::2
#   (client 2001:db8:1::2, lansrv 2001:db8:1::3)                           MTU 1400 (IPv6 1280) on hop─server
#
# GRE is a scripted echo over raw sockets (router-peer.py): this kernel has no gre link type.
# The server advertises a full-size MSS (route advmss), so that both directions through the narrow hop need
# path MTU discovery: ICMP "fragmentation needed" / ICMPv6 "packet too big" from the hop, through the router.
#
# Configurations (each in every mode, one after the other on the same lab, the router and every learnt path MTU
# reset in between; offloadd started once per configuration and mode):
#   dual   NAT44 masquerade (family ipv4), routed IPv6, port forwards 8080 -> lansrv:80 (IPv4 and IPv6) and
#          21 -> lansrv:21 (IPv4), hairpin masquerade out lan0; modes kernel, offloadd (flows: all) and
#          helpers (flows: helpers: only FTP through offloadd, the rest through the kernel's NAT it manages; no
#          FTP port forward there, which offloadd --check refuses in that mode)
#   nat66  the same with masquerade for IPv6 as well (and IPv6 hairpin); modes kernel and offloadd
#
# Output: "ok - MODE: SHAPE" / "not ok - MODE: SHAPE: why", "# ..." information, a matrix, and last the line
# "N passed, N failed". Usage: tests/lab/e2e-router.sh (as root). Environment: LAB_SUFFIX (default -rt),
# KEEP_WORK=1 keeps the work directory (configurations, logs, captures, iptables-save -c per run),
# ONLY="dual:kernel dual:offloadd ..." runs only those configuration:mode pairs, SHARDS=N runs offloadd (flows: all)
# with N engine shards, LAB_HOLD=FILE holds each run
# once its router is set up until FILE is removed (at most 30 minutes).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"

sfx=${LAB_SUFFIX:--rt}
SHARDS=${SHARDS:-1}
_lab_check_suffix "$sfx" || exit 2

h_init ol-router
h_need_root_and_tools ip ethtool iptables ip6tables iptables-save conntrack dumpcap tshark curl vsftpd ping \
    traceroute python3 dotnet timeout cmp sha256sum
[[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import scapy' 2>/dev/null ||
    h_die "Debian's python3-scapy is missing (tests/lab/packages.txt)"
h_build
chmod 0755 "$H_WORK" # vsftpd's chroots live below it

# --- the lab's addresses ---------------------------------------------------------------------------------------

LAN4=192.0.2.0/24 R_LAN4=192.0.2.1 C4=192.0.2.2 L4=192.0.2.3
LAN6=2001:db8:1::/64 R_LAN6=2001:db8:1::1 C6=2001:db8:1::2 L6=2001:db8:1::3
R_WAN4=198.51.100.1 H_WAN4=198.51.100.2
R_WAN6=2001:db8:2::1 H_WAN6=2001:db8:2::2
H_FAR4=203.0.113.1 S4=203.0.113.2
H_FAR6=2001:db8:3::1 S6=2001:db8:3::2
NARROW4=1400 NARROW6=1280
NAT_PORTS=61000-65535
NAT_PORT_RE='(6[1-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])'
# The firewall marks offloadd sets (steering: state-mark:, docs/steering.md).
MARK_ESTABLISHED=0x40000 MARK_RELATED=0x80000 MARK_DNAT=0x200000

ns() { printf 'rl-%s%s\n' "$1" "$sfx"; }
C=$(ns client) L=$(ns lansrv) W=$(ns switch) R=$(ns router) H=$(ns hop) S=$(ns server)
ALL_NS=("$C" "$L" "$W" "$R" "$H" "$S")
PEER=$here/router-peer.py
BAD=$here/router-bad.py
www=$H_WORK/www

# --- the lab ---------------------------------------------------------------------------------------------------

rl_down() {
    local n pids pid
    for n in "${ALL_NS[@]}"; do
        [[ -e /run/netns/$n ]] || continue
        pids=$(ip netns pids "$n" 2>/dev/null || true)
        for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
        for _ in $(seq 1 40); do
            [[ -z $(ip netns pids "$n" 2>/dev/null) ]] && break
            sleep 0.05
        done
        for pid in $(ip netns pids "$n" 2>/dev/null || true); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$n" 2>/dev/null || true
    done
}
h_on_exit rl_down

# veth A-end in namespace $1 named $2, B-end born in namespace $3 named $4: no name ever exists on the host.
veth() { ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"; }

rl_up() {
    local n
    rl_down
    for n in "${ALL_NS[@]}"; do
        ip netns add "$n"
        ip -n "$n" link set lo up
    done
    for n in "$C" "$L" "$W" "$S"; do _lab_ns_sysctls "$n" 0; done
    _lab_ns_sysctls "$R" 1
    _lab_ns_sysctls "$H" 1
    for n in "${ALL_NS[@]}"; do
        # Every ICMP error the shapes expect must come, however many per second.
        ip netns exec "$n" sysctl -q -w net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0
    done

    ip -n "$W" link add br0 type bridge stp_state 0 mcast_snooping 0
    veth "$W" p-router "$R" lan0
    veth "$W" p-client "$C" eth0
    veth "$W" p-lansrv "$L" eth0
    veth "$R" wan0 "$H" eth0
    veth "$H" eth1 "$S" eth0
    for n in p-router p-client p-lansrv; do
        ip -n "$W" link set "$n" master br0
        ip -n "$W" link set "$n" up
    done
    ip -n "$W" link set br0 up
    _lab_no_offloads "$C" eth0 && _lab_no_offloads "$L" eth0 && _lab_no_offloads "$R" lan0 &&
        _lab_no_offloads "$R" wan0 && _lab_no_offloads "$H" eth0 && _lab_no_offloads "$H" eth1 &&
        _lab_no_offloads "$S" eth0 || h_die "could not turn the veth offloads off"
    ip -n "$H" link set eth1 mtu "$NARROW4"
    ip -n "$S" link set eth0 mtu "$NARROW4"

    ip -n "$C" addr add "$C4/24" dev eth0
    ip -n "$C" addr add "$C6/64" dev eth0 nodad
    ip -n "$L" addr add "$L4/24" dev eth0
    ip -n "$L" addr add "$L6/64" dev eth0 nodad
    ip -n "$R" addr add "$R_LAN4/24" dev lan0
    ip -n "$R" addr add "$R_LAN6/64" dev lan0 nodad
    ip -n "$R" addr add "$R_WAN4/24" dev wan0
    ip -n "$R" addr add "$R_WAN6/64" dev wan0 nodad
    ip -n "$H" addr add "$H_WAN4/24" dev eth0
    ip -n "$H" addr add "$H_WAN6/64" dev eth0 nodad
    ip -n "$H" addr add "$H_FAR4/26" dev eth1
    ip -n "$H" addr add "$H_FAR6/64" dev eth1 nodad
    ip -n "$S" addr add "$S4/26" dev eth0
    ip -n "$S" addr add "$S6/64" dev eth0 nodad
    for n in "$C" "$L" "$S"; do ip -n "$n" link set eth0 up; done
    ip -n "$R" link set lan0 up
    ip -n "$R" link set wan0 up
    ip -n "$H" link set eth0 up
    ip -n "$H" link set eth1 up
    # The IPv6 MTU of the narrow link, set after the link MTU (which resets it).
    ip netns exec "$H" sysctl -q -w net.ipv6.conf.eth1.mtu="$NARROW6"
    ip netns exec "$S" sysctl -q -w net.ipv6.conf.eth0.mtu="$NARROW6"

    for n in "$C" "$L"; do
        ip -n "$n" route add default via "$R_LAN4"
        ip -n "$n" -6 route add default via "$R_LAN6"
    done
    ip -n "$R" route add default via "$H_WAN4"
    ip -n "$R" -6 route add default via "$H_WAN6"
    # The hop routes the LAN's IPv6 prefix to the router (routed IPv6), never the LAN's IPv4 one.
    ip -n "$H" -6 route add "$LAN6" via "$R_WAN6"
    # A full-size MSS from the server although its link is narrow: path MTU discovery, both ways.
    ip -n "$S" route add default via "$H_FAR4" advmss 1460
    ip -n "$S" -6 route add default via "$H_FAR6" advmss 1440

    lab_wait_link "$C" eth0 && lab_wait_link "$L" eth0 && lab_wait_link "$R" lan0 && lab_wait_link "$R" wan0 &&
        lab_wait_link "$H" eth0 && lab_wait_link "$H" eth1 && lab_wait_link "$S" eth0 || h_die "links not up"

    # The peers: HTTP on 80 and a UDP echo on 7 in the LAN server and the server (the server echoes GRE too),
    # vsftpd in both.
    ip netns exec "$L" python3 "$PEER" serve "$www" </dev/null >"$H_WORK/peer-lansrv.log" 2>&1 &
    ip netns exec "$S" python3 "$PEER" serve "$www" --gre </dev/null >"$H_WORK/peer-server.log" 2>&1 &
    start_vsftpd "$L" lansrv
    start_vsftpd "$S" server
    lab_wait_port "$L" 80 10 && lab_wait_port "$S" 80 10 && lab_wait_port "$L" 7 10 udp &&
        lab_wait_port "$S" 7 10 udp && lab_wait_port "$L" 21 10 && lab_wait_port "$S" 21 10 || h_die "peers not listening"
}

# rl_reset : the router as new (no rules, empty conntrack, FORWARD accepting) and every learnt path MTU forgotten,
# between two runs on the same lab.
rl_reset() {
    local n t ipt
    for ipt in iptables ip6tables; do
        for t in raw mangle nat filter; do
            ip netns exec "$R" "$ipt" -w -t "$t" -F
            ip netns exec "$R" "$ipt" -w -t "$t" -X
        done
        ip netns exec "$R" "$ipt" -w -P FORWARD ACCEPT
    done
    # offloadd --apply-rules lets the hairpin LAN accept the router's own source (docs/steering.md): as new again.
    ip netns exec "$R" sysctl -q -w net.ipv4.conf.all.accept_local=0 net.ipv4.conf.lan0.accept_local=0 \
        net.ipv4.conf.wan0.accept_local=0 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.lan0.rp_filter=0 \
        net.ipv4.conf.wan0.rp_filter=0
    ip netns exec "$R" conntrack -F -f ipv4 >/dev/null 2>&1 || true
    ip netns exec "$R" conntrack -F -f ipv6 >/dev/null 2>&1 || true
    for n in "${ALL_NS[@]}"; do
        ip -n "$n" route flush cache
        ip -n "$n" -6 route flush cache
    done
    for n in "$C" "$L"; do
        if ip -n "$n" route get "$S4" | grep -q ' mtu ' || ip -n "$n" route get "$S6" | grep -q ' mtu '; then
            h_die "$n still has a learnt path MTU after the reset: $(ip -n "$n" route get "$S4"; ip -n "$n" route get "$S6")"
        fi
    done
}

# start_vsftpd NS NAME : anonymous, read-only, active from port 20, passive on, pasv_address unset.
start_vsftpd() {
    local n=$1 name=$2 t=$H_WORK/ftp-$2
    mkdir -p "$t/empty"
    chmod 0755 "$t" "$t/empty"
    cat >"$t/vsftpd.conf" <<EOF
listen=NO
listen_ipv6=YES
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$ftp_root
write_enable=NO
local_enable=NO
connect_from_port_20=YES
port_enable=YES
pasv_enable=YES
pasv_min_port=40000
pasv_max_port=40999
secure_chroot_dir=$t/empty
seccomp_sandbox=NO
isolate_network=NO
use_localtime=NO
log_ftp_protocol=YES
xferlog_enable=YES
xferlog_std_format=NO
vsftpd_log_file=$t/vsftpd.log
data_connection_timeout=20
idle_session_timeout=30
EOF
    chmod 0600 "$t/vsftpd.conf"
    ip netns exec "$n" vsftpd "$t/vsftpd.conf" </dev/null >"$t/vsftpd.out" 2>&1 &
}

# --- files -----------------------------------------------------------------------------------------------------

mkdir -p "$www"
head -c $((1024 * 1024)) /dev/urandom >"$www/big.bin"
head -c $((512 * 1024)) /dev/urandom >"$H_WORK/upload.bin"
up_sha=$(sha256sum "$H_WORK/upload.bin" | cut -d' ' -f1)
up_len=$(stat -c %s "$H_WORK/upload.bin")
ftp_root=$H_WORK/ftp-root
lab_ftp_files "$ftp_root"
chmod 0755 "$www"

# --- the router: kernel rules, offloadd configuration, FORWARD policy ---------------------------------------------

ipt() { ip netns exec "$R" iptables -w "$@"; }
ip6t() { ip netns exec "$R" ip6tables -w "$@"; }

# kernel_nat CONFIG : the kernel's NAT for the configuration, and its ftp helper on port 21.
kernel_nat() {
    local config=$1
    ipt -t nat -A PREROUTING -d "$R_WAN4/32" -p tcp --dport 8080 -j DNAT --to-destination "$L4:80"
    ipt -t nat -A PREROUTING -d "$R_WAN4/32" -p tcp --dport 21 -j DNAT --to-destination "$L4:21"
    ipt -t nat -A POSTROUTING -o wan0 -j MASQUERADE
    ipt -t nat -A POSTROUTING -o lan0 -s "$LAN4" -d "$L4/32" -j MASQUERADE
    ip6t -t nat -A PREROUTING -d "$R_WAN6/128" -p tcp --dport 8080 -j DNAT --to-destination "[$L6]:80"
    if [[ $config == nat66 ]]; then
        ip6t -t nat -A POSTROUTING -o wan0 -j MASQUERADE
        ip6t -t nat -A POSTROUTING -o lan0 -s "$LAN6" -d "$L6/128" -j MASQUERADE
    fi
    ipt -t raw -A PREROUTING -p tcp --dport 21 -j CT --helper ftp
    ip6t -t raw -A PREROUTING -p tcp --dport 21 -j CT --helper ftp
}

# offloadd_config CONFIG FLOWS : the same router as an offloadd configuration.
offloadd_config() {
    local config=$1 flows=$2
    cat <<EOF
# e2e-router.sh: configuration $config, flows: $flows
interfaces:
  - name: lan0
  - name: wan0
nat:
  - {type: masquerade, family: ipv4, out: wan0}
  - {type: dnat, protocol: tcp, destination: $R_WAN4/32, dport: 8080, to: $L4, ports: 80}
EOF
    # flows: helpers leaves port forwards to the kernel, which has no ftp helper then: offloadd --check refuses an
    # FTP port forward there, so that configuration has none.
    if [[ $flows == all ]]; then
        echo "  - {type: dnat, protocol: tcp, destination: $R_WAN4/32, dport: 21, to: $L4, ports: 21}"
    fi
    cat <<EOF
  - {type: dnat, protocol: tcp, destination: "$R_WAN6/128", dport: 8080, to: "$L6", ports: 80}
  - {type: masquerade, family: ipv4, out: lan0, source: $LAN4, destination: $L4/32}
EOF
    if [[ $config == nat66 ]]; then
        cat <<EOF
  - {type: masquerade, family: ipv6, out: wan0}
  - {type: masquerade, family: ipv6, out: lan0, source: "$LAN6", destination: "$L6/128"}
EOF
    fi
    cat <<EOF
helpers:
  - {name: ftp, ports: [21]}
steering:
  from: [lan0]
  to: [wan0]
  flows: $flows
  queue-pre: 0
  queue-post: $((SHARDS > 1 ? SHARDS : 1))
  nat-ports: $NAT_PORTS
EOF
    # SHARDS=N: offloadd runs N engine shards (queues 0..N-1 before routing, N..2N-1 after); helpers mode has one.
    if ((SHARDS > 1)) && [[ $flows == all ]]; then
        echo "  shards: $SHARDS"
    fi
}

# forward_policy MODE CONFIG [OFFLOADD_CONFIG] : default DROP and the state rules. Through the kernel, the usual
# policy; through offloadd, what `offloadctl rules firewall` prints for its configuration (docs/steering.md: the
# kernel's states and offloadd's marks), as a user would load it.
forward_policy() {
    local mode=$1 config=$2 cfg=${3-} t out rc=0
    if [[ $mode == kernel ]]; then
        for t in ipt ip6t; do
            $t -P FORWARD DROP
            # Without it the kernel forwards what its conntrack calls INVALID (an ICMP error quoting nothing it
            # knows) untranslated: a leak of the LAN's addresses. offloadd's guard chain does the same job.
            $t -A FORWARD -m conntrack --ctstate INVALID -j DROP
            $t -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
            $t -A FORWARD -i lan0 -o wan0 -j ACCEPT
            $t -A FORWARD -i lan0 -o lan0 -j ACCEPT
            $t -A FORWARD -i wan0 -o lan0 -m conntrack --ctstate DNAT -j ACCEPT
        done
    else
        out=$(h_ctl_in "$R" rules firewall --config "$cfg" 2>&1) || rc=$?
        printf '%s\n' "$out" >"$H_WORK/$config-$mode.firewall"
        if ((rc == 0)) &&
            awk '/^COMMIT/ { print; exit } { print }' <<<"$out" | ip netns exec "$R" iptables-restore -w --noflush &&
            awk 'done { print } /^COMMIT/ { done = 1 }' <<<"$out" | ip netns exec "$R" ip6tables-restore -w --noflush &&
            [[ $(ipt -S FORWARD | head -n 1) == "-P FORWARD DROP" && $(ip6t -S FORWARD | head -n 1) == "-P FORWARD DROP" ]]; then
            ok "$mode: offloadctl rules firewall prints a FORWARD policy that loads (default DROP, $(grep -c '^-A FORWARD' <<<"$out") rules)"
        else
            not_ok "$mode: offloadctl rules firewall prints a FORWARD policy that loads" "exit $rc: $(tail -n 3 <<<"$out")"
            for t in ipt ip6t; do
                $t -F FORWARD
                $t -P FORWARD DROP
                $t -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
                $t -A FORWARD -m mark --mark "$MARK_ESTABLISHED/$MARK_ESTABLISHED" -j ACCEPT
                $t -A FORWARD -m mark --mark "$MARK_RELATED/$MARK_RELATED" -j ACCEPT
                $t -A FORWARD -i lan0 -o wan0 -j ACCEPT
                $t -A FORWARD -i lan0 -o lan0 -j ACCEPT
                $t -A FORWARD -i wan0 -o lan0 -m mark --mark "$MARK_DNAT/$MARK_DNAT" -j ACCEPT
                $t -A FORWARD -i wan0 -o lan0 -m conntrack --ctstate DNAT -j ACCEPT
            done
        fi
    fi
    if [[ $config == dual ]]; then
        # Routed IPv6: the LAN server's own services are open to the WAN (a pinhole, not a port forward).
        ip6t -A FORWARD -i wan0 -o lan0 -d "$L6/128" -p tcp --dport 80 -j ACCEPT
        ip6t -A FORWARD -i wan0 -o lan0 -d "$L6/128" -p udp --dport 7 -j ACCEPT
        ip6t -A FORWARD -i wan0 -o lan0 -d "$L6/128" -p ipv6-icmp --icmpv6-type echo-request -j ACCEPT
    fi
}

# --- running shapes --------------------------------------------------------------------------------------------

declare -A matrix=()
mode=
config=

# shape NAME WHY : the check for NAME in the current mode (WHY empty: ok), and its cell in the matrix.
shape() {
    local name=$1 why=${2-} col=$mode
    [[ $config == nat66 ]] && col="$mode/nat66"
    grep -qxF -- "$name" <<<"$shape_list" || shape_list+=$name$'\n'
    [[ -z ${SHAPE_TIMES:-} ]] || info "$(date +%s.%N | cut -c1-14) $name"
    if [[ -z $why ]]; then
        matrix["$name|$col"]=pass
        ok "$mode: $name"
    else
        matrix["$name|$col"]=FAIL
        not_ok "$mode: $name" "$why"
    fi
}
shape_list=

# skip NAME WHY : the shape does not apply in this mode (n/a in the matrix, said as information).
skip() {
    local col=$mode
    [[ $config == nat66 ]] && col="$mode/nat66"
    grep -qxF -- "$1" <<<"$shape_list" || shape_list+=$1$'\n'
    matrix["$1|$col"]=n/a
    info "skip - $mode: $1: $2"
}

in_ns() {
    local n=$1
    shift
    ip netns exec "$n" "$@"
}
# http NS ARGS... : curl, bounded.
http() {
    local n=$1
    shift
    ip netns exec "$n" curl -sS -g --connect-timeout 3 --max-time 20 "$@"
}

# get_peer NS URL PEER_REGEX : GET URL/peer; prints why not, when the server did not see PEER_REGEX.
get_peer() {
    local out rc=0
    out=$(http "$1" "$2/peer" 2>&1) || rc=$?
    if ((rc != 0)); then
        echo "curl $2/peer exit $rc: $out"
    elif [[ ! $out =~ ^$3$ ]]; then
        echo "the server saw '$out', not /$3/"
    fi
}

# get_big NS URL : GET URL/big.bin; prints why not, when it is not identical.
get_big() {
    local out=$H_WORK/got.bin rc=0 msg
    rm -f "$out"
    msg=$(http "$1" -o "$out" "$2/big.bin" 2>&1) || rc=$?
    if ((rc != 0)); then
        echo "curl $2/big.bin exit $rc: $msg ($(stat -c %s "$out" 2>/dev/null || echo 0) bytes)"
    elif ! cmp -s "$out" "$www/big.bin"; then
        echo "big.bin from $2 differs"
    fi
}

# upload NS URL PEER : POST the upload file; prints why not, when the server did not get it whole from PEER.
upload() {
    local out rc=0
    out=$(http "$1" -H 'Expect:' --data-binary "@$H_WORK/upload.bin" "$2/upload" 2>&1) || rc=$?
    if ((rc != 0)); then
        echo "curl POST $2/upload exit $rc: $out"
    elif [[ $out != "$up_len $up_sha $3" ]]; then
        echo "the server answered '$out', not '$up_len <sha256> $3'"
    fi
}

# udp_peer NS HOST PEER_REGEX : the UDP echo answers and saw PEER_REGEX.
udp_peer() {
    local out rc=0
    out=$(in_ns "$1" python3 "$PEER" udp "$2" 7 2>&1) || rc=$?
    if ((rc != 0)); then
        echo "UDP to $2:7: $out (exit $rc)"
    elif [[ ! $out =~ ^$3\ hello$ ]]; then
        echo "the echo saw '$out', not /$3/"
    fi
}

# udp_refused NS HOST : a datagram to a closed port gets the ICMP port unreachable back.
udp_refused() {
    local out rc=0
    out=$(in_ns "$1" python3 "$PEER" udp "$2" 9 2>&1) || rc=$?
    ((rc == 3)) || echo "UDP to $2:9 (closed): $out (exit $rc), expected refused (ICMP port unreachable)"
}

# pings NS HOST : three echo requests, three replies.
pings() {
    local out rc=0
    out=$(in_ns "$1" ping -n -c 3 -i 0.2 -W 2 "$2" 2>&1) || rc=$?
    grep -q ' 3 received' <<<"$out" || echo "ping $2: $(grep -E 'transmitted|ping:' <<<"$out" | head -n 2)"
}

# trace NS ARGS... -- HOP... : traceroute's hops are exactly HOP...
trace() {
    local n=$1 out got want
    shift
    local -a args=()
    while [[ $1 != -- ]]; do args+=("$1"); shift; done
    shift
    want="$*"
    out=$(in_ns "$n" timeout 20 traceroute -n -q 1 -w 1 -m "$#" "${args[@]}" 2>&1) || true
    got=$(awk 'NR > 1 && $1 ~ /^[0-9]+$/ { print $2 }' <<<"$out" | tr '\n' ' ')
    [[ ${got% } == "$want" ]] || echo "traceroute ${args[*]}: hops '${got% }', expected '$want'"
}

# pmtu_cached NS DST MTU : NS learnt MTU for DST (its route cache says so).
pmtu_cached() {
    local r
    r=$(ip -n "$1" route get "$2" 2>&1 | tr '\n' ' ')
    [[ $r == *" mtu $3 "* ]] || echo "no learnt path MTU $3 in $1: $r"
}

# ftp NS URL TRACE_REGEX SERVER LOG_REGEX CURL_ARGS... : big.bin by FTP identical, curl's trace matches
# TRACE_REGEX, and what vsftpd in SERVER (server or lansrv) logged for this session matches LOG_REGEX (what the
# router's helper made of the commands and answers; "" for no such check).
ftp() {
    local n=$1 url=$2 re=$3 who=$4 vlog=$H_WORK/ftp-$4/vsftpd.log log_re=$5 out=$H_WORK/ftp.bin rc=0 from
    shift 5
    rm -f "$out"
    from=$(stat -c %s "$vlog" 2>/dev/null || echo 0)
    in_ns "$n" curl -v -sS -g --connect-timeout 3 --max-time 20 "$@" -o "$out" "$url/big.bin" 2>"$out.log" || rc=$?
    if ((rc != 0)); then
        echo "curl $url exit $rc: $(grep -m1 '^curl:' "$out.log" || tail -n 1 "$out.log")"
    elif ! cmp -s "$out" "$ftp_root/big.bin"; then
        echo "big.bin by FTP from $url differs"
    elif ! grep -Eq -- "$re" "$out.log"; then
        echo "curl's trace has no /$re/: $(grep -E '^[<>] (PORT|EPRT|PASV|EPSV|227|229)' "$out.log" | tr '\n' ' ')"
    elif [[ -n $log_re ]] && ! tail -c +"$((from + 1))" "$vlog" | grep -Eq -- "$log_re"; then
        echo "vsftpd ($who) logged no /$log_re/: $(tail -c +"$((from + 1))" "$vlog" | grep -oE '"(PORT|EPRT|PASV|EPSV|227|229)[^"]*"' | tr '\n' ' ')"
    fi
}

# unsolicited NS URL : a new connection from the WAN to the LAN that no rule allows times out (dropped), rather
# than being refused by the LAN host.
unsolicited() {
    local rc=0
    ip netns exec "$1" curl -sS -g --connect-timeout 1.5 --max-time 2 -o /dev/null "$2" 2>/dev/null || rc=$?
    ((rc == 28)) || echo "curl $2 exit $rc: expected 28 (dropped by the FORWARD policy)"
}

# gre NS HOST : GRE packets come back through the router.
gre() {
    local out rc=0
    out=$(in_ns "$1" python3 "$PEER" gre "$2" 2>&1) || rc=$?
    ((rc == 0)) || echo "$out"
}

# exploded IPV6 : the address written in full.
exploded() { python3 -c 'import ipaddress, sys; print(ipaddress.ip_address(sys.argv[1]).exploded)' "$1"; }

# v CHECK ARGS... : runs one of the checks above, which print why the shape failed or nothing; a check that dies
# (a bug of this script, say) must not pass for a silent success.
v() {
    local out rc=0
    out=$("$@") || rc=$?
    printf '%s' "$out"
    ((rc == 0)) || printf '%s' "the check '$*' itself failed (exit $rc); "
}

peer4=''
peer6=''

shapes_dual() {
    # NAT44 beside routed IPv6.
    local why
    why=$(v get_peer "$C" "http://$S4" "$peer4")$(v get_big "$C" "http://$S4")
    shape "NAT44 TCP" "$why"
    shape "NAT44 UDP" "$(v udp_peer "$C" "$S4" "$peer4")"
    shape "NAT44 ping" "$(v pings "$C" "$S4")"
    shape "IPv6 routed TCP LAN to WAN" "$(v get_peer "$C" "http://[$S6]" "$C6 [0-9]+")$(v get_big "$C" "http://[$S6]")"
    shape "IPv6 routed TCP WAN to LAN" "$(v get_peer "$S" "http://[$L6]" "$S6 [0-9]+")$(v get_big "$S" "http://[$L6]")"
    shape "IPv6 routed UDP LAN to WAN" "$(v udp_peer "$C" "$S6" "$C6 [0-9]+")"
    shape "IPv6 routed UDP WAN to LAN" "$(v udp_peer "$S" "$L6" "$S6 [0-9]+")"
    shape "IPv6 routed ping LAN to WAN" "$(v pings "$C" "$S6")"
    shape "IPv6 routed ping WAN to LAN" "$(v pings "$S" "$L6")"
    shape "IPv6 unsolicited WAN to LAN dropped" "$(v unsolicited "$S" "http://[$C6]:80/")"
    shape "port forward IPv4" "$(v get_peer "$S" "http://$R_WAN4:8080" "$S4 [0-9]+")"
    shape "port forward IPv6" "$(v get_peer "$S" "http://[$R_WAN6]:8080" "$S6 [0-9]+")"
    # Before UDP and ICMP entries expire (30 s).
    [[ $mode != offloadd ]] || offloadd_tables
    shape "hairpin IPv4" "$(v get_peer "$C" "http://$R_WAN4:8080" "$R_LAN4 [0-9]+")$(v get_big "$C" "http://$R_WAN4:8080")"
    shape "NAT44 UDP port unreachable" "$(v udp_refused "$C" "$S4")"
    shape "IPv6 routed UDP port unreachable" "$(v udp_refused "$C" "$S6")"
    shape "NAT44 traceroute UDP" "$(v trace "$C" "$S4" -- "$R_LAN4" "$H_WAN4" "$S4")"
    shape "NAT44 traceroute ICMP" "$(v trace "$C" -I "$S4" -- "$R_LAN4" "$H_WAN4" "$S4")"
    shape "IPv6 routed traceroute" "$(v trace "$C" -6 "$S6" -- "$R_LAN6" "$H_WAN6" "$S6")"
    shape "NAT44 PMTU upload (frag needed)" "$(v upload "$C" "http://$S4" "$R_WAN4")$(v pmtu_cached "$C" "$S4" "$NARROW4")"
    shape "IPv6 routed PMTU upload (packet too big)" "$(v upload "$C" "http://[$S6]" "$C6")$(v pmtu_cached "$C" "$S6" "$NARROW6")"
    shape "PMTU download from port forward IPv4" "$(v get_big "$S" "http://$R_WAN4:8080")$(v pmtu_cached "$L" "$S4" "$NARROW4")"
    shape "PMTU download from port forward IPv6" "$(v get_big "$S" "http://[$R_WAN6]:8080")$(v pmtu_cached "$L" "$S6" "$NARROW6")"
    shape "FTP active through masquerade" "$(v ftp "$C" "ftp://$S4" '^> PORT ' server "\"PORT ${R_WAN4//./,}," -P - --disable-eprt)"
    shape "FTP passive through masquerade" "$(v ftp "$C" "ftp://$S4" '^> PASV' server "" --disable-epsv)"
    if [[ $mode == helpers ]]; then
        skip "FTP passive through port forward (227 rewritten)" "flows: helpers has no FTP port forward (offloadd --check refuses it)"
        skip "FTP active through port forward" "flows: helpers has no FTP port forward (offloadd --check refuses it)"
    else
        shape "FTP passive through port forward (227 rewritten)" \
            "$(v ftp "$S" "ftp://$R_WAN4" "^< 227 .*\(${R_WAN4//./,}," lansrv "\"227 .*\(${L4//./,}," --disable-epsv --no-ftp-skip-pasv-ip)"
        shape "FTP active through port forward" "$(v ftp "$S" "ftp://$R_WAN4" '^> PORT ' lansrv "\"PORT ${S4//./,}," -P - --disable-eprt)"
    fi
    shape "IPv6 routed FTP active (EPRT, RELATED)" "$(v ftp "$C" "ftp://[$S6]" '^> EPRT ' server "\"EPRT \\|2\\|$C6\\|" -P -)"
    shape "GRE through NAT44" "$(v gre "$C" "$S4")"
    [[ $mode != helpers ]] || helpers_tables
}

# helpers_tables : in helpers mode offloadd's table holds the FTP control connections (with the helper), the
# kernel's the other flows.
helpers_tables() {
    local ours theirs why=''
    ours=$(h_ctl conntrack list 2>&1) || why+="offloadctl conntrack list failed: $ours; "
    grep -Eq "tcp .*src=$C4 dst=$S4 sport=[0-9]+ dport=21 .*helper=ftp" <<<"$ours" ||
        why+="offloadd's table has no FTP control connection with helper=ftp; "
    grep -Eq "tcp .*src=$C4 dst=$S4 sport=[0-9]+ dport=80 " <<<"$ours" && why+="offloadd's table has the HTTP flow; "
    theirs=$(in_ns "$R" conntrack -L -p tcp -s "$C4" -d "$S4" 2>/dev/null || true)
    grep -Eq "dport=80 " <<<"$theirs" || why+="the kernel's table has no HTTP flow from the client; "
    grep -Eq "dport=21 " <<<"$theirs" && why+="the kernel's table has the FTP control connection; "
    shape "FTP through offloadd, the rest through the kernel" "$why"
}

shapes_nat66() {
    shape "NAT66 TCP" "$(v get_peer "$C" "http://[$S6]" "$peer6")$(v get_big "$C" "http://[$S6]")"
    shape "NAT66 UDP" "$(v udp_peer "$C" "$S6" "$peer6")"
    shape "NAT66 ping" "$(v pings "$C" "$S6")"
    shape "NAT44 TCP beside NAT66" "$(v get_peer "$C" "http://$S4" "$peer4")"
    shape "NAT44 ping beside NAT66" "$(v pings "$C" "$S4")"
    shape "NAT66 unsolicited WAN to LAN dropped" "$(v unsolicited "$S" "http://[$L6]:80/")"
    shape "NAT66 port forward" "$(v get_peer "$S" "http://[$R_WAN6]:8080" "$S6 [0-9]+")"
    [[ $mode != offloadd ]] || offloadd_tables
    shape "NAT66 hairpin" "$(v get_peer "$C" "http://[$R_WAN6]:8080" "$R_LAN6 [0-9]+")"
    shape "NAT66 UDP port unreachable" "$(v udp_refused "$C" "$S6")"
    shape "NAT66 traceroute" "$(v trace "$C" -6 "$S6" -- "$R_LAN6" "$H_WAN6" "$S6")"
    shape "NAT66 PMTU upload (packet too big)" "$(v upload "$C" "http://[$S6]" "$R_WAN6")$(v pmtu_cached "$C" "$S6" "$NARROW6")"
    shape "NAT66 PMTU download from port forward" "$(v get_big "$S" "http://[$R_WAN6]:8080")$(v pmtu_cached "$L" "$S6" "$NARROW6")"
    # The kernel's helper writes the address it puts in EPRT in full (2001:0db8:0002:...), as may ours.
    shape "NAT66 FTP active (EPRT)" "$(v ftp "$C" "ftp://[$S6]" '^> EPRT ' server "\"EPRT \\|2\\|($R_WAN6|$(exploded "$R_WAN6"))\\|" -P -)"
    shape "NAT66 FTP passive (EPSV)" "$(v ftp "$C" "ftp://[$S6]" '^> EPSV' server "")"
}

# drops_total : the sum of offloadctl stats' drop counters (queue drops and the engine's drop reasons).
drops_total() {
    h_ctl stats 2>/dev/null | awk '
        /^queue [0-9]+ / { for (i = 1; i < NF; i++) if ($i == "dropped") { v = $(i + 1); gsub(/[^0-9]/, "", v); n += v } }
        /^ +[A-Za-z]*(Drop|Invalid|Malformed)[A-Za-z]* +[0-9]+/ && !/^queue/ { n += $2 }
        END { print n + 0 }'
}

# bad_input : the scapy barrage from the LAN and from the WAN, captured on wan0 apart.
bad_input() {
    local cap=$H_WORK/$mode-$config-bad.pcapng before after rc why='' leaks dst6 prefixes
    before=0
    [[ $mode != kernel ]] && before=$(drops_total)
    h_capture_start "$R" wan0 "$cap"
    rc=0
    timeout 90 ip netns exec "$C" /usr/bin/python3 "$BAD" --src4 "$C4" --dst4 "$S4" --src6 "$C6" --dst6 "$S6" \
        --flood 400 --seed 1 >"$H_WORK/bad-lan.log" 2>&1 || rc=$?
    ((rc == 0)) || why+="scapy from the LAN exit $rc: $(tail -n 1 "$H_WORK/bad-lan.log"); "
    dst6=$L6
    [[ $config == nat66 ]] && dst6=$R_WAN6
    rc=0
    timeout 90 ip netns exec "$S" /usr/bin/python3 "$BAD" --src4 "$S4" --dst4 "$R_WAN4" --src6 "$S6" --dst6 "$dst6" \
        --natport-dst4 "$R_WAN4" --flood 400 --seed 2 >"$H_WORK/bad-wan.log" 2>&1 || rc=$?
    ((rc == 0)) || why+="scapy from the WAN exit $rc: $(tail -n 1 "$H_WORK/bad-wan.log"); "
    sleep 0.3
    h_capture_stop >/dev/null
    prefixes=("$LAN4")
    [[ $config == nat66 ]] && prefixes+=("$LAN6")
    leaks=$(h_sources_in "$cap" "${prefixes[@]}")
    [[ ${leaks%%$'\n'*} == 0 ]] || why+="left wan0 with a LAN source: ${leaks//$'\n'/; }; "
    if [[ $mode != kernel ]] && ! h_daemon_alive; then
        why+="offloadd died; "
    fi
    why+=$(v get_big "$C" "http://$S4")
    [[ $config == nat66 ]] && why+=$(v get_big "$C" "http://[$S6]")
    shape "bad input: nothing un-NATed leaves, a transfer after works" "$why"
    if [[ $mode != kernel ]]; then
        after=$(drops_total)
        if ((after > before)); then
            shape "bad input: offloadctl stats counts the drops" ""
        else
            shape "bad input: offloadctl stats counts the drops" "drop counters $before before, $after after: $(h_ctl stats 2>&1 | tr '\n' ';' | head -c 600)"
        fi
    fi
}

# offloadd_tables : offloadd's table holds the LAN's TCP, UDP and ICMP flows of the shapes; the kernel's none.
offloadd_tables() {
    local ours theirs why='' re
    ours=$(h_ctl conntrack list 2>&1) || why+="offloadctl conntrack list failed: $ours; "
    local -a want=(
        "tcp .*src=$C4 dst=$S4 sport=[0-9]+ dport=80 "
        "udp .*src=$C4 dst=$S4 sport=[0-9]+ dport=7 "
        "icmp .*src=$C4 dst=$S4 "
        "tcp .*src=$S4 dst=$R_WAN4 sport=[0-9]+ dport=8080 "
    )
    if [[ $config == dual ]]; then
        want+=("tcp .*src=$C6 dst=$S6 sport=[0-9]+ dport=80 " "tcp .*src=$S6 dst=$L6 sport=[0-9]+ dport=80 ")
    else
        want=(
            "tcp .*src=$C6 dst=$S6 sport=[0-9]+ dport=80 "
            "udp .*src=$C6 dst=$S6 sport=[0-9]+ dport=7 "
            "icmpv6 .*src=$C6 dst=$S6 "
            "tcp .*src=$C4 dst=$S4 sport=[0-9]+ dport=80 "
            "tcp .*src=$S6 dst=$R_WAN6 sport=[0-9]+ dport=8080 "
        )
    fi
    for re in "${want[@]}"; do
        grep -Eq -- "$re" <<<"$ours" || why+="offloadd's table has no /$re/; "
    done
    theirs=$({ in_ns "$R" conntrack -L && in_ns "$R" conntrack -L -f ipv6; } 2>/dev/null |
        grep -E "^(tcp|udp|icmp|icmpv6) .*src=($C4|$C6|$S4|$S6) " | grep -vE "dport=21 |sport=20 " || true)
    [[ -z $theirs ]] || why+="the kernel tracks $(wc -l <<<"$theirs") of them: $(head -n 2 <<<"$theirs" | tr '\n' ';')"
    shape "offloadd tracks the TCP/UDP/ICMP flows, the kernel none" "$why"
}

# --- one configuration in one mode ---------------------------------------------------------------------------------

run() {
    config=$1 mode=$2
    local cfg=$H_WORK/$config-$mode.yaml cap=$H_WORK/$mode-$config-wan0.pcapng leaks t0=$SECONDS prefixes problems
    info "=== configuration $config through $mode"
    rl_reset
    peer4="$R_WAN4 [0-9]+"
    peer6="$R_WAN6 [0-9]+"
    if [[ $mode == kernel ]]; then
        kernel_nat "$config"
    else
        offloadd_config "$config" "$([[ $mode == offloadd ]] && echo all || echo helpers)" >"$cfg"
        [[ $mode == offloadd ]] && peer4="$R_WAN4 $NAT_PORT_RE" && peer6="$R_WAN6 $NAT_PORT_RE"
        local out rc=0
        out=$(dotnet "$H_OFFLOADD" --check --config "$cfg" 2>&1) || rc=$?
        if ((rc != 0)); then
            not_ok "$mode: offloadd --check accepts the $config configuration" "exit $rc: $out"
            return 0
        fi
        h_ctl_in "$R" rules print --config "$cfg" >"$H_WORK/$config-$mode.rules" 2>&1 || true
        # Each run a fresh daemon: no state carried over from the previous configuration or mode.
        if ! h_daemon_start "$R" "$cfg" --apply-rules --state none; then
            not_ok "$mode: offloadd starts with the $config configuration" "$(tail -n 5 "$H_DAEMON_LOG")"
            return 0
        fi
    fi
    forward_policy "$mode" "$config" "$cfg"
    if [[ -n ${LAB_HOLD:-} ]]; then
        # For a person debugging: the router is set up; the run goes on when LAB_HOLD (a file) is removed.
        touch "$LAB_HOLD"
        info "holding: $config through $mode is set up (namespaces rl-*$sfx, work $H_WORK); rm $LAB_HOLD to go on"
        for _ in $(seq 1 3600); do [[ -e $LAB_HOLD ]] || break; sleep 0.5; done
    fi
    h_capture_start "$R" wan0 "$cap"
    "shapes_$config"
    local dropped
    dropped=$(h_capture_stop)
    prefixes=("$LAN4")
    [[ $config == nat66 ]] && prefixes+=("$LAN6")
    leaks=$(h_sources_in "$cap" "${prefixes[@]}")
    if [[ ${leaks%%$'\n'*} == 0 && ${dropped:-0} == 0 ]]; then
        shape "wan0 capture: no LAN-private source left" ""
    else
        shape "wan0 capture: no LAN-private source left" "${leaks//$'\n'/; } (dumpcap dropped ${dropped:-?})"
    fi
    bad_input
    { in_ns "$R" iptables-save -c && in_ns "$R" ip6tables-save -c; } >"$H_WORK/$mode-$config.iptables" 2>&1 || true
    if [[ $mode != kernel ]]; then
        h_ctl stats >"$H_WORK/$mode-$config.stats" 2>&1 || true
        h_ctl conntrack list >"$H_WORK/$mode-$config.conntrack" 2>&1 || true
        problems=$(h_daemon_log_problems)
        h_daemon_stop
        if [[ $H_DAEMON_RC == 0 && -z $problems ]]; then
            shape "offloadd exits 0 on SIGTERM, no warnings or errors logged" ""
        else
            shape "offloadd exits 0 on SIGTERM, no warnings or errors logged" "exit $H_DAEMON_RC; $(head -n 3 <<<"$problems")"
        fi
        mv "$H_DAEMON_LOG" "$H_WORK/$mode-$config.log"
    fi
    info "configuration $config through $mode: $((SECONDS - t0)) s"
}

rl_up
runs=("dual:kernel" "dual:offloadd" "dual:helpers" "nat66:kernel" "nat66:offloadd")
for r in "${runs[@]}"; do
    [[ -z ${ONLY:-} || " $ONLY " == *" $r "* ]] || continue
    run "${r%%:*}" "${r#*:}"
done

# --- the matrix --------------------------------------------------------------------------------------------------

info ""
info "$(printf '%-58s %-8s %-8s %-8s %-13s %-13s' shape kernel offloadd helpers kernel/nat66 offloadd/nat66)"
while IFS= read -r s; do
    [[ -n $s ]] || continue
    info "$(printf '%-58s %-8s %-8s %-8s %-13s %-13s' "$s" "${matrix["$s|kernel"]:--}" "${matrix["$s|offloadd"]:--}" \
        "${matrix["$s|helpers"]:--}" "${matrix["$s|kernel/nat66"]:--}" "${matrix["$s|offloadd/nat66"]:--}")"
done <<<"$shape_list"
info "elapsed: ${SECONDS}s"
h_finish

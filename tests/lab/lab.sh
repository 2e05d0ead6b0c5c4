#!/usr/bin/env bash
# Network lab for Offload: three network namespaces, client -- router -- server,
# wholly unconnected to the host's network.
#
# Source it from a bash script (which should run under `set -euo pipefail`):
#
#   . tests/lab/lab.sh
#   lab_up "$sfx"; lab_kernel_ftp_nat "$sfx"; lab_vsftpd "$sfx"
#   lab_exec "$(lab_ns client "$sfx")" curl ...
#   lab_down "$sfx"
#
# or run it directly for manual work:  tests/lab/lab.sh up|down|kernel-ftp-nat|vsftpd [suffix]
#
# Topology (the suffix, if any, is appended to every namespace name so that
# labs can run side by side):
#
#   ol-client            ol-router                      ol-server
#   eth0 -------------- lan0        wan0 -------------- eth0
#   192.0.2.2/24        192.0.2.1/24  198.51.100.1/24    198.51.100.2/24
#   2001:db8:1::2/64    2001:db8:1::1/64 2001:db8:2::1/64 2001:db8:2::2/64
#
# The client's default routes point at the router; the server knows only its
# on-link WAN subnets, so traffic from the LAN reaches it only through NAT.
# lab_up sets up plain forwarding; lab_kernel_ftp_nat adds the kernel's NAT and
# FTP helper (the reference behaviour), and a later function can put our
# daemon in the router instead.
#
# Every function works under `set -euo pipefail` and returns non-zero on failure.

# --- constants (plain variables so that sourcing twice is harmless) ---------
# Some are only for the scripts that source this file.
# shellcheck disable=SC2034

LAB_NS_PREFIX=ol-

LAB_LAN4_PREFIX=192.0.2.0/24
LAB_LAN4_ROUTER=192.0.2.1
LAB_LAN4_CLIENT=192.0.2.2
LAB_LAN6_PREFIX=2001:db8:1::/64
LAB_LAN6_ROUTER=2001:db8:1::1
LAB_LAN6_CLIENT=2001:db8:1::2
LAB_WAN4_PREFIX=198.51.100.0/24
LAB_WAN4_ROUTER=198.51.100.1
LAB_WAN4_SERVER=198.51.100.2
LAB_WAN6_PREFIX=2001:db8:2::/64
LAB_WAN6_ROUTER=2001:db8:2::1
LAB_WAN6_SERVER=2001:db8:2::2

# Fixed, locally administered MACs: bytes 2..5 spell the IPv4 address, so a
# frame's direction on a router interface can be read from its source MAC, and
# the EUI-64 link-local addresses are the same on every run.
LAB_MAC_CLIENT=02:00:c0:00:02:02   # client eth0   (192.0.2.2)
LAB_MAC_LAN0=02:00:c0:00:02:01     # router lan0   (192.0.2.1)
LAB_MAC_WAN0=02:00:c6:33:64:01     # router wan0   (198.51.100.1)
LAB_MAC_SERVER=02:00:c6:33:64:02   # server eth0   (198.51.100.2)

# Where per-lab files (vsftpd config, log, served files) live.
LAB_TMPROOT=${LAB_TMPROOT:-/tmp}

# --- small helpers -----------------------------------------------------------

lab_log() { printf 'lab: %s\n' "$*" >&2; }

# Suffixes end up in namespace and file names: keep them tame.
_lab_check_suffix() {
    if [[ ! ${1-} =~ ^[A-Za-z0-9_.-]{0,32}$ ]]; then
        lab_log "bad lab suffix '${1-}' (allowed: [A-Za-z0-9_.-], at most 32)"
        return 1
    fi
}

# lab_ns ROLE [SUFFIX] -> prints the namespace name, e.g. "ol-router" or "ol-router-2".
lab_ns() {
    local role=$1 sfx=${2-}
    case $role in client | router | server) ;; *)
        lab_log "unknown role '$role'"
        return 1
        ;;
    esac
    _lab_check_suffix "$sfx" || return 1
    printf '%s%s%s\n' "$LAB_NS_PREFIX" "$role" "$sfx"
}

# lab_tmp [SUFFIX] -> prints this lab's private directory (not created here).
lab_tmp() {
    _lab_check_suffix "${1-}" || return 1
    printf '%s/%slab%s\n' "$LAB_TMPROOT" "$LAB_NS_PREFIX" "${1-}"
}

# lab_ftp_root [SUFFIX] -> prints the directory vsftpd serves (filled by lab_vsftpd).
lab_ftp_root() {
    local t
    t=$(lab_tmp "${1-}") || return 1
    printf '%s/ftp-root\n' "$t"
}

# lab_exec NS CMD... : run CMD inside namespace NS (a full name from lab_ns).
lab_exec() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# lab_wait_port NS PORT [TIMEOUT_S] [tcp|udp] : wait until something in NS
# listens on PORT (any address, v4 or v6). Fails after TIMEOUT_S (default 10).
lab_wait_port() {
    local ns=$1 port=$2 timeout=${3:-10} proto=${4:-tcp} flag deadline
    case $proto in tcp) flag=-Hltn ;; udp) flag=-Hlun ;; *)
        lab_log "lab_wait_port: bad protocol '$proto'"
        return 1
        ;;
    esac
    deadline=$((SECONDS + timeout))
    while :; do
        if [[ -n $(ip netns exec "$ns" ss "$flag" "sport = :$port" 2>/dev/null) ]]; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            lab_log "nothing listens on $proto port $port in $ns after ${timeout}s"
            return 1
        fi
        sleep 0.05
    done
}

# lab_wait_link NS DEV [TIMEOUT_S] : wait until DEV in NS has carrier (veth
# carrier comes up asynchronously), its IPv6 link-local address, and no
# tentative IPv6 address.
lab_wait_link() {
    local ns=$1 dev=$2 timeout=${3:-10} deadline
    deadline=$((SECONDS + timeout))
    while [[ $(ip netns exec "$ns" cat "/sys/class/net/$dev/operstate" 2>/dev/null) != up ||
        -z $(ip -n "$ns" -6 addr show dev "$dev" scope link 2>/dev/null) ||
        -n $(ip -n "$ns" -6 addr show dev "$dev" tentative 2>/dev/null) ]]; do
        if ((SECONDS >= deadline)); then
            lab_log "$ns/$dev not ready (carrier, link-local address) after ${timeout}s"
            return 1
        fi
        sleep 0.05
    done
}

# lab_wait_conntrack_quiet NS [TIMEOUT_S] : wait until every TCP connection the
# router's conntrack knows has finished (TIME_WAIT or CLOSE), so a capture
# taken in the router holds each connection's whole teardown.
lab_wait_conntrack_quiet() {
    local ns=$1 timeout=${2:-10} deadline
    deadline=$((SECONDS + timeout))
    while ip netns exec "$ns" conntrack -L -p tcp 2>/dev/null |
        grep -Eqv ' (TIME_WAIT|CLOSE) '; do
        if ((SECONDS >= deadline)); then
            lab_log "TCP connections in $ns still open after ${timeout}s"
            return 1
        fi
        sleep 0.05
    done
}

# Configure one namespace's kernel before any veth exists in it, so the
# devices inherit these defaults ("default") and the existing ones get them too ("all").
_lab_ns_sysctls() {
    local ns=$1 forward=$2 scope
    ip netns exec "$ns" sysctl -q -w net.ipv4.ip_forward="$forward" || return 1
    for scope in all default; do
        ip netns exec "$ns" sysctl -q -w \
            net.ipv6.conf.$scope.forwarding="$forward" \
            net.ipv6.conf.$scope.accept_dad=0 \
            net.ipv6.conf.$scope.dad_transmits=0 \
            net.ipv6.conf.$scope.accept_ra=0 \
            net.ipv6.conf.$scope.autoconf=0 \
            net.ipv6.conf.$scope.router_solicitations=0 \
            net.ipv6.conf.$scope.mldv1_unsolicited_report_interval=1 \
            net.ipv6.conf.$scope.mldv2_unsolicited_report_interval=1 \
            net.ipv4.conf.$scope.rp_filter=0 || return 1
    done
}

# Turn off every offload on a veth end: software checksums (so captures show
# the final ones), no TSO/GSO (wire-size segments), no GRO (no merging on receive).
_lab_no_offloads() {
    local ns=$1 dev=$2 feat
    ip netns exec "$ns" ethtool -K "$dev" tx off sg off tso off gso off gro off >/dev/null 2>&1 || {
        lab_log "ethtool -K $dev failed in $ns"
        return 1
    }
    # Features that some kernels lack or keep fixed: best effort, one by one.
    for feat in tx-udp-segmentation rx-gro-list rx-udp-gro-forwarding; do
        ip netns exec "$ns" ethtool -K "$dev" "$feat" off >/dev/null 2>&1 || true
    done
    # Verify the ones that matter for captures.
    local state
    state=$(ip netns exec "$ns" ethtool -k "$dev") || return 1
    for feat in tx-checksumming tcp-segmentation-offload generic-segmentation-offload generic-receive-offload; do
        if ! grep -Eq "^$feat: off" <<<"$state"; then
            lab_log "$ns/$dev: $feat is still on"
            return 1
        fi
    done
}

# --- lab_up / lab_down ---------------------------------------------------------

# lab_up [SUFFIX] : build the three namespaces and their links (tears down any
# previous lab with the same suffix first).
lab_up() {
    local sfx=${1-} c r s ns
    _lab_check_suffix "$sfx" || return 1
    lab_down "$sfx" || return 1
    c=$(lab_ns client "$sfx") && r=$(lab_ns router "$sfx") && s=$(lab_ns server "$sfx") || return 1

    mkdir -p "$(lab_tmp "$sfx")" || return 1
    for ns in "$c" "$r" "$s"; do
        ip netns add "$ns" || return 1
        ip -n "$ns" link set lo up || return 1
    done
    _lab_ns_sysctls "$c" 0 && _lab_ns_sysctls "$r" 1 && _lab_ns_sysctls "$s" 0 || return 1

    # Each pair is created in the router with its peer born in the other
    # namespace: no name ever exists in the host namespace, so labs cannot clash.
    ip -n "$r" link add lan0 address "$LAB_MAC_LAN0" type veth \
        peer name eth0 address "$LAB_MAC_CLIENT" netns "$c" || return 1
    ip -n "$r" link add wan0 address "$LAB_MAC_WAN0" type veth \
        peer name eth0 address "$LAB_MAC_SERVER" netns "$s" || return 1

    _lab_no_offloads "$c" eth0 && _lab_no_offloads "$r" lan0 &&
        _lab_no_offloads "$r" wan0 && _lab_no_offloads "$s" eth0 || return 1

    ip -n "$c" addr add "$LAB_LAN4_CLIENT/24" dev eth0 &&
        ip -n "$c" addr add "$LAB_LAN6_CLIENT/64" dev eth0 nodad &&
        ip -n "$r" addr add "$LAB_LAN4_ROUTER/24" dev lan0 &&
        ip -n "$r" addr add "$LAB_LAN6_ROUTER/64" dev lan0 nodad &&
        ip -n "$r" addr add "$LAB_WAN4_ROUTER/24" dev wan0 &&
        ip -n "$r" addr add "$LAB_WAN6_ROUTER/64" dev wan0 nodad &&
        ip -n "$s" addr add "$LAB_WAN4_SERVER/24" dev eth0 &&
        ip -n "$s" addr add "$LAB_WAN6_SERVER/64" dev eth0 nodad || return 1

    ip -n "$c" link set eth0 up && ip -n "$r" link set lan0 up &&
        ip -n "$r" link set wan0 up && ip -n "$s" link set eth0 up || return 1

    # Client: everything via the router. Server: on-link subnets only (the
    # kernel adds those with the addresses), deliberately no default route.
    ip -n "$c" route add default via "$LAB_LAN4_ROUTER" dev eth0 &&
        ip -n "$c" -6 route add default via "$LAB_LAN6_ROUTER" dev eth0 || return 1

    lab_wait_link "$c" eth0 && lab_wait_link "$r" lan0 &&
        lab_wait_link "$r" wan0 && lab_wait_link "$s" eth0 || return 1
    # Let the unsolicited MLD reports of the joins above go out now (their
    # interval is 1 ms), rather than in the middle of a later capture.
    sleep 0.2
    lab_log "up: $c $r $s"
}

# lab_down [SUFFIX] : stop every process in the lab's namespaces, delete the
# namespaces (and with them the veths) and the lab's directory. Idempotent.
lab_down() {
    local sfx=${1-} ns role pids pid
    _lab_check_suffix "$sfx" || return 1
    for role in client router server; do
        ns=$(lab_ns "$role" "$sfx") || return 1
        [[ -e /run/netns/$ns ]] || continue
        # Only processes that live in our own namespace: they were started by the lab.
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [[ -n $pids ]]; then
            for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
            for _ in $(seq 1 40); do
                pids=$(ip netns pids "$ns" 2>/dev/null || true)
                [[ -z $pids ]] && break
                sleep 0.05
            done
            for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
    local t
    t=$(lab_tmp "$sfx") || return 1
    rm -rf -- "$t"
}

# --- the kernel as the reference router ------------------------------------------

# lab_kernel_ftp_nat [SUFFIX] : the kernel's MASQUERADE on wan0 and the kernel's
# FTP helper attached explicitly, IPv4 and IPv6. Idempotent.
lab_kernel_ftp_nat() {
    local r ipt
    r=$(lab_ns router "${1-}") || return 1
    for ipt in iptables ip6tables; do
        _lab_rule "$r" "$ipt" -t nat POSTROUTING -o wan0 -j MASQUERADE || return 1
        _lab_rule "$r" "$ipt" -t raw PREROUTING -p tcp --dport 21 -j CT --helper ftp || return 1
    done
}

# _lab_rule NS IPT -t TABLE CHAIN RULE... : append the rule unless already there.
_lab_rule() {
    local ns=$1 ipt=$2 tflag=$3 table=$4 chain=$5
    shift 5
    if ! ip netns exec "$ns" "$ipt" "$tflag" "$table" -C "$chain" "$@" 2>/dev/null; then
        ip netns exec "$ns" "$ipt" "$tflag" "$table" -A "$chain" "$@"
    fi
}

# --- vsftpd in the server ---------------------------------------------------------

# lab_ftp_files DIR : fill DIR with the deterministic test files (same bytes
# on every machine: a fixed xorshift32 generator, not the system's random).
#   big.bin    204800 bytes pseudo-random
#   small.bin    3000 bytes pseudo-random
#   tiny.bin      100 bytes pseudo-random
#   hello.txt   one line of text
#   notes.txt   40 numbered lines of text
lab_ftp_files() {
    local dir=$1
    mkdir -p "$dir" || return 1
    perl -e '
        use strict; use warnings;
        my $dir = shift;
        my $x;
        sub rnd_bytes {
            my ($seed, $n) = @_;
            $x = $seed;
            my $s = "";
            while (length($s) < $n) {
                $x ^= ($x << 13) & 0xffffffff;
                $x ^= $x >> 17;
                $x ^= ($x << 5) & 0xffffffff;
                $s .= pack("N", $x);
            }
            return substr($s, 0, $n);
        }
        sub put {
            my ($name, $data) = @_;
            open(my $fh, ">:raw", "$dir/$name") or die "$name: $!";
            print $fh $data; close($fh) or die "$name: $!";
        }
        put("big.bin",   rnd_bytes(0x4f4c4231, 204800));
        put("small.bin", rnd_bytes(0x4f4c4232, 3000));
        put("tiny.bin",  rnd_bytes(0x4f4c4233, 100));
        put("hello.txt", "Hello from the Offload FTP lab.\n");
        put("notes.txt", join("", map { sprintf("line %02d: the quick brown fox jumps over the lazy dog\n", $_) } 1 .. 40));
    ' "$dir" || return 1
    chmod 0755 "$dir" && chmod 0644 "$dir"/* || return 1
}

# lab_vsftpd [SUFFIX] : start vsftpd (standalone, IPv4+IPv6, anonymous
# read-only, active from port 20, passive on) in the server namespace and wait
# until port 21 listens. Restarts it if it already runs.
lab_vsftpd() {
    local sfx=${1-} s t root conf pid
    s=$(lab_ns server "$sfx") || return 1
    t=$(lab_tmp "$sfx") || return 1
    [[ -e /run/netns/$s ]] || {
        lab_log "lab_vsftpd: namespace $s does not exist (run lab_up first)"
        return 1
    }
    lab_vsftpd_stop "$sfx" || return 1
    root=$t/ftp-root
    conf=$t/vsftpd.conf
    mkdir -p "$t/empty" || return 1
    # vsftpd drops to the ftp user and chroots into the root: the whole path
    # must be traversable, and the chroot and root must not be writable by it.
    chmod 0755 "$t" "$t/empty" || return 1
    lab_ftp_files "$root" || return 1
    : >"$t/vsftpd.log"
    cat >"$conf" <<EOF || return 1
# Written by tests/lab/lab.sh for the Offload lab; not for real use.
listen=NO
listen_ipv6=YES
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$root
anon_upload_enable=NO
anon_mkdir_write_enable=NO
anon_other_write_enable=NO
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
dirmessage_enable=NO
use_localtime=NO
ftpd_banner=Offload lab FTP server
xferlog_enable=YES
xferlog_std_format=NO
log_ftp_protocol=YES
vsftpd_log_file=$t/vsftpd.log
data_connection_timeout=30
idle_session_timeout=60
EOF
    chmod 0600 "$conf" || return 1
    # `ip netns exec` execs vsftpd in place, so $! is vsftpd's own pid.
    ip netns exec "$s" vsftpd "$conf" </dev/null >"$t/vsftpd.out" 2>&1 &
    pid=$!
    echo "$pid" >"$t/vsftpd.pid"
    if ! lab_wait_port "$s" 21 10; then
        lab_log "vsftpd did not come up; its output:"
        cat "$t/vsftpd.out" >&2 || true
        return 1
    fi
    lab_log "vsftpd (pid $pid) listening on port 21 in $s, serving $root"
}

# lab_vsftpd_stop [SUFFIX] : stop the vsftpd that lab_vsftpd started, if any.
lab_vsftpd_stop() {
    local t pid
    t=$(lab_tmp "${1-}") || return 1
    [[ -f $t/vsftpd.pid ]] || return 0
    pid=$(<"$t/vsftpd.pid")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -TERM "$pid" 2>/dev/null; then
        for _ in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$t/vsftpd.pid"
}

# --- the kernel as a plain NAT router ---------------------------------------------

# lab_kernel_nat [SUFFIX] : the kernel's MASQUERADE on wan0, IPv4 and IPv6, and
# no helper: plain NAT, which includes the translation of ICMP errors that
# quote a NATed packet. Idempotent.
lab_kernel_nat() {
    local r ipt
    r=$(lab_ns router "${1-}") || return 1
    for ipt in iptables ip6tables; do
        _lab_rule "$r" "$ipt" -t nat POSTROUTING -o wan0 -j MASQUERADE || return 1
    done
}

# --- vsftpd that also takes anonymous uploads ------------------------------------

# lab_vsftpd_uploads [SUFFIX] : like lab_vsftpd (same files, same settings), but
# anonymous users may also upload new files into incoming/ under the served
# root, a directory only the ftp user can write. They cannot overwrite, delete,
# rename or create directories; uploaded files keep vsftpd's anonymous umask
# (0600, owner ftp), so they cannot be downloaded again. Prints nothing;
# lab_ftp_root SUFFIX + /incoming is where uploads land.
lab_vsftpd_uploads() {
    local sfx=${1-} s t conf pid
    s=$(lab_ns server "$sfx") && t=$(lab_tmp "$sfx") || return 1
    lab_vsftpd "$sfx" || return 1
    lab_vsftpd_stop "$sfx" || return 1
    conf=$t/vsftpd.conf
    # The chroot (the served root) stays read-only for the ftp user; only incoming/ is its own.
    install -d -m 0755 -o ftp -g ftp "$t/ftp-root/incoming" || return 1
    sed -i -e 's/^write_enable=NO$/write_enable=YES/' \
        -e 's/^anon_upload_enable=NO$/anon_upload_enable=YES/' "$conf" || return 1
    if ! grep -qx 'write_enable=YES' "$conf" || ! grep -qx 'anon_upload_enable=YES' "$conf"; then
        lab_log "lab_vsftpd_uploads: could not enable uploads in $conf"
        return 1
    fi
    ip netns exec "$s" vsftpd "$conf" </dev/null >"$t/vsftpd.out" 2>&1 &
    pid=$!
    echo "$pid" >"$t/vsftpd.pid"
    if ! lab_wait_port "$s" 21 10; then
        lab_log "vsftpd (uploads) did not come up; its output:"
        cat "$t/vsftpd.out" >&2 || true
        return 1
    fi
    lab_log "vsftpd (pid $pid) listening on port 21 in $s, uploads into $t/ftp-root/incoming"
}

# lab_wait_capture NS COUNT: waits until COUNT packet sockets (a capture's, one per interface) are open in NS,
# then a little longer. dumpcap reports its file before it is reading on a busy machine; packets sent before its
# sockets are bound never reach the capture.
lab_wait_capture() {
    local ns=$1 count=$2 deadline=$((SECONDS + 10))
    until (($(ip netns exec "$ns" awk 'NR > 1' /proc/net/packet | wc -l) >= count)); do
        ((SECONDS < deadline)) || { lab_log "capture sockets not open in $ns after 10s"; return 1; }
        sleep 0.05
    done
    sleep 0.5
}

# --- command line ----------------------------------------------------------------

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    case ${1-} in
    up) lab_up "${2-}" ;;
    down) lab_down "${2-}" ;;
    kernel-ftp-nat) lab_kernel_ftp_nat "${2-}" ;;
    kernel-nat) lab_kernel_nat "${2-}" ;;
    vsftpd) lab_vsftpd "${2-}" ;;
    *)
        echo "usage: $0 up|down|kernel-ftp-nat|kernel-nat|vsftpd [suffix]" >&2
        exit 2
        ;;
    esac
fi

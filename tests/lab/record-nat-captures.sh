#!/usr/bin/env bash
# Records the kernel reference captures for plain NAT (no helper) into
# tests/data/nat/<scenario>.pcapng (see tests/data/nat/README.md): ICMP echo,
# UDP (with a zero-checksum datagram each way on IPv4) and the ICMP errors
# that quote a NATed packet (port unreachable, TCP rejected, packet too big).
#
# Each scenario gets a fresh lab (lab.sh): the kernel's MASQUERADE on wan0 in
# the router and nothing else, small perl peers (or ping) in the client and
# the server. dumpcap runs in the router on lan0 and wan0 at once, in the
# style CAPTURE_STYLE says (user, the default: offloads on, the file as
# dumpcap wrote it; reference: offloads off, sorted; see tests/lab/capture.sh).
#
# Usage: tests/lab/record-nat-captures.sh [scenario...]   (default: all)
# Environment: OUT_DIR (default tests/data/nat), LAB_SUFFIX (default -nat),
# CAPTURE_STYLE (user or reference; tests/data/nat takes reference only).
# Needs root and the packages in tests/lab/packages.txt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"

out_dir=${OUT_DIR:-$repo/tests/data/nat}
sfx=${LAB_SUFFIX--nat}
all_scenarios=(ipv4-ping ipv6-ping ipv4-udp ipv6-udp
    ipv4-udp-unreachable ipv6-udp-unreachable ipv4-tcp-reject ipv6-tcp-reject ipv6-too-big)

# Fixed ports, so that every recording shows the same tuples (MASQUERADE keeps
# a source port when nothing clashes, as in the lab).
port_echo=5300      # server: UDP echo
port_closed=5301    # server: nothing listens (port unreachable)
port_reject=81      # server: TCP rejected by its own iptables
port_big=5302       # server: UDP sink that answers with a Packet Too Big
cport_udp=40000     # client source ports, one per kind of scenario
cport_unreach=40001
cport_reject=40002
cport_big=40003
big_size=1400       # UDP payload of the too-big datagram (1448-byte IPv6 packet)
big_mtu=1280        # MTU the server announces in its Packet Too Big

work=
dumpcap_pid=
server_pid=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $dumpcap_pid ]]; then
        kill -TERM "$dumpcap_pid" 2>/dev/null || true
        wait "$dumpcap_pid" 2>/dev/null || true
    fi
    if [[ -n $server_pid ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    lab_down "$sfx" || true
    [[ -n $work ]] && rm -rf -- "$work"
    if ((rc != 0)); then
        echo "record-nat-captures: FAILED (exit $rc)" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
    echo "record-nat-captures: $*" >&2
    exit 1
}

for tool in ip ethtool iptables ip6tables ping dumpcap tshark reordercap capinfos perl ss taskset; do
    command -v "$tool" >/dev/null || die "missing tool '$tool' (install tests/lab/packages.txt)"
done
((EUID == 0)) || die "must run as root (network namespaces)"

# Everything the lab runs inherits this CPU, and so does the softirq work its
# packets cause: the router handles packets one at a time, in the order the
# capture shows (see record-ftp-captures.sh).
all_cpus=$(taskset -cp $$ | sed 's/.*: *//')
taskset -cp 0 $$ >/dev/null

work=$(mktemp -d /tmp/ol-record-nat.XXXXXX)
mkdir -p "$out_dir"

# --- the peers ---------------------------------------------------------------------
#
# One small perl program (core modules only) with one mode per role. Each
# client mode checks that the far end's answer, or the translated ICMP error,
# reached the very socket that sent, and fails otherwise; each mode gives up
# after a few seconds.
cat >"$work/peer.pl" <<'PERL'
use strict;
use warnings;
use Socket qw(:DEFAULT inet_pton pack_sockaddr_in6 IPPROTO_TCP IPPROTO_UDP
    IPPROTO_IPV6 IPPROTO_ICMPV6 IPV6_V6ONLY IPV6_MTU SOL_SOCKET SO_REUSEADDR);
use Errno qw(ECONNREFUSED EMSGSIZE);

use constant {
    SO_NO_CHECK => 11,    # Linux: send UDP over IPv4 with checksum 0
    AF_PACKET   => 17,
    ETH_P_IPV6  => 0x86dd,
};

my $mode = shift @ARGV // die "usage: peer.pl MODE ARGS...\n";
$SIG{ALRM} = sub { die "peer $mode: timed out\n" };
alarm(20);

sub fam { $_[0] =~ /:/ ? AF_INET6 : AF_INET }

sub addr {
    my ($ip, $port) = @_;
    return fam($ip) == AF_INET6
        ? pack_sockaddr_in6($port, inet_pton(AF_INET6, $ip))
        : pack_sockaddr_in($port, inet_pton(AF_INET, $ip));
}

# A socket bound to a fixed address and port (IPv6 sockets IPv6 only).
sub bound {
    my ($type, $proto, $ip, $port) = @_;
    socket(my $s, fam($ip), $type, $proto) or die "socket: $!\n";
    setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) or die "SO_REUSEADDR: $!\n";
    if (fam($ip) == AF_INET6) {
        setsockopt($s, IPPROTO_IPV6, IPV6_V6ONLY, 1) or die "IPV6_V6ONLY: $!\n";
    }
    bind($s, addr($ip, $port)) or die "bind $ip port $port: $!\n";
    return $s;
}

# Waits up to $secs for the socket to become readable (data or a pending
# error) and reads one datagram: (data) or (undef, errno).
sub recv_wait {
    my ($s, $secs) = @_;
    my $rin = '';
    vec($rin, fileno($s), 1) = 1;
    my $n = select(my $rout = $rin, undef, undef, $secs);
    die "peer $mode: nothing arrived within ${secs}s\n" if $n <= 0;
    my $buf = '';
    my $from = recv($s, $buf, 65535, 0);
    return defined $from ? ($buf) : (undef, $! + 0);
}

if ($mode eq 'udp-echo') {
    # udp-echo IP PORT COUNT : answer COUNT datagrams with "reply to " . data;
    # a datagram that asks for "no checksum" is answered with checksum 0 (IPv4).
    my ($ip, $port, $count) = @ARGV;
    my $s = bound(SOCK_DGRAM, IPPROTO_UDP, $ip, $port);
    for (1 .. $count) {
        my $buf = '';
        my $from = recv($s, $buf, 65535, 0) // die "recv: $!\n";
        if ($buf =~ /no checksum/) {
            setsockopt($s, SOL_SOCKET, SO_NO_CHECK, 1) or die "SO_NO_CHECK: $!\n";
        }
        send($s, "reply to $buf", 0, $from) // die "send: $!\n";
    }
}
elsif ($mode eq 'udp-client') {
    # udp-client IP PORT SERVER SPORT COUNT ZERO : COUNT request/reply rounds,
    # then, if ZERO, one more sent with checksum 0 (answered the same way).
    my ($ip, $port, $srv, $sport, $count, $zero) = @ARGV;
    my $s = bound(SOCK_DGRAM, IPPROTO_UDP, $ip, $port);
    connect($s, addr($srv, $sport)) or die "connect: $!\n";
    my @msgs = map { "datagram $_" } 1 .. $count;
    push @msgs, 'datagram ' . ($count + 1) . ', no checksum' if $zero;
    for my $msg (@msgs) {
        if ($msg =~ /no checksum/) {
            setsockopt($s, SOL_SOCKET, SO_NO_CHECK, 1) or die "SO_NO_CHECK: $!\n";
        }
        send($s, $msg, 0) // die "send: $!\n";
        my ($got, $err) = recv_wait($s, 3);
        defined $got or die "recv: error $err\n";
        $got eq "reply to $msg" or die "unexpected reply '$got'\n";
    }
}
elsif ($mode eq 'udp-refused') {
    # udp-refused IP PORT SERVER SPORT COUNT : COUNT datagrams to a closed
    # port; each must come back as ECONNREFUSED on this connected socket,
    # which the kernel reports only for an ICMP error quoting our own tuple.
    my ($ip, $port, $srv, $sport, $count) = @ARGV;
    my $s = bound(SOCK_DGRAM, IPPROTO_UDP, $ip, $port);
    connect($s, addr($srv, $sport)) or die "connect: $!\n";
    for my $i (1 .. $count) {
        send($s, "datagram $i to a closed port", 0) // die "send: $!\n";
        my ($got, $err) = recv_wait($s, 3);
        die "unexpected datagram\n" if defined $got;
        $err == ECONNREFUSED or die "expected ECONNREFUSED, got error $err\n";
    }
}
elsif ($mode eq 'tcp-refused') {
    # tcp-refused IP PORT SERVER SPORT : one connect that the ICMP error must
    # refuse (a timeout would mean the error never reached us).
    my ($ip, $port, $srv, $sport) = @ARGV;
    my $s = bound(SOCK_STREAM, IPPROTO_TCP, $ip, $port);
    alarm(5);
    if (connect($s, addr($srv, $sport))) { die "connect succeeded\n" }
    $! == ECONNREFUSED or die "expected ECONNREFUSED, got: $!\n";
}
elsif ($mode eq 'too-big-server') {
    # too-big-server IP PORT MTU : receive one UDP datagram to PORT and answer
    # its sender with an ICMPv6 Packet Too Big (MTU) quoting the datagram as
    # received, cut so that the error is MTU bytes long, as a router would.
    my ($ip, $port, $mtu) = @ARGV;
    my $want = inet_pton(AF_INET6, $ip);
    socket(my $pk, AF_PACKET, SOCK_RAW, unpack('S', pack('n', ETH_P_IPV6))) or die "packet socket: $!\n";
    my $u = bound(SOCK_DGRAM, IPPROTO_UDP, $ip, $port);
    my $pkt;
    while (1) {
        my $frame = '';
        recv($pk, $frame, 65535, 0) // die "recv: $!\n";
        next if length($frame) < 14 + 48;
        my $v6 = substr($frame, 14);
        next unless ord(substr($v6, 6, 1)) == IPPROTO_UDP;
        next unless substr($v6, 24, 16) eq $want;
        next unless unpack('n', substr($v6, 42, 2)) == $port;
        $pkt = substr($v6, 0, 40 + unpack('n', substr($v6, 4, 2)));
        last;
    }
    my $src = substr($pkt, 8, 16);
    socket(my $raw, AF_INET6, SOCK_RAW, IPPROTO_ICMPV6) or die "raw socket: $!\n";
    # Type 2, code 0, checksum (the kernel fills it in), MTU, then the quote.
    my $msg = pack('CCnN', 2, 0, 0, $mtu) . substr($pkt, 0, $mtu - 40 - 8);
    send($raw, $msg, 0, pack_sockaddr_in6(0, $src)) // die "send: $!\n";
    my $buf = '';
    recv($u, $buf, 65535, 0) // die "recv: $!\n";
}
elsif ($mode eq 'too-big-client') {
    # too-big-client IP PORT SERVER SPORT SIZE MTU : one SIZE-byte datagram;
    # the translated Packet Too Big must reach this connected socket
    # (EMSGSIZE) and lower its path MTU to MTU.
    my ($ip, $port, $srv, $sport, $size, $mtu) = @ARGV;
    my $s = bound(SOCK_DGRAM, IPPROTO_UDP, $ip, $port);
    connect($s, addr($srv, $sport)) or die "connect: $!\n";
    my $data = substr(join('', map { sprintf('%04d ', $_) } 0 .. $size), 0, $size);
    send($s, $data, 0) // die "send: $!\n";
    my ($got, $err) = recv_wait($s, 3);
    die "unexpected datagram\n" if defined $got;
    $err == EMSGSIZE or die "expected EMSGSIZE, got error $err\n";
    my $v = getsockopt($s, IPPROTO_IPV6, IPV6_MTU) // die "IPV6_MTU: $!\n";
    my $pmtu = unpack('i', $v);
    $pmtu == $mtu or die "path MTU is $pmtu, expected $mtu\n";
}
else {
    die "peer.pl: unknown mode '$mode'\n";
}
PERL

# peer NS MODE ARGS... : run the perl peer in a namespace, in the foreground.
peer() {
    local ns=$1
    shift
    lab_exec "$ns" perl "$work/peer.pl" "$@"
}

# start_server NS PORT MODE ARGS... : run the perl peer in the background and
# wait until it listens on UDP PORT.
start_server() {
    local ns=$1 port=$2
    shift 2
    : >"$work/server.log"
    # `ip netns exec` execs perl in place: $! is the server's pid.
    ip netns exec "$ns" perl "$work/peer.pl" "$@" </dev/null >"$work/server.log" 2>&1 &
    server_pid=$!
    lab_wait_port "$ns" "$port" 10 udp || {
        cat "$work/server.log" >&2
        die "server did not come up"
    }
}

# wait_server : the background server must finish on its own, successfully.
wait_server() {
    local rc=0
    wait "$server_pid" || rc=$?
    server_pid=
    ((rc == 0)) || {
        cat "$work/server.log" >&2
        die "server failed (exit $rc)"
    }
}

# shellcheck source=tests/lab/capture.sh
. "$here/capture.sh"

# settle : let the last packets reach dumpcap before it is stopped. The kernel
# hands captured packets to libpcap in ring blocks, a partly filled block only
# after a timeout, and dumpcap stopped by SIGINT does not wait for it: without
# this pause the last packets of an exchange can be missing from the file.
settle() { sleep 1; }

# Direction on a router interface, read from the source MAC.
in_lan="eth.src == $LAB_MAC_CLIENT"
out_lan="eth.src == $LAB_MAC_LAN0"
in_wan="eth.src == $LAB_MAC_SERVER"
out_wan="eth.src == $LAB_MAC_WAN0"
# Neighbour resolution and the other link-control frames.
link_frames="arp || (icmpv6.type >= 133 && icmpv6.type <= 137) || icmpv6.type == 143"

# --- scenarios -----------------------------------------------------------------------

# run_scenario NAME : one fresh lab, one capture, one verified exchange.
run_scenario() {
    local name=$1 fam ip icmp cli srv rtr
    case $name in
    ipv4-*) fam=4 ip=ip icmp=icmp cli=$LAB_LAN4_CLIENT srv=$LAB_WAN4_SERVER rtr=$LAB_WAN4_ROUTER ;;
    ipv6-*) fam=6 ip=ipv6 icmp=icmpv6 cli=$LAB_LAN6_CLIENT srv=$LAB_WAN6_SERVER rtr=$LAB_WAN6_ROUTER ;;
    esac
    case $name in
    ipv4-ping | ipv6-ping | ipv4-udp | ipv6-udp | ipv4-udp-unreachable | ipv6-udp-unreachable | \
        ipv4-tcp-reject | ipv6-tcp-reject | ipv6-too-big) ;;
    *) die "unknown scenario '$name' (known: ${all_scenarios[*]})" ;;
    esac

    echo "== $name" >&2
    lab_up "$sfx"
    capture_offloads
    lab_kernel_nat "$sfx"

    local c s raw capture
    c=$(lab_ns client "$sfx")
    s=$(lab_ns server "$sfx")
    raw=$work/$name.raw.pcapng

    # The server answers every error at once: no ICMP rate limit.
    lab_exec "$s" sysctl -q -w net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0

    # Per scenario: the exchange, then what the capture must show (and how
    # many IP frames it holds in all besides neighbour resolution).
    local ip_frames
    case $name in
    *-ping)
        start_capture "$raw"
        lab_exec "$c" ping -"$fam" -n -q -c 3 -i 0.2 -W 2 "$srv" >/dev/null || die "$name: ping failed"
        settle
        stop_capture "$raw"
        local req=8 rep=0
        [[ $fam == 6 ]] && req=128 rep=129
        ip_frames=12
        ;;
    ipv4-udp | ipv6-udp)
        local n=3 zero=0
        [[ $fam == 4 ]] && zero=1
        start_server "$s" "$port_echo" udp-echo "$srv" "$port_echo" $((n + zero))
        start_capture "$raw"
        peer "$c" udp-client "$cli" "$cport_udp" "$srv" "$port_echo" "$n" "$zero" ||
            die "$name: UDP client failed"
        wait_server
        settle
        stop_capture "$raw"
        ip_frames=$((4 * (n + zero)))
        ;;
    *-udp-unreachable)
        start_capture "$raw"
        peer "$c" udp-refused "$cli" "$cport_unreach" "$srv" "$port_closed" 2 ||
            die "$name: the port unreachable errors did not reach the client"
        settle
        stop_capture "$raw"
        ip_frames=8
        ;;
    *-tcp-reject)
        local ipt=iptables with=icmp-port-unreachable
        [[ $fam == 6 ]] && ipt=ip6tables with=icmp6-port-unreachable
        lab_exec "$s" "$ipt" -A INPUT -p tcp --dport "$port_reject" -j REJECT --reject-with "$with"
        start_capture "$raw"
        peer "$c" tcp-refused "$cli" "$cport_reject" "$srv" "$port_reject" ||
            die "$name: the connection was not refused by the translated error"
        settle
        stop_capture "$raw"
        # Two SYNs, two errors: the first error comes back (all on one CPU)
        # while connect() still holds the socket's lock, and TCP then only
        # notes it as a soft error; the SYN retransmitted 1 s later (initial
        # RTO) meets the second error in timer context, which aborts connect().
        ip_frames=8
        ;;
    ipv6-too-big)
        start_server "$s" "$port_big" too-big-server "$srv" "$port_big" "$big_mtu"
        start_capture "$raw"
        peer "$c" too-big-client "$cli" "$cport_big" "$srv" "$port_big" "$big_size" "$big_mtu" ||
            die "$name: the Packet Too Big did not reach the client"
        wait_server
        settle
        stop_capture "$raw"
        ip_frames=4
        ;;
    esac

    finish_capture "$raw" "$name"

    # Client side (lan0) and server side (wan0) of one packet: the NAT maps
    # cli:port <-> rtr:port. "#1"/"#2" pick the outer or the quoted header.
    local link
    if [[ $fam == 4 ]]; then link="arp"; else link="icmpv6.type == 135 || icmpv6.type == 136"; fi
    expect "$capture" 4 "$link"
    expect "$capture" 0 "($link_frames) && !($link)"
    expect "$capture" "$ip_frames" "!($link_frames)"

    local c2s_lan="$ip.src#1 == $cli && $ip.dst#1 == $srv"
    local c2s_wan="$ip.src#1 == $rtr && $ip.dst#1 == $srv"
    local s2c_wan="$ip.src#1 == $srv && $ip.dst#1 == $rtr"
    local s2c_lan="$ip.src#1 == $srv && $ip.dst#1 == $cli"
    case $name in
    *-ping)
        expect "$capture" 3 "$in_lan && $icmp.type == $req && $c2s_lan"
        expect "$capture" 3 "$out_wan && $icmp.type == $req && $c2s_wan"
        expect "$capture" 3 "$in_wan && $icmp.type == $rep && $s2c_wan"
        expect "$capture" 3 "$out_lan && $icmp.type == $rep && $s2c_lan"
        ;;
    ipv4-udp | ipv6-udp)
        local k=$((n + zero))
        local fwd="udp.srcport == $cport_udp && udp.dstport == $port_echo"
        local back="udp.srcport == $port_echo && udp.dstport == $cport_udp"
        expect "$capture" "$k" "$in_lan && $c2s_lan && $fwd"
        expect "$capture" "$k" "$out_wan && $c2s_wan && $fwd"
        expect "$capture" "$k" "$in_wan && $s2c_wan && $back"
        expect "$capture" "$k" "$out_lan && $s2c_lan && $back"
        # The zero checksum stays zero after NAT, both ways.
        local z
        for z in "$in_lan" "$out_wan" "$in_wan" "$out_lan"; do
            expect "$capture" "$zero" "$z && udp.checksum == 0"
        done
        ;;
    *-udp-unreachable | *-tcp-reject | ipv6-too-big)
        local l4 sport dport err k
        case $name in
        *-udp-unreachable) l4=udp sport=$cport_unreach dport=$port_closed k=2 ;;
        *-tcp-reject) l4=tcp sport=$cport_reject dport=$port_reject k=2 ;;
        ipv6-too-big) l4=udp sport=$cport_big dport=$port_big k=1 ;;
        esac
        case $name in
        ipv4-*) err="icmp.type == 3 && icmp.code == 3" ;;
        ipv6-too-big) err="icmpv6.type == 2 && icmpv6.code == 0 && icmpv6.mtu == $big_mtu" ;;
        ipv6-*) err="icmpv6.type == 1 && icmpv6.code == 4" ;;
        esac
        local fwd="$l4.srcport == $sport && $l4.dstport == $dport && !$icmp"
        # The error quotes the packet as the server saw it (from rtr:sport);
        # leaving lan0 it must quote it as the client sent it (from cli:sport).
        local quote="$l4.srcport == $sport && $l4.dstport == $dport"
        expect "$capture" "$k" "$in_lan && $c2s_lan && $fwd"
        expect "$capture" "$k" "$out_wan && $c2s_wan && $fwd"
        expect "$capture" "$k" "$in_wan && $s2c_wan && $err && $ip.src#2 == $rtr && $ip.dst#2 == $srv && $quote"
        expect "$capture" "$k" "$out_lan && $s2c_lan && $err && $ip.src#2 == $cli && $ip.dst#2 == $srv && $quote"
        ;;
    esac

    keep_capture "$capture" "$name"
}

record_scenarios "$@"

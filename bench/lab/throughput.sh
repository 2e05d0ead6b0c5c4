#!/usr/bin/env bash
# End-to-end throughput through the lab router, side by side in one run (see docs/benchmarks.md):
#   kernel   the kernel's own forwarding and MASQUERADE, no queue (the ceiling)
#   nfq-c    the same, plus every forwarded packet queued to a minimal C libnetfilter_queue consumer that only
#            accepts (one recv and one verdict per packet: the floor a userspace daemon should beat)
#   nfq-gso  the C consumer with the queue's GSO flag
#   offloadd our daemon tracking and NAT'ing the flow (the kernel's conntrack and NAT out of the way)
#   kernel6  routed IPv6 (no NAT) through the kernel's forwarding and conntrack: a dual-stack router's other half
#   offloadd6 the same routed IPv6 flow tracked by offloadd (NAT44 configured, IPv6 routed): both directions queued
#   offloadd-sharded offloadd with one engine shard per CPU (steering.shards: auto, queues 0-15 and 16-31)
# For each: iperf3 TCP for DURATION seconds (Gbit/s), and 64-byte UDP datagrams (packets/s received).
#
# Usage: sudo bench/lab/throughput.sh [mode...]   (default: all six)
# Environment: DURATION (default 5), OFFLOADS=on to leave the veth offloads on (the lab turns them off),
# STREAMS=N (IPv4 modes) runs N iperf3 clients at once from N client addresses (the kernel spreads a router's
# flows over its queues by address, as it would many hosts'), and sums what they carried.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/lab/lab.sh
. "$repo/tests/lab/lab.sh"

sfx=${LAB_SUFFIX:--bench}
duration=${DURATION:-5}
modes=("$@")
((${#modes[@]})) || modes=(kernel nfq-c nfq-gso offloadd kernel6 offloadd6)
work=$(mktemp -d)
consumer_pid=
results=()

cleanup() {
    [[ -n $consumer_pid ]] && kill -TERM "$consumer_pid" 2>/dev/null && wait "$consumer_pid" 2>/dev/null
    lab_down "$sfx" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

((EUID == 0)) || { echo "throughput: run as root (namespaces)" >&2; exit 1; }
for tool in iperf3 gcc jq; do
    command -v $tool >/dev/null || { echo "throughput: install $tool (apt-get install iperf3 gcc jq libnetfilter-queue-dev)" >&2; exit 1; }
done

gcc -O2 -Wall -o "$work/nfq-accept" "$here/nfq-accept.c" -lnetfilter_queue
dotnet build "$repo/daemon/Offload.Daemon" -c Release --nologo -v quiet >/dev/null
offloadd="$repo/daemon/Offload.Daemon/bin/Release/net10.0/offloadd.dll"
offloadctl="$repo/daemon/Offload.Ctl/bin/Release/net10.0/offloadctl.dll"
dotnet build "$repo/daemon/Offload.Ctl" -c Release --nologo -v quiet >/dev/null

# The dual-stack router of docs/steering.md: NAT44, routed IPv6 (the server routes the LAN's prefix back).
cat >"$work/dualstack.yaml" <<'EOF'
interfaces: [{name: lan0}, {name: wan0}]
nat: [{type: masquerade, family: ipv4, out: wan0}]
helpers: [{name: ftp, ports: [21]}]
steering: {from: [lan0], to: [wan0], queue-pre: 0, queue-post: 1, nat-ports: 61000-65535}
EOF
# The lab's router with one engine shard per CPU: room for 16 queues each way.
sed 's/^  queue-post: 1$/  queue-post: 16\n  shards: auto/' "$repo/tests/lab/offloadd.yaml" >"$work/sharded.yaml"
streams=${STREAMS:-1}

# STREAMS clients at once, client i from 192.0.2.(10+i) to server port BASE+i; prints the sum of what JQ says of each.
run_parallel() { # base_port jq_expression iperf3_options...
    local base=$1 expr=$2 c s i
    shift 2
    c=$(lab_ns client "$sfx")
    s=$(lab_ns server "$sfx")
    for ((i = 0; i < streams; i++)); do
        ip netns exec "$s" iperf3 -s -D -1 -p $((base + i)) >/dev/null
        lab_wait_port "$s" $((base + i)) 10
    done
    for ((i = 0; i < streams; i++)); do
        timeout $((duration + 20)) ip netns exec "$c" iperf3 -c "$server_ip" -B "192.0.2.$((10 + i))" -p $((base + i)) \
            -t "$duration" --connect-timeout 5000 -J "$@" >"$work/stream-$base-$i.json" 2>/dev/null &
    done
    wait
    for ((i = 0; i < streams; i++)); do
        jq "$expr" "$work/stream-$base-$i.json" 2>/dev/null || echo 0
    done | awk '{ s += $1 } END { print s + 0 }'
}

run_iperf() { # prints "tcp_gbps udp_pps"
    local c s
    c=$(lab_ns client "$sfx")
    s=$(lab_ns server "$sfx")
    if ((streams > 1)) && [[ $server_ip != *:* ]]; then
        local tcp udp
        tcp=$(run_parallel 5301 '.end.sum_received.bits_per_second / 1e9')
        udp=$(run_parallel 5401 '(.end.sum.packets - .end.sum.lost_packets) / .end.sum.seconds' -u -l 64 -b 0)
        pkill -f "iperf3 -s -D -1 -p 5[34]" || true
        printf '%.2f %.0f\n' "$tcp" "$udp"
        return
    fi

    ip netns exec "$s" iperf3 -s -D -1 -p 5201 >/dev/null
    lab_wait_port "$s" 5201 10
    local tcp
    # A flooded queue may drop iperf3's own control traffic: bound every run in time.
    tcp=$(timeout $((duration + 20)) ip netns exec "$c" iperf3 -c "$server_ip" -p 5201 -t "$duration" --connect-timeout 5000 -J |
        jq '.end.sum_received.bits_per_second / 1e9' || echo 0)
    ip netns exec "$s" iperf3 -s -D -1 -p 5202 >/dev/null
    lab_wait_port "$s" 5202 10
    local udp
    udp=$(timeout $((duration + 20)) ip netns exec "$c" iperf3 -c "$server_ip" -p 5202 -u -l 64 -b 0 -t "$duration" --connect-timeout 5000 -J |
        jq '(.end.sum.packets - .end.sum.lost_packets) / .end.sum.seconds' || echo 0)
    pkill -f "iperf3 -s -D -1 -p 520" || true
    printf '%.2f %.0f\n' "$tcp" "$udp"
}

setup_lab() {
    lab_down "$sfx" >/dev/null 2>&1 || true
    lab_up "$sfx" >/dev/null
    for ((i = 0; i < streams; i++)); do
        ip -n "$(lab_ns client "$sfx")" addr add "192.0.2.$((10 + i))/24" dev eth0
    done
    if [[ ${OFFLOADS:-} == on ]]; then
        for ns in client router server; do
            for dev in $(ip -n "$(lab_ns $ns "$sfx")" -o link show type veth | awk -F': ' '{print $2}' | cut -d@ -f1); do
                ip netns exec "$(lab_ns $ns "$sfx")" ethtool -K "$dev" tx on tso on gso on gro on >/dev/null 2>&1 || true
            done
        done
    fi
}

start_offloadd() { # config
    ip netns exec "$r" dotnet "$offloadd" --config "$1" --apply-rules \
        --socket "$work/offloadd.sock" >"$work/offloadd.log" 2>&1 &
    consumer_pid=$!
    for _ in $(seq 50); do [[ -S $work/offloadd.sock ]] && break; sleep 0.2; done
}

for mode in "${modes[@]}"; do
    setup_lab
    r=$(lab_ns router "$sfx")
    extra=""
    server_ip=198.51.100.2
    if [[ $mode == *6 ]]; then
        server_ip=2001:db8:2::2
        ip -n "$(lab_ns server "$sfx")" -6 route add 2001:db8:1::/64 via 2001:db8:2::1
    fi
    case $mode in
    kernel)
        lab_kernel_nat "$sfx" >/dev/null
        ;;
    nfq-c | nfq-gso)
        lab_kernel_nat "$sfx" >/dev/null
        ip netns exec "$r" iptables -t mangle -A FORWARD -j NFQUEUE --queue-num 7
        flag=$([[ $mode == nfq-gso ]] && echo gso || true)
        ip netns exec "$r" "$work/nfq-accept" 7 $flag 2>"$work/consumer.log" &
        consumer_pid=$!
        sleep 0.5
        ;;
    offloadd)
        start_offloadd "$repo/tests/lab/offloadd.yaml"
        ;;
    kernel6)
        # The kernel's conntrack tracks the routed flow, as a stateful router's would.
        ip netns exec "$r" ip6tables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED,NEW -j ACCEPT
        ;;
    offloadd6)
        start_offloadd "$work/dualstack.yaml"
        ;;
    offloadd-sharded)
        start_offloadd "$work/sharded.yaml"
        ;;
    *)
        echo "unknown mode $mode" >&2
        exit 2
        ;;
    esac

    read -r tcp udp < <(run_iperf)
    if [[ $mode == offloadd* ]]; then
        stats=$(dotnet "$offloadctl" stats --socket "$work/offloadd.sock")
        packets=$(grep -oE '^queue [0-9]+ .*packets [0-9]+' <<<"$stats" | grep -oE 'packets [0-9]+' | awk '{s+=$2} END {print s}')
        batches=$(grep -oE 'batches [0-9]+' <<<"$stats" | awk '{s+=$2} END {print s}')
        sends=$(grep -oE 'sends [0-9]+' <<<"$stats" | awk '{s+=$2} END {print s}')
        extra=$(awk -v p="$packets" -v b="$batches" -v s="$sends" 'BEGIN { if (p > 0) printf "%.3f syscalls/packet (%d packets, %d receive + %d send calls)", (b + s) / p, p, b, s }')
    elif [[ $mode == nfq-* ]]; then
        extra="2 syscalls/packet (one recv, one verdict)"
    fi

    if [[ -n $consumer_pid ]]; then
        kill -TERM "$consumer_pid" 2>/dev/null || true
        wait "$consumer_pid" 2>/dev/null || true
        consumer_pid=
    fi

    results+=("$(printf '%-9s %8s Gbit/s %10s pkt/s  %s' "$mode" "$tcp" "$udp" "$extra")")
    echo "${results[-1]}"
done

echo
echo "== throughput through the lab router (${duration}s each, $(nproc) CPUs, offloads ${OFFLOADS:-off}, $streams client(s) at once)"
printf '%s\n' "${results[@]}"

#!/usr/bin/env bash
# Records port-forward.pcapng, the capture RpcCaptureTests replays: a portmapper on the LAN host (rpcbind and
# tests/lab/rpc-peer.py's service) behind the kernel's port forward of port 111 (DNAT, TCP and UDP) and MASQUERADE,
# which has no RPC helper. From the WAN: rpcinfo -T tcp and -T udp (GETADDR v4; rpcbind answers with the LAN host's
# address, so rpcinfo fails: "Network is unreachable"), and a version 2 GETPORT (the answer is the service's port,
# whose connection the router refuses). Replayed through the engine with the rpc helper, the answers name the router
# and the service connection leaves towards the LAN host.
#
# Usage: sudo tests/data/rpc/record-capture.sh [OUT]   (default: port-forward.pcapng beside this script)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
# shellcheck source=tests/lab/lab.sh
. "$repo/tests/lab/lab.sh"

out=${1:-$here/port-forward.pcapng}
sfx=${LAB_SUFFIX:--rpr}
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    lab_down "$sfx" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
((EUID == 0)) || { echo "needs root: sudo $0" >&2; exit 1; }

prog=536871065
lab_up "$sfx" >/dev/null
lab_kernel_nat "$sfx"
c=$(lab_ns client "$sfx")
r=$(lab_ns router "$sfx")
s=$(lab_ns server "$sfx")
for p in tcp udp; do
    ip netns exec "$r" iptables -t nat -A PREROUTING -i wan0 -d "$LAB_WAN4_ROUTER" -p "$p" --dport 111 \
        -j DNAT --to-destination "$LAB_LAN4_CLIENT:111"
done
ip netns exec "$c" unshare -m sh -c 'mount -t tmpfs offload-rpc /run && exec rpcbind -f' </dev/null >"$work/rpcbind.log" 2>&1 &
pids+=($!)
lab_wait_port "$c" 111 >/dev/null
ip netns exec "$c" python3 "$repo/tests/lab/rpc-peer.py" serve "$prog" 1 4711 </dev/null >"$work/peer.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do grep -q '^registered' "$work/peer.log" && break; sleep 0.05; done

ip netns exec "$r" dumpcap -q -p -s 262144 -i lan0 -i wan0 -w "$work/raw.pcapng" </dev/null >"$work/dumpcap.log" 2>&1 &
dumpcap_pid=$!
pids+=("$dumpcap_pid")
lab_wait_capture "$r" 2
for t in tcp udp; do
    if timeout 20 ip netns exec "$s" rpcinfo -T "$t" "$LAB_WAN4_ROUTER" "$prog" 1; then
        echo "rpcinfo -T $t worked through the kernel alone: nothing to show" >&2
        exit 1
    fi
done
if timeout 20 ip netns exec "$s" python3 "$repo/tests/lab/rpc-peer.py" getport "$LAB_WAN4_ROUTER" "$prog" 1 tcp; then
    echo "GETPORT and the service worked through the kernel alone: nothing to show" >&2
    exit 1
fi
sleep 0.5
kill -INT "$dumpcap_pid"
wait "$dumpcap_pid" || true
# dumpcap writes each interface's packets in batches: put them in time order, as the replay reads them.
reordercap "$work/raw.pcapng" "$out" >/dev/null
echo "recorded $(capinfos -c -M "$out" | awk '/Number of packets/ { print $NF }') packets into $out"

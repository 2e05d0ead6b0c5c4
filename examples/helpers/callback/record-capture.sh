#!/usr/bin/env bash
# Records callback.pcapng, the capture docs/helpers.md replays: the example protocol through the kernel's own
# MASQUERADE, which has no helper for it. The client asks for a call-back on port 40000 (IPv4); the server's call
# reaches the router, which knows nothing of it, and is refused. Replayed through the engine with CallbackHelper,
# the same call leaves towards the client.
#
# Usage: sudo examples/helpers/callback/record-capture.sh [OUT]   (default: callback.pcapng beside this script)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
# shellcheck source=tests/lab/lab.sh
. "$repo/tests/lab/lab.sh"

out=${1:-$here/callback.pcapng}
sfx=${LAB_SUFFIX:--cbr}
work=$(mktemp -d)
server_pid=
dumpcap_pid=
cleanup() {
    for pid in $dumpcap_pid $server_pid; do kill "$pid" 2>/dev/null || true; done
    lab_down "$sfx" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
((EUID == 0)) || { echo "needs root: sudo $0" >&2; exit 1; }

lab_up "$sfx" >/dev/null
lab_kernel_nat "$sfx"
c=$(lab_ns client "$sfx")
r=$(lab_ns router "$sfx")
s=$(lab_ns server "$sfx")
ip netns exec "$s" python3 "$here/peers.py" server >"$work/server.log" 2>&1 &
server_pid=$!
lab_wait_port "$s" 111 >/dev/null

ip netns exec "$r" dumpcap -q -p -s 262144 -i lan0 -i wan0 -w "$work/raw.pcapng" </dev/null >"$work/dumpcap.log" 2>&1 &
dumpcap_pid=$!
lab_wait_capture "$r" 2
if timeout 30 ip netns exec "$c" python3 "$here/peers.py" client 198.51.100.2 40000; then
    echo "the call-back worked through the kernel alone: nothing to show" >&2
    exit 1
fi
sleep 0.5
kill -INT "$dumpcap_pid"
wait "$dumpcap_pid" || true
dumpcap_pid=
# dumpcap writes each interface's packets in batches: put them in time order, as the replay reads them.
reordercap "$work/raw.pcapng" "$out" >/dev/null
echo "recorded $(capinfos -c -M "$out" | awk '/Number of packets/ { print $NF }') packets into $out"

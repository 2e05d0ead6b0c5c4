#!/usr/bin/env bash
# Records tests/data/rtsp/masquerade.pcapng: an RTSP session as the router's lan0 and wan0 saw it, ffmpeg (client,
# LAN) playing GStreamer's RTSP server (tests/lab/rtsp-server.py, beyond the WAN) through the kernel's MASQUERADE,
# which has no RTSP helper. Audio only (-allowed_media_types audio), 2 s of PCMU over RTP/UDP, so the file stays
# small: OPTIONS, DESCRIBE, SETUP, PLAY, the media, TEARDOWN. ffmpeg's first datagram to each server port (sent before
# PLAY) gives the kernel a mapping the server's media then follows. tests/Offload.Alg.Tests/Rtsp/RtspCaptureTests.cs
# replays it with the rtsp helper.
#
# Usage: sudo tests/lab/record-rtsp-capture.sh [OUT]   (LAB_SUFFIX, default -rr)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"

out=${1:-$here/../data/rtsp/masquerade.pcapng}
sfx=${LAB_SUFFIX:--rr}
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
ip netns exec "$s" /usr/bin/python3 "$here/rtsp-server.py" "$LAB_WAN4_SERVER" 554 >"$work/server.log" 2>&1 &
server_pid=$!
lab_wait_port "$s" 554 60 >/dev/null

ip netns exec "$r" dumpcap -q -p -s 262144 -i lan0 -i wan0 -w "$work/raw.pcapng" </dev/null >"$work/dumpcap.log" 2>&1 &
dumpcap_pid=$!
lab_wait_capture "$r" 2
timeout 60 ip netns exec "$c" ffmpeg -nostdin -hide_banner -loglevel error -rtsp_transport udp -allowed_media_types audio \
    -i "rtsp://$LAB_WAN4_SERVER:554/test" -t 2 -f null - </dev/null
sleep 0.5
kill -INT "$dumpcap_pid"
wait "$dumpcap_pid" || true
dumpcap_pid=
# Only the session's IPv4 packets (no IPv6 neighbour or MLD chatter), in time order, as the replay reads them.
tshark -r "$work/raw.pcapng" -Y "ip && (tcp.port == 554 || udp)" -w "$work/session.pcapng" 2>/dev/null
reordercap "$work/session.pcapng" "$out" >/dev/null
echo "recorded $(capinfos -c -M "$out" | awk '/Number of packets/ { print $NF }') packets into $out"

#!/usr/bin/env bash
# A bulk FTP data transfer through the lab router, side by side in one run (see docs/benchmarks.md, "Hand-back"):
#   kernel    the kernel's MASQUERADE and its own ftp helper (the ceiling)
#   handback  offloadd in helpers mode with hand-back: the control connection stays with offloadd, the data connection
#             is handed to the kernel's conntrack, with offloadd's NAT, once established
#   helpers   offloadd in helpers mode without hand-back: every packet of the data connection through the queue
# For each: ROUNDS passive downloads of SIZE_MIB MiB with curl to /dev/null, the median in Gbit/s; then the ratio of
# handback to kernel. offloadd's share of a handed-back transfer (its queue's packet count) is printed too.
#
# Usage: sudo bench/lab/handback-ftp.sh [mode...]   (default: kernel handback helpers)
# Environment: SIZE_MIB (default 1024), ROUNDS (default 5), LAB_SUFFIX (default -bhb), OFFLOADS=on to leave the
# veth offloads on (the lab turns them off).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/lab/lab.sh
. "$repo/tests/lab/lab.sh"

sfx=${LAB_SUFFIX:--bhb}
size=${SIZE_MIB:-1024}
rounds=${ROUNDS:-5}
modes=("$@")
((${#modes[@]})) || modes=(kernel handback helpers)
work=$(mktemp -d)
daemon_pid=
results=()

cleanup() {
    [[ -n $daemon_pid ]] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    lab_down "$sfx" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

((EUID == 0)) || { echo "handback-ftp: run as root (namespaces)" >&2; exit 1; }
for tool in curl vsftpd conntrack ipset dotnet; do
    command -v $tool >/dev/null || { echo "handback-ftp: install $tool (tests/lab/packages.txt)" >&2; exit 1; }
done

dotnet build "$repo/daemon/Offload.Daemon" -c Release --nologo -v quiet >/dev/null
dotnet build "$repo/daemon/Offload.Ctl" -c Release --nologo -v quiet >/dev/null
offloadd="$repo/daemon/Offload.Daemon/bin/Release/net10.0/offloadd.dll"
offloadctl="$repo/daemon/Offload.Ctl/bin/Release/net10.0/offloadctl.dll"
sed '/^handback:/,$d' "$repo/tests/lab/offloadd-handback.yaml" >"$work/helpers.yaml"

setup_lab() {
    lab_down "$sfx" >/dev/null 2>&1 || true
    lab_up "$sfx" >/dev/null
    if [[ ${OFFLOADS:-} == on ]]; then
        for ns in client router server; do
            for dev in $(ip -n "$(lab_ns $ns "$sfx")" -o link show type veth | awk -F': ' '{print $2}' | cut -d@ -f1); do
                ip netns exec "$(lab_ns $ns "$sfx")" ethtool -K "$dev" tx on tso on gso on gro on >/dev/null 2>&1 || true
            done
        done
    fi
    lab_vsftpd "$sfx" >/dev/null
    # Zeros, from the page cache: the server's disk is not what is measured.
    head -c $((size << 20)) /dev/zero >"$(lab_ftp_root "$sfx")/bulk.bin"
    chmod 0644 "$(lab_ftp_root "$sfx")/bulk.bin"
    cat "$(lab_ftp_root "$sfx")/bulk.bin" >/dev/null
}

start_offloadd() { # config
    ip netns exec "$r" dotnet "$offloadd" --config "$1" --apply-rules --remove-rules-on-stop \
        --socket "$work/offloadd.sock" >"$work/offloadd.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 100); do grep -q '\] Ready: ' "$work/offloadd.log" 2>/dev/null && break; sleep 0.2; done
}

# One passive download; prints Gbit/s (0 when it failed or arrived short).
download() {
    local out
    out=$(timeout 120 ip netns exec "$c" curl -sS --disable-epsv -o /dev/null -w '%{size_download} %{speed_download}' \
        "ftp://198.51.100.2/bulk.bin" 2>>"$work/curl.err") || { echo 0; return; }
    read -r bytes speed <<<"$out"
    if ((bytes != size << 20)); then echo "$mode: $bytes bytes of $((size << 20))" >>"$work/curl.err"; echo 0; return; fi
    awk -v s="$speed" 'BEGIN { printf "%.2f\n", s * 8 / 1e9 }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Every round's figure per mode (modes may be given more than once, alternating, on a noisy machine).
declare -A gbps all
for mode in "${modes[@]}"; do
    setup_lab
    r=$(lab_ns router "$sfx")
    c=$(lab_ns client "$sfx")
    extra=""
    case $mode in
    kernel) lab_kernel_ftp_nat "$sfx" >/dev/null ;;
    handback) start_offloadd "$repo/tests/lab/offloadd-handback.yaml" ;;
    helpers) start_offloadd "$work/helpers.yaml" ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac

    speeds=()
    for _ in $(seq "$rounds"); do speeds+=("$(download)"); done
    gbps[$mode]=$(printf '%s\n' "${speeds[@]}" | median)
    all[$mode]="${all[$mode]:-} ${speeds[*]}"
    if [[ $mode == handback && -n ${gbps[kernel]:-} ]]; then
        extra_pair=$(awk -v h="${gbps[handback]}" -v k="${gbps[kernel]}" 'BEGIN { if (k > 0) printf "%.3f", h / k }')
    fi
    if [[ $mode != kernel ]]; then
        stats=$(dotnet "$offloadctl" stats --socket "$work/offloadd.sock")
        packets=$(grep -oE '^queue [0-9]+ .*packets [0-9]+' <<<"$stats" | grep -oE 'packets [0-9]+' | awk '{s+=$2} END {print s}')
        extra="offloadd saw $packets packets in $rounds transfers; $(grep '^handback' <<<"$stats" || echo 'no hand-back')"
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
        daemon_pid=
    fi

    [[ $mode == handback && -n ${extra_pair:-} ]] && extra="ratio to the kernel run before it: $extra_pair; $extra"
    extra_pair=
    results+=("$(printf '%-9s %6s Gbit/s (median of %s: %s)  %s' "$mode" "${gbps[$mode]}" "$rounds" "${speeds[*]}" "$extra")")
    echo "${results[-1]}"
done

if [[ -s $work/curl.err ]]; then
    echo "curl said:"
    sed 's/^/  /' "$work/curl.err"
fi
echo
echo "== passive FTP download of $size MiB through the lab router ($(nproc) CPUs, offloads ${OFFLOADS:-off})"
printf '%s\n' "${results[@]}"
if [[ -n ${all[kernel]:-} && -n ${all[handback]:-} ]]; then
    k=$(tr ' ' '\n' <<<"${all[kernel]}" | grep . | median)
    h=$(tr ' ' '\n' <<<"${all[handback]}" | grep . | median)
    awk -v h="$h" -v k="$k" 'BEGIN { if (k > 0) printf "handback / kernel, medians of every round: %.2f / %.2f = %.3f\n", h, k, h / k }'
fi

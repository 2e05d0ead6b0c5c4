#!/usr/bin/env bash
# Records the kernel reference captures for FTP through a NAT router into
# tests/data/ftp/<scenario>.pcapng (see tests/data/ftp/README.md).
#
# Each scenario gets a fresh lab (lab.sh): the kernel's MASQUERADE on wan0 and
# its ftp helper in the router, vsftpd in the server, curl in the client.
# dumpcap runs in the router on lan0 and wan0 at once. As users record
# (CAPTURE_STYLE=user, the default): veth offloads on, the file as dumpcap
# wrote it, out of time order across interfaces; as the reference captures in
# tests/data/ftp are (CAPTURE_STYLE=reference): offloads off, sorted by
# timestamp. See tests/lab/capture.sh.
#
# Usage: tests/lab/record-ftp-captures.sh [scenario...]   (default: all)
# Environment: OUT_DIR (default tests/data/ftp), LAB_SUFFIX (default -rec),
# CAPTURE_STYLE (user or reference; tests/data/ftp takes reference only).
# Needs root and the packages in tests/lab/packages.txt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"

out_dir=${OUT_DIR:-$repo/tests/data/ftp}
sfx=${LAB_SUFFIX--rec}
all_scenarios=(ipv4-port ipv4-eprt ipv4-pasv ipv4-epsv ipv6-eprt ipv6-epsv ipv4-port-multi)

work=
dumpcap_pid=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $dumpcap_pid ]]; then
        kill -TERM "$dumpcap_pid" 2>/dev/null || true
        wait "$dumpcap_pid" 2>/dev/null || true
    fi
    lab_down "$sfx" || true
    [[ -n $work ]] && rm -rf -- "$work"
    if ((rc != 0)); then
        echo "record-ftp-captures: FAILED (exit $rc)" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
    echo "record-ftp-captures: $*" >&2
    exit 1
}

for tool in ip ethtool iptables ip6tables conntrack vsftpd curl dumpcap tshark reordercap capinfos perl ss taskset; do
    command -v "$tool" >/dev/null || die "missing tool '$tool' (install tests/lab/packages.txt)"
done
((EUID == 0)) || die "must run as root (network namespaces)"

# Everything the lab runs (vsftpd, curl, dumpcap) inherits this CPU, and so
# does the softirq work their packets cause (veth hands each packet to the
# backlog of the CPU that sent it). On one CPU the router handles packets one
# at a time in the order the capture shows; spread over two, a sender's
# segments can be reordered between CPU backlogs and the router may process
# two packets at once.
all_cpus=$(taskset -cp $$ | sed 's/.*: *//')
taskset -cp 0 $$ >/dev/null

work=$(mktemp -d /tmp/ol-record.XXXXXX)
mkdir -p "$out_dir"

# shellcheck source=tests/lab/capture.sh
. "$here/capture.sh"

# Direction on a router interface, read from the source MAC (the capture
# carries no direction flags): entering lan0 comes from the client, leaving
# wan0 comes from wan0.
in_lan="eth.src == $LAB_MAC_CLIENT"
out_wan="eth.src == $LAB_MAC_WAN0"

# --- scenarios -----------------------------------------------------------------------

# run_scenario NAME : one fresh lab, one capture, one verified download set.
run_scenario() {
    local name=$1 fam verb files=() url_host curl_args=() f
    case $name in
    ipv4-port) fam=4 verb=PORT files=(big.bin) curl_args=(-P - --disable-eprt) ;;
    ipv4-eprt) fam=4 verb=EPRT files=(small.bin) curl_args=(-P -) ;;
    ipv4-pasv) fam=4 verb=PASV files=(small.bin) curl_args=(--disable-epsv) ;;
    ipv4-epsv) fam=4 verb=EPSV files=(small.bin) curl_args=() ;;
    ipv6-eprt) fam=6 verb=EPRT files=(small.bin) curl_args=(-P -) ;;
    ipv6-epsv) fam=6 verb=EPSV files=(small.bin) curl_args=() ;;
    ipv4-port-multi)
        fam=4 verb=PORT files=(hello.txt notes.txt small.bin tiny.bin)
        curl_args=(-P - --disable-eprt)
        ;;
    *) die "unknown scenario '$name' (known: ${all_scenarios[*]})" ;;
    esac
    if [[ $fam == 4 ]]; then url_host=$LAB_WAN4_SERVER; else url_host="[$LAB_WAN6_SERVER]"; fi

    echo "== $name" >&2
    lab_up "$sfx"
    capture_offloads
    lab_kernel_ftp_nat "$sfx"
    lab_vsftpd "$sfx"

    local c r dl raw capture
    c=$(lab_ns client "$sfx")
    r=$(lab_ns router "$sfx")
    dl=$work/$name.dl
    raw=$work/$name.raw.pcapng
    rm -rf "$dl" && mkdir -p "$dl"

    # Several URLs on one curl command line share one control connection.
    local args=()
    for f in "${files[@]}"; do
        args+=("ftp://$url_host/$f" -o "$dl/$f")
    done

    start_capture "$raw"
    lab_exec "$c" curl -sS -g --max-time 60 "${curl_args[@]}" "${args[@]}" ||
        die "$name: curl failed"
    # Every connection torn down in the router before the capture stops.
    lab_wait_conntrack_quiet "$r" 10 || die "$name: connections did not finish"
    sleep 0.2
    stop_capture "$raw"

    for f in "${files[@]}"; do
        cmp -s "$dl/$f" "$(lab_ftp_root "$sfx")/$f" || die "$name: $f differs from the source"
    done

    finish_capture "$raw" "$name"

    # What the scenario must show: one control connection (its SYN seen on
    # both interfaces) and every transfer's command or reply on both sides,
    # with the address rewritten where the client announces one.
    local n=${#files[@]} ctl="tcp.dstport == 21 && tcp.flags.syn == 1 && tcp.flags.ack == 0"
    expect "$capture" 2 "$ctl"
    case $verb in
    PORT)
        expect "$capture" "$n" "$in_lan && ftp.request.command == \"PORT\" && ftp.request.arg contains \"192,0,2,2,\""
        expect "$capture" "$n" "$out_wan && ftp.request.command == \"PORT\" && ftp.request.arg contains \"198,51,100,1,\""
        expect "$capture" "$((2 * n))" "tcp.srcport == 20 && tcp.flags.syn == 1 && tcp.flags.ack == 0"
        ;;
    EPRT)
        local a_in a_out
        if [[ $fam == 4 ]]; then
            a_in="|1|$LAB_LAN4_CLIENT|" a_out="|1|$LAB_WAN4_ROUTER|"
        else
            # The kernel writes the new IPv6 address uncompressed, every
            # group as four hex digits (2001:db8:2::1 -> 39 characters).
            a_in="|2|$LAB_LAN6_CLIENT|" a_out="|2|2001:0db8:0002:0000:0000:0000:0000:0001|"
        fi
        expect "$capture" "$n" "$in_lan && ftp.request.command == \"EPRT\" && ftp.request.arg contains \"$a_in\""
        expect "$capture" "$n" "$out_wan && ftp.request.command == \"EPRT\" && ftp.request.arg contains \"$a_out\""
        expect "$capture" "$((2 * n))" "tcp.srcport == 20 && tcp.flags.syn == 1 && tcp.flags.ack == 0"
        ;;
    PASV)
        expect "$capture" "$((2 * n))" "ftp.response.code == 227"
        ;;
    EPSV)
        expect "$capture" "$((2 * n))" "ftp.response.code == 229"
        ;;
    esac

    keep_capture "$capture" "$name"
}

record_scenarios "$@"

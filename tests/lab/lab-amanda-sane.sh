#!/usr/bin/env bash
# Lab functions for the Amanda and SANE helpers (source after tests/lab/lab.sh):
#
#   lab_kernel_amanda_sane SFX       the kernel's MASQUERADE and its amanda and sane helpers (the reference)
#   lab_amandad SFX PORTS            the scripted amandad (tests/lab/amanda-peer.py) in the server namespace
#   lab_saned SFX                    Debian's saned with the `test` backend in the server namespace
#   lab_sane_client_conf SFX         prints the SANE_CONFIG_DIR for scanimage in the client (net backend)
#   lab_sane_local_scan SFX OUT      the reference image: scanimage on the test backend inside the server
#
# Who sits where. Amanda: the backup *server* asks the client's amandad on UDP 10080, and the client's reply
# announces the TCP ports the server then connects to. A NAT in front of the server is what Amanda's helpers are
# for (that reply comes back through the translation, and the connections it announces go out through it), so the
# lab's client namespace, behind the router's MASQUERADE, holds the Amanda server, and the server namespace holds
# amandad. SANE: the scanning client (client namespace) asks saned (server namespace); the data connection goes
# from the client to the port saned's START answer names.
#
# Every function works under `set -euo pipefail` and returns non-zero on failure.

# shellcheck disable=SC2034 # for the scripts that source this file
LAB_AMANDA_PEER=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/amanda-peer.py
# shellcheck disable=SC2034 # for the scripts that source this file
LAB_SANE_CLIENT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/sane-client.py
# shellcheck disable=SC2034 # for the scripts that source this file
LAB_SANE_DATA_PORTS="50100 - 50199"

# lab_kernel_amanda_sane [SUFFIX] : the kernel's MASQUERADE on wan0 and its amanda (UDP 10080) and sane
# (TCP 6566) helpers attached explicitly, IPv4 and IPv6. Idempotent.
lab_kernel_amanda_sane() {
    local r ipt
    r=$(lab_ns router "${1-}") || return 1
    lab_kernel_nat "${1-}" || return 1
    for ipt in iptables ip6tables; do
        _lab_rule "$r" "$ipt" -t raw PREROUTING -p udp --dport 10080 -j CT --helper amanda || return 1
        _lab_rule "$r" "$ipt" -t raw PREROUTING -p tcp --dport 6566 -j CT --helper sane || return 1
    done
}

# lab_amandad SUFFIX PORTS : start amanda-peer.py's amandad (PORTS: DATA,MESG,INDEX, e.g. 50000,50010,50020)
# in the server namespace; each REP it sends is kept in $(lab_tmp SUFFIX)/amandad/. Waits until it listens.
lab_amandad() {
    local sfx=$1 ports=$2 s t p
    s=$(lab_ns server "$sfx") && t=$(lab_tmp "$sfx") || return 1
    mkdir -p "$t/amandad" || return 1
    ip netns exec "$s" python3 "$LAB_AMANDA_PEER" amandad --ports "$ports" --out "$t/amandad" \
        </dev/null >"$t/amandad.log" 2>&1 &
    echo $! >"$t/amandad.pid"
    lab_wait_port "$s" 10080 10 udp || { cat "$t/amandad.log" >&2; return 1; }
    for p in ${ports//,/ }; do
        lab_wait_port "$s" "$p" 10 tcp || return 1
    done
}

# _lab_sane_dirs SUFFIX : the SANE configuration directories of the server (saned, test backend) and the
# client (net backend), written once per lab.
_lab_sane_dirs() {
    local sfx=$1 t
    t=$(lab_tmp "$sfx") || return 1
    [[ -f $t/sane-server/saned.conf ]] && return 0
    mkdir -p "$t/sane-server" "$t/sane-client" || return 1
    printf 'test\n' >"$t/sane-server/dll.conf"
    # Who may scan (the client's own subnet, and the router's WAN address it comes from when translated), and
    # where saned's data ports lie.
    printf '%s\n%s\ndata_portrange = %s\n' "$LAB_LAN4_PREFIX" "$LAB_WAN4_PREFIX" "$LAB_SANE_DATA_PORTS" \
        >"$t/sane-server/saned.conf"
    # A colour test pattern rather than the default solid black, so that a corrupted byte shows.
    sed -e 's/^mode .*/mode Color/' -e 's/^test-picture .*/test-picture "Color pattern"/' \
        -e 's/^resolution .*/resolution 100.0/' /etc/sane.d/test.conf >"$t/sane-server/test.conf" || return 1
    printf 'net\n' >"$t/sane-client/dll.conf"
    printf 'connect_timeout = 5\n%s\n' "$LAB_WAN4_SERVER" >"$t/sane-client/net.conf"
}

# lab_sane_client_conf SUFFIX : prints the SANE_CONFIG_DIR scanimage uses in the client (net backend).
lab_sane_client_conf() {
    local t
    _lab_sane_dirs "$1" && t=$(lab_tmp "$1") || return 1
    printf '%s/sane-client\n' "$t"
}

# lab_saned SUFFIX : saned in standalone mode (-l: listens itself, forks per client; -e: logs to stderr) in the
# server namespace, on the test backend. Waits until port 6566 listens.
lab_saned() {
    local sfx=$1 s t
    s=$(lab_ns server "$sfx") && t=$(lab_tmp "$sfx") || return 1
    _lab_sane_dirs "$sfx" || return 1
    SANE_CONFIG_DIR=$t/sane-server ip netns exec "$s" saned -l -e -d 1 </dev/null >"$t/saned.log" 2>&1 &
    echo $! >"$t/saned.pid"
    lab_wait_port "$s" 6566 10 tcp || { cat "$t/saned.log" >&2; return 1; }
}

# lab_sane_local_scan SUFFIX OUT : scan with the same test backend inside the server (no network), as PNM.
lab_sane_local_scan() {
    local sfx=$1 out=$2 s t
    s=$(lab_ns server "$sfx") && t=$(lab_tmp "$sfx") || return 1
    _lab_sane_dirs "$sfx" || return 1
    SANE_CONFIG_DIR=$t/sane-server ip netns exec "$s" timeout 30 scanimage -d test:0 --format=pnm >"$out"
}

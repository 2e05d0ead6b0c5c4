#!/usr/bin/env bash
# End to end: the Amanda and SANE helpers of offloadd in the lab's router (tests/lab/offloadd-amanda-sane.yaml:
# every flow from lan0 to wan0, MASQUERADE, helpers amanda and sane), the kernel's own helpers never attached;
# then the same traffic through the kernel's MASQUERADE and its amanda and sane helpers, in a fresh lab.
#
# Peers (see tests/lab/lab-amanda-sane.sh for who sits where):
# - Amanda: scripted in python (tests/lab/amanda-peer.py), the backup server behind the NAT (client namespace),
#   amandad outside (server namespace). Two sessions at once, answered with the same ports, so the second one's
#   expectations clash with the first's and NAT must move its ports and rewrite the reply.
# - SANE: Debian's saned with the test backend in the server namespace; scanimage, and a scripted client
#   (tests/lab/sane-client.py) that pauses between START and the data connection, in the client namespace.
#
# What is compared with the kernel: the Amanda replies as the backup server received them. The first session's
# must be byte for byte what amandad sent, through both. The second session's ports are chosen by NAT (offloadd
# searches upwards from the announced port; this kernel picks them at random), so its two versions must be
# equal once each announced port number is replaced by '#', and in both every port must have moved.
#
# Prints "ok - ..." / "not ok - ...: why" per check, "# ..." for information, and ends with "N passed, N failed"
# (tests/lab/harness.sh; KEEP_WORK=1 keeps the work directory).
# Usage: tests/lab/e2e-amanda-sane.sh [-SUFFIX]   (as root; LAB_SUFFIX or the argument, default -as)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/lab-amanda-sane.sh
. "$here/lab-amanda-sane.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"

sfx=${1:-${LAB_SUFFIX--as}}
amanda_ports=50000,50010,50020

h_init ol-e2e-as
h_need_root_and_tools ip iptables ip6tables conntrack python3 saned scanimage dotnet cmp ss
h_build
h_on_exit "lab_down '$sfx'"
work=$H_WORK
C=$(lab_ns client "$sfx")
R=$(lab_ns router "$sfx")

# amanda_sessions DIR LISTER : two Amanda sessions from the backup server; while both replies are in and no
# stream is opened yet, LISTER (a command) prints the router's expectations into DIR/expect.txt. The server's
# report goes to DIR/server.log, the replies as received to DIR/rep-0.bin and rep-1.bin. Returns its exit code.
amanda_sessions() {
    local dir=$1 lister=$2 pid rc=0
    mkdir -p "$dir"
    lab_exec "$C" timeout 60 python3 "$LAB_AMANDA_PEER" server --amandad "$LAB_WAN4_SERVER" --sessions 2 \
        --out "$dir" --hold "$dir/ready" "$dir/go" >"$dir/server.log" 2>&1 &
    pid=$!
    if h_wait_for 30 test -e "$dir/ready"; then
        $lister >"$dir/expect.txt" 2>&1 || true
    fi
    touch "$dir/go"
    wait "$pid" || rc=$?
    return "$rc"
}

# sane_scripted DIR LISTER : the scripted SANE client; between the START answer and the data connection,
# LISTER prints the router's expectations into DIR/expect.txt. Image bytes to DIR/raw (port in DIR/raw.port).
sane_scripted() {
    local dir=$1 lister=$2 pid rc=0
    mkdir -p "$dir"
    lab_exec "$C" timeout 60 python3 "$LAB_SANE_CLIENT" "$LAB_WAN4_SERVER" test:0 "$dir/raw" \
        --hold "$dir/ready" "$dir/go" >"$dir/client.log" 2>&1 &
    pid=$!
    if h_wait_for 30 test -e "$dir/ready"; then
        $lister >"$dir/expect.txt" 2>&1 || true
    fi
    touch "$dir/go"
    wait "$pid" || rc=$?
    return "$rc"
}

# pnm_body PNM : the image bytes of a binary PNM from scanimage (after its four header lines).
pnm_body() { tail -c +"$(($(head -n 4 "$1" | wc -c) + 1))" "$1"; }

# mask_ports FILE : the Amanda reply with the number after each DATA/MESG/INDEX replaced by '#'.
mask_ports() { sed -E 's/(DATA|MESG|INDEX) [0-9]+/\1 #/g' "$1"; }

# connect_ports FILE : the ports of the CONNECT line, space-separated.
connect_ports() { grep -a '^CONNECT ' "$1" | grep -oE '[0-9]+' | tr '\n' ' ' | sed 's/ $//'; }

# check_amanda LABEL DIR SENT_DIR : the checks common to both routers.
check_amanda() {
    local label=$1 dir=$2 sent=$3 why=
    [[ $(grep -c ' intact$' "$dir/server.log") == 6 ]] || why="$(tr '\n' ';' <"$dir/server.log")"
    h_result "$label: Amanda, two sessions at once: all six streams (DATA, MESG, INDEX) arrive intact" "$why"
    why=
    cmp -s "$dir/rep-0.bin" "$sent/sent-000-0000A000.bin" || why="received $(connect_ports "$dir/rep-0.bin")"
    h_result "$label: Amanda: the first reply arrives byte for byte as amandad sent it" "$why"
    why=
    local moved
    moved=$(connect_ports "$dir/rep-1.bin")
    if ! cmp -s <(mask_ports "$dir/rep-1.bin") <(mask_ports "$sent/sent-000-0000A001.bin"); then
        why="differs from what was sent beyond the ports"
    else
        for p in $moved; do [[ ,$amanda_ports, == *",$p,"* ]] && why+="port $p did not move; "; done
        [[ $(wc -w <<<"$moved") == 3 ]] || why+="ports '$moved'; "
    fi
    h_result "$label: Amanda: the second reply has all three ports moved (to $moved) and nothing else changed" "$why"
}

# ===================================================================================================
# 1. offloadd in the router
# ===================================================================================================

lab_up "$sfx" 2>/dev/null
lab_amandad "$sfx" "$amanda_ports"
lab_saned "$sfx"
lab_sane_local_scan "$sfx" "$work/local.pnm"
[[ $(stat -c %s "$work/local.pnm") -gt 100000 ]] || h_die "the local reference scan failed"

if h_daemon_start "$R" "$H_REPO/tests/lab/offloadd-amanda-sane.yaml" --apply-rules --remove-rules-on-stop; then
    ok "offloadd started with the amanda and sane helpers"
else
    not_ok "offloadd started" "$(tail -n 3 "$H_DAEMON_LOG")"
    h_die "offloadd did not start"
fi
if ip netns exec "$R" iptables-save | grep -q OFFLOAD && ! ip netns exec "$R" iptables-save -t raw | grep -q -- '--helper'; then
    ok "steering rules in place, no kernel helper attached"
else
    not_ok "steering rules in place, no kernel helper attached" "$(ip netns exec "$R" iptables-save -t raw | grep -cE 'OFFLOAD|helper') lines"
fi

# --- Amanda ---
rc=0
amanda_sessions "$work/off-amanda" "h_ctl expect list" || rc=$?
[[ $rc == 0 ]] || info "amanda server exit $rc: $(tr '\n' ';' <"$work/off-amanda/server.log")"
cp -r "$(lab_tmp "$sfx")/amandad" "$work/off-sent"
check_amanda offloadd "$work/off-amanda" "$work/off-sent"
why=
for sport in 850 851; do
    n=$(grep -cE "proto=6 tcp 6 src=$LAB_LAN4_CLIENT dst=$LAB_WAN4_SERVER sport=0 dport=[0-9]+ master=src=$LAB_LAN4_CLIENT dst=$LAB_WAN4_SERVER sport=$sport dport=10080" "$work/off-amanda/expect.txt" || true)
    [[ $n == 3 ]] || why+="$n expectations of the session from port $sport; "
done
for p in ${amanda_ports//,/ } $(connect_ports "$work/off-amanda/rep-1.bin"); do
    grep -qE "dport=$p master=" "$work/off-amanda/expect.txt" || why+="none for port $p; "
done
h_result "offloadd: offloadctl expect list shows the three expected streams of each session, at the ports each reply announces" "${why:+$why $(tr '\n' ';' <"$work/off-amanda/expect.txt")}"
conns=$(h_ctl conntrack list)
n=$(grep -cE "^ipv4 +2 tcp +6 .* src=$LAB_LAN4_CLIENT dst=$LAB_WAN4_SERVER sport=[0-9]+ dport=500[0-9][0-9] .*master=src=$LAB_LAN4_CLIENT dst=$LAB_WAN4_SERVER sport=85[01] dport=10080" <<<"$conns" || true)
h_result "offloadd: the six stream connections are tracked as expected connections of their Amanda session" "$([[ $n == 6 ]] || echo "$n found")"
moved_to=$(grep -m1 -oE "src=$LAB_LAN4_CLIENT dst=$LAB_WAN4_SERVER sport=[0-9]+ dport=$(connect_ports "$work/off-amanda/rep-1.bin" | cut -d' ' -f1) src=$LAB_WAN4_SERVER dst=$LAB_WAN4_ROUTER sport=[0-9]+" <<<"$conns" || true)
if [[ $moved_to == *" sport=50000" ]]; then
    ok "offloadd: the DATA stream opened to the moved port reached amandad's port 50000"
else
    not_ok "offloadd: the DATA stream opened to the moved port reached amandad's port 50000" "${moved_to:-no such connection}"
fi

# --- SANE ---
why=
SANE_CONFIG_DIR=$(lab_sane_client_conf "$sfx") lab_exec "$C" timeout 30 scanimage -d "net:$LAB_WAN4_SERVER:test:0" \
    --format=pnm >"$work/off-scan.pnm" 2>"$work/off-scan.log" || why="scanimage: $(tail -n 2 "$work/off-scan.log" | tr '\n' ' ')"
[[ -n $why ]] || cmp -s "$work/off-scan.pnm" "$work/local.pnm" || why="image differs ($(stat -c %s "$work/off-scan.pnm") bytes)"
h_result "offloadd: SANE: scanimage through the router gets the same image as a scan inside the server ($(stat -c %s "$work/local.pnm") bytes)" "$why"
rc=0
sane_scripted "$work/off-sane" "h_ctl expect list" || rc=$?
why=
port=$(cat "$work/off-sane/raw.port" 2>/dev/null || echo none)
((rc == 0)) || why="client exit $rc: $(tr '\n' ' ' <"$work/off-sane/client.log"); "
cmp -s "$work/off-sane/raw" <(pnm_body "$work/local.pnm") || why+="image bytes differ; "
h_result "offloadd: SANE: the scripted client's data connection (port $port) carries the same image" "$why"
if grep -qE "proto=6 tcp 6 src=$LAB_LAN4_CLIENT dst=$LAB_WAN4_SERVER sport=0 dport=$port master=src=$LAB_LAN4_CLIENT dst=$LAB_WAN4_SERVER sport=[0-9]+ dport=6566" "$work/off-sane/expect.txt"; then
    ok "offloadd: offloadctl expect list shows the data connection announced by the START answer, while the client waits"
else
    not_ok "offloadd: offloadctl expect list shows the SANE data connection" "$(tr '\n' ';' <"$work/off-sane/expect.txt")"
fi
conns=$(h_ctl conntrack list)
n=$(grep -cE "src=$LAB_LAN4_CLIENT dst=$LAB_WAN4_SERVER sport=[0-9]+ dport=50[01][0-9][0-9] .*master=src=$LAB_LAN4_CLIENT dst=$LAB_WAN4_SERVER sport=[0-9]+ dport=6566" <<<"$conns" || true)
h_result "offloadd: SANE data connections (scanimage's and the scripted client's) are expected connections of their control connection" "$([[ $n == 2 ]] || echo "$n found")"

# --- counters, log, stop ---
stats=$(h_ctl stats)
why=
drops=$(grep -E '^ +(PacketsDropped|Dropped|Malformed|Helper)[A-Za-z]* ' <<<"$stats" | tr -s ' ' | tr '\n' ';' || true)
[[ -z $drops ]] || why+="engine: $drops "
grep -qE '^ +ExpectationsCreated +(8|9|[1-9][0-9]+)$' <<<"$stats" || why+="ExpectationsCreated: $(grep -E 'ExpectationsCreated' <<<"$stats" | tr -s ' '); "
grep -qE '^ +PayloadRewrites +[1-9]' <<<"$stats" || why+="no PayloadRewrites; "
h_result "offloadctl stats: expectations created (6 Amanda, 2 SANE), the moved reply rewritten, no drops, no helper events" "$why"
bad_log=$(h_daemon_log_problems)
h_result "offloadd log: no warnings or errors" "${bad_log:+$(head -n 3 <<<"$bad_log" | tr '\n' ' ')}"
h_daemon_stop
stop_rc=$H_DAEMON_RC
if [[ $stop_rc == 0 ]] && ! ip netns exec "$R" iptables-save | grep -q OFFLOAD; then ok "SIGTERM: offloadd exits 0 and removes its rules"; else not_ok "SIGTERM: offloadd exits 0 and removes its rules" "exit $stop_rc"; fi

# ===================================================================================================
# 2. The same traffic through the kernel's MASQUERADE and its amanda and sane helpers, in a fresh lab.
# ===================================================================================================

lab_up "$sfx" 2>/dev/null
lab_kernel_amanda_sane "$sfx"
lab_amandad "$sfx" "$amanda_ports"
lab_saned "$sfx"
kernel_expect() { ip netns exec "$R" conntrack -L expect; }

rc=0
amanda_sessions "$work/kern-amanda" kernel_expect || rc=$?
[[ $rc == 0 ]] || info "amanda server exit $rc (kernel): $(tr '\n' ';' <"$work/kern-amanda/server.log")"
cp -r "$(lab_tmp "$sfx")/amandad" "$work/kern-sent"
check_amanda kernel "$work/kern-amanda" "$work/kern-sent"
n=$(grep -c 'helper=amanda' "$work/kern-amanda/expect.txt" || true)
h_result "kernel: conntrack -L expect shows six amanda expectations while the server waits" "$([[ $n == 6 ]] || echo "$n: $(tr '\n' ';' <"$work/kern-amanda/expect.txt")")"

why=
cmp -s "$work/off-amanda/rep-0.bin" "$work/kern-amanda/rep-0.bin" || why="first replies differ"
cmp -s <(mask_ports "$work/off-amanda/rep-1.bin") <(mask_ports "$work/kern-amanda/rep-1.bin") || why+="second replies differ beyond their ports"
h_result "offloadd and the kernel: the backup server receives the same replies (the first byte for byte, the second but for the ports NAT chose)" "$why"
info "second reply's ports: offloadd $(connect_ports "$work/off-amanda/rep-1.bin"), kernel $(connect_ports "$work/kern-amanda/rep-1.bin") (amandad announced ${amanda_ports//,/ })"

why=
SANE_CONFIG_DIR=$(lab_sane_client_conf "$sfx") lab_exec "$C" timeout 30 scanimage -d "net:$LAB_WAN4_SERVER:test:0" \
    --format=pnm >"$work/kern-scan.pnm" 2>"$work/kern-scan.log" || why="scanimage: $(tail -n 2 "$work/kern-scan.log" | tr '\n' ' ')"
[[ -n $why ]] || cmp -s "$work/kern-scan.pnm" "$work/local.pnm" || why="image differs"
h_result "kernel: SANE: scanimage through the router gets the same image" "$why"
rc=0
sane_scripted "$work/kern-sane" kernel_expect || rc=$?
why=
((rc == 0)) || why="client exit $rc: $(tr '\n' ' ' <"$work/kern-sane/client.log"); "
grep -qE "dport=$(cat "$work/kern-sane/raw.port" 2>/dev/null || echo none) .*dport=6566 .*helper=sane" "$work/kern-sane/expect.txt" || why+="expectation: $(tr '\n' ';' <"$work/kern-sane/expect.txt")"
h_result "kernel: SANE: conntrack -L expect shows the sane expectation while the scripted client waits, and its scan completes" "$why"
# saned picks its data port (the first free one of its range): the START answers are compared but for the port.
why=
cmp -s <(od -An -tx1 -j8 "$work/off-sane/raw.reply"; head -c 4 "$work/off-sane/raw.reply" | od -An -tx1) \
    <(od -An -tx1 -j8 "$work/kern-sane/raw.reply"; head -c 4 "$work/kern-sane/raw.reply" | od -An -tx1) || why="START answers differ"
h_result "offloadd and the kernel: the client receives the same START answer (status, byte order, resource; port ${port} / $(cat "$work/kern-sane/raw.port" 2>/dev/null))" "$why"

info "elapsed: ${SECONDS}s"
h_finish

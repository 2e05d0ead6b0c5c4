#!/usr/bin/env bash
# End-to-end test of the live daemon: offloadd runs in the lab's router (lab.sh) and does conntrack,
# MASQUERADE and the FTP helper for everything forwarded from lan0 to wan0; curl and lftp in the client
# talk to vsftpd in the server through it. The kernel's own ftp helper is never attached and the kernel's
# MASQUERADE is not configured in that lab, so every byte that arrives went through offloadd. At the end a
# fresh lab runs the same traffic through the kernel's MASQUERADE and ftp helper, for comparison.
#
# Prints one line per check, "ok - what" or "not ok - what: details" (lines starting with "# " are
# information), and ends with the line "N passed, N failed"; exits non-zero if any check failed
# (tests/lab/harness.sh).
#
# Usage: tests/lab/e2e-offloadd.sh        (as root; builds the Release binaries if they are missing)
# Environment: LAB_SUFFIX (default -e2e), KEEP_WORK=1 keeps the work directory (logs, captures).
# Needs the packages in tests/lab/packages.txt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"

sfx=${LAB_SUFFIX--e2e}

h_init ol-e2e
h_need_root_and_tools ip ethtool iptables ip6tables iptables-save ip6tables-save conntrack vsftpd curl lftp dumpcap \
    tshark perl ss dotnet cmp
h_build
C=$(lab_ns client "$sfx")
R=$(lab_ns router "$sfx")
h_on_exit "lab_down '$sfx'"
# Rules applied by hand (check 8) or left by a daemon that died: gone with the namespace anyway, removed first so
# that nothing depends on that.
h_on_exit "[[ -e /run/netns/$R ]] && ip netns exec '$R' dotnet '$H_OFFLOADCTL' rules remove"
work=$H_WORK
cfg=$work/offloadd.yaml # the daemon re-reads this path on SIGHUP
ftp_root=
vlog=

# rules_in_router : the OFFLOAD lines of both families' iptables-save in the router.
rules_in_router() {
    { ip netns exec "$R" iptables-save && ip netns exec "$R" ip6tables-save; } | grep -E 'OFFLOAD' || true
}

# --- helpers: capture ----------------------------------------------------------------------------

leak_filter="ip.src==$LAB_LAN4_CLIENT || ipv6.src==$LAB_LAN6_CLIENT"
nat_filter="ip.src==$LAB_WAN4_ROUTER || ipv6.src==$LAB_WAN6_ROUTER"

# --- helpers: FTP ----------------------------------------------------------------------------------

modes=(ipv4-port ipv4-eprt ipv4-pasv ipv4-epsv ipv6-eprt ipv6-epsv)

mode_opts() {
    case $1 in
    ipv4-port) echo "-P - --disable-eprt" ;;
    ipv4-eprt | ipv6-eprt) echo "-P -" ;;
    ipv4-pasv) echo "--disable-epsv" ;;
    ipv4-epsv | ipv6-epsv) echo "" ;;
    esac
}

mode_command() {
    case $1 in
    *-port) echo PORT ;; *-eprt) echo EPRT ;; *-pasv) echo PASV ;; *-epsv) echo EPSV ;;
    esac
}

mode_host() {
    case $1 in ipv4-*) echo "$LAB_WAN4_SERVER" ;; ipv6-*) echo "[$LAB_WAN6_SERVER]" ;; esac
}

# ftp_curl MODE PATH OUT [CURL ARGS...] : curl in the client, in MODE, on ftp://server/PATH; its -v
# trace goes to OUT.log. Returns curl's exit code.
ftp_curl() {
    local mode=$1 path=$2 out=$3
    shift 3
    local -a opts
    read -ra opts <<<"$(mode_opts "$mode")"
    lab_exec "$C" curl -v -sS -g --connect-timeout 5 --max-time 30 "${opts[@]}" "$@" \
        "ftp://$(mode_host "$mode")/$path" 2>"$out.log"
}

# verify MODE RC TRACE GOT EXPECTED : prints why a transfer failed, or nothing: curl exited 0, its
# trace shows the mode's command, and GOT has the bytes of EXPECTED.
verify() {
    local mode=$1 rc=$2 trace=$3 got=$4 expected=$5 cmd
    cmd=$(mode_command "$mode")
    if ((rc != 0)); then
        echo "curl exit $rc ($(grep -m1 '^curl:' "$trace" || echo 'no message'))"
    elif ! grep -Eq "^> $cmd([^A-Z]|$)" "$trace"; then
        echo "curl did not use $cmd"
    elif ! cmp -s "$got" "$expected"; then
        echo "$got ($(stat -c %s "$got" 2>/dev/null || echo missing) bytes) differs from $expected"
    fi
}

# get_mode MODE FILE OUT : download, print failure details (nothing on success).
get_mode() {
    local mode=$1 file=$2 out=$3 rc=0
    ftp_curl "$mode" "$file" "$out" -o "$out" || rc=$?
    verify "$mode" "$rc" "$out.log" "$out" "$ftp_root/$file"
}

# put_mode MODE NAME : upload big.bin as incoming/NAME, print failure details.
put_mode() {
    local mode=$1 name=$2 rc=0
    ftp_curl "$mode" "incoming/$name" "$work/$name" -T "$ftp_root/big.bin" || rc=$?
    verify "$mode" "$rc" "$work/$name.log" "$ftp_root/incoming/$name" "$ftp_root/big.bin"
}

vlog_size() { stat -c %s "$vlog"; }
vlog_since() { tail -c +"$(($1 + 1))" "$vlog"; }

# run_modes LABEL RESULT_ARRAY : one download per mode (big.bin) and one upload per mode; ok/not ok
# per transfer, and "ok"/"FAIL" per mode into the associative array.
run_modes() {
    local label=$1 mode why
    # shellcheck disable=SC2034,SC2178 # a reference to the caller's associative array
    local -n res=$2
    for mode in "${modes[@]}"; do
        why=$(get_mode "$mode" big.bin "$work/$label-$mode.bin")
        if [[ -z $why ]]; then
            ok "$label: $mode download of big.bin is byte-identical"
            res["get-$mode"]=ok
        else
            not_ok "$label: $mode download of big.bin is byte-identical" "$why"
            res["get-$mode"]=FAIL
        fi
    done
    for mode in "${modes[@]}"; do
        why=$(put_mode "$mode" "$label-$mode.bin")
        if [[ -z $why ]]; then
            ok "$label: $mode upload of big.bin arrives byte-identical"
            res["put-$mode"]=ok
        else
            not_ok "$label: $mode upload of big.bin arrives byte-identical" "$why"
            res["put-$mode"]=FAIL
        fi
    done
}

# run_parallel LABEL RESULT_ARRAY : ten sessions at once, modes in turn, each getting big.bin.
# shellcheck disable=SC2034 # res is the caller's array
run_parallel() {
    local label=$1 i t0 t1 rc why bad=
    # shellcheck disable=SC2034,SC2178 # a reference to the caller's associative array
    local -n res=$2
    local -a pids=()
    t0=$(date +%s.%N)
    for i in $(seq 0 9); do
        ftp_curl "${modes[i % 6]}" big.bin "$work/$label-par-$i.bin" -o "$work/$label-par-$i.bin" &
        pids[i]=$!
    done
    for i in $(seq 0 9); do
        rc=0
        wait "${pids[i]}" || rc=$?
        why=$(verify "${modes[i % 6]}" "$rc" "$work/$label-par-$i.bin.log" "$work/$label-par-$i.bin" "$ftp_root/big.bin")
        [[ -z $why ]] || bad+="session $i (${modes[i % 6]}): $why; "
    done
    t1=$(date +%s.%N)
    res["parallel-seconds"]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    if [[ -z $bad ]]; then
        ok "$label: ten parallel sessions (mixed modes) all byte-identical"
        res["parallel"]=ok
    else
        not_ok "$label: ten parallel sessions (mixed modes) all byte-identical" "$bad"
        res["parallel"]=FAIL
    fi
}

# lftp_session MODE_SETTINGS DIR : one lftp control session getting six files into DIR.
lftp_files=(big.bin small.bin tiny.bin notes.txt hello.txt)
lftp_session() {
    local settings=$1 dir=$2 f cmds=""
    mkdir -p "$dir"
    for f in "${lftp_files[@]}"; do cmds+="get $f; "; done
    cmds+="get big.bin -o big-again.bin"
    lab_exec "$C" lftp -c "set net:max-retries 1; set net:timeout 10; set cmd:fail-exit yes; $settings;
        open ftp://$LAB_WAN4_SERVER; lcd $dir; $cmds" >"$dir.log" 2>&1
}

# check_lftp_dir DIR : every file fetched, identical.
check_lftp_dir() {
    local dir=$1 f bad=""
    for f in "${lftp_files[@]}"; do
        cmp -s "$dir/$f" "$ftp_root/$f" || bad+="$f differs; "
    done
    cmp -s "$dir/big-again.bin" "$ftp_root/big.bin" || bad+="big-again.bin differs; "
    echo "$bad"
}

declare -A offl=() kern=()

# okfail RC DETAILS : "ok" when RC is 0 and DETAILS empty, else "FAIL".
okfail() { if (($1 == 0)) && [[ -z $2 ]]; then echo ok; else echo FAIL; fi; }

# ===================================================================================================
# 9. --check: the lab configuration is valid; broken ones exit 2 and say file:line:column.
# ===================================================================================================

out=$(dotnet "$H_OFFLOADD" --check --config "$here/offloadd.yaml" 2>&1) && rc=0 || rc=$?
if ((rc == 0)) && grep -q ': valid$' <<<"$out"; then
    ok "offloadd --check says tests/lab/offloadd.yaml is valid (exit 0)"
else
    not_ok "offloadd --check says tests/lab/offloadd.yaml is valid (exit 0)" "exit $rc: $out"
fi

# Unknown key: appended as the last line, column 1.
bad1=$work/bad-key.yaml
cp "$here/offloadd.yaml" "$bad1"
echo "no-such-key: 1" >>"$bad1"
line1=$(wc -l <"$bad1")
out=$(dotnet "$H_OFFLOADD" --check --config "$bad1" 2>&1) && rc=0 || rc=$?
if ((rc == 2)) && grep -Eq "$bad1:$line1:1: .*unknown key 'no-such-key'" <<<"$out"; then
    ok "offloadd --check on an unknown key exits 2 with file:line:column"
else
    not_ok "offloadd --check on an unknown key exits 2 with file:line:column" "exit $rc: $out"
fi

# Bad address: a route to an IPv4 prefix with a 300 in it.
bad2=$work/bad-address.yaml
cp "$here/offloadd.yaml" "$bad2"
printf 'routes:\n  - to: 203.0.113.300/24\n    dev: wan0\n' >>"$bad2"
line2=$(($(wc -l <"$bad2") - 1))
out=$(dotnet "$H_OFFLOADD" --check --config "$bad2" 2>&1) && rc=0 || rc=$?
if ((rc == 2)) && grep -Eq "$bad2:$line2:[0-9]+: .*203\.0\.113\.300" <<<"$out"; then
    ok "offloadd --check on a bad address exits 2 with file:line:column"
else
    not_ok "offloadd --check on a bad address exits 2 with file:line:column" "exit $rc: $out"
fi

# ===================================================================================================
# The lab, with offloadd in the router (no kernel NAT, no kernel helper).
# ===================================================================================================

lab_up "$sfx" 2>/dev/null
lab_vsftpd_uploads "$sfx" 2>/dev/null
ftp_root=$(lab_ftp_root "$sfx")
vlog=$(lab_tmp "$sfx")/vsftpd.log
cp "$here/offloadd.yaml" "$cfg"

h_daemon_start "$R" "$cfg" --apply-rules --remove-rules-on-stop || h_die "offloadd did not become ready: $(tail -n 20 "$H_DAEMON_LOG")"
info "offloadd (pid $H_DAEMON_PID) ready in $R: $(grep -m1 'Steering rules applied' "$H_DAEMON_LOG" | sed 's/^.*\] //')"

# The kernel's NAT rules offloadd manages (OFFLOAD-NAT-*) serve only what it leaves to the kernel (other protocols):
# untracked packets never reach the nat table.
kernel_rules=$({ ip netns exec "$R" iptables-save && ip netns exec "$R" ip6tables-save; } | grep -E -- '--helper|MASQUERADE|SNAT|DNAT' | grep -v -- '^-A OFFLOAD-NAT-' || true)
if [[ -z $kernel_rules && -n $(rules_in_router) ]]; then
    ok "router: steering rules applied, no kernel NAT (besides offloadd's own for other protocols) and no kernel helper rules"
else
    not_ok "router: steering rules applied, no kernel NAT (besides offloadd's own for other protocols) and no kernel helper rules" "kernel rules: ${kernel_rules:-none}; OFFLOAD rules: $(rules_in_router | wc -l)"
fi

# Everything leaving by wan0 while offloadd runs, to prove no un-NATed packet gets out.
h_capture_start "$R" wan0 "$work/wan0-offloadd.pcapng"

# --- 1 and 5: every mode, download and upload --------------------------------------------------------
run_modes offloadd offl

# --- 2: one control session, several transfers ------------------------------------------------------
off=$(vlog_size)
rc=0
lftp_session "set ftp:passive-mode off; set ftp:prefer-epsv no" "$work/lftp-active" || rc=$?
bad=$(check_lftp_dir "$work/lftp-active")
since=$(vlog_since "$off")
ports=$(grep -c "FTP command: .*\"PORT $(tr . , <<<"$LAB_WAN4_ROUTER")," <<<"$since" || true)
others=$(grep -cE 'FTP command: .*"(PASV|EPSV|EPRT)' <<<"$since" || true)
sessions=$(grep -c 'CONNECT: Client' <<<"$since" || true)
n=$((${#lftp_files[@]} + 1))
if ((rc == 0)) && [[ -z $bad ]] && ((ports == n && others == 0 && sessions == 1)); then
    ok "lftp active: one session, $n PORT transfers (rewritten to the router's address), all identical"
else
    not_ok "lftp active: one session, $n PORT transfers (rewritten to the router's address), all identical" \
        "lftp exit $rc; ${bad:-files ok}; vsftpd saw $sessions sessions, $ports rewritten PORTs, $others other data commands"
fi
offl[lftp-active]=$(okfail "$rc" "$bad")

off=$(vlog_size)
rc=0
lftp_session "set ftp:passive-mode on; set ftp:prefer-epsv no" "$work/lftp-passive" || rc=$?
bad=$(check_lftp_dir "$work/lftp-passive")
since=$(vlog_since "$off")
pasvs=$(grep -c 'FTP command: .*"PASV"' <<<"$since" || true)
others=$(grep -cE 'FTP command: .*"(PORT|EPSV|EPRT)' <<<"$since" || true)
sessions=$(grep -c 'CONNECT: Client' <<<"$since" || true)
if ((rc == 0)) && [[ -z $bad ]] && ((pasvs == n && others == 0 && sessions == 1)); then
    ok "lftp passive: one session, $n PASV transfers, all identical"
else
    not_ok "lftp passive: one session, $n PASV transfers, all identical" \
        "lftp exit $rc; ${bad:-files ok}; vsftpd saw $sessions sessions, $pasvs PASVs, $others other data commands"
fi
offl[lftp-passive]=$(okfail "$rc" "$bad")

# --- 3: ten sessions in parallel ---------------------------------------------------------------------
run_parallel offloadd offl

# --- 4: the kernel's table holds none of it; offloadd's does -------------------------------------------
ours=$(h_ctl conntrack list)
theirs=$({ ip netns exec "$R" conntrack -L && ip netns exec "$R" conntrack -L -f ipv6; } 2>/dev/null || true)
leaked=$(grep -cE "src=($LAB_LAN4_CLIENT|$LAB_LAN6_CLIENT) " <<<"$theirs" || true)
if ((leaked == 0)); then
    ok "kernel conntrack (IPv4 and IPv6) in the router holds none of the client's flows"
else
    not_ok "kernel conntrack (IPv4 and IPv6) in the router holds none of the client's flows" "$leaked entries: $(grep -E "src=($LAB_LAN4_CLIENT|$LAB_LAN6_CLIENT) " <<<"$theirs" | head -3)"
fi
ctrl4=$(grep -cE "^ipv4 .* src=$LAB_LAN4_CLIENT dst=$LAB_WAN4_SERVER sport=[0-9]+ dport=21 .*helper=ftp" <<<"$ours" || true)
ctrl6=$(grep -cE "^ipv6 .* src=$LAB_LAN6_CLIENT dst=$LAB_WAN6_SERVER sport=[0-9]+ dport=21 .*helper=ftp" <<<"$ours" || true)
# The original direction is the first tuple of a line (a data connection's master= names its control one).
nohelper=$(grep -E "^ipv[46] +[0-9]+ tcp +6 +[0-9]+ [A-Z_]+ src=($LAB_LAN4_CLIENT|$LAB_LAN6_CLIENT) dst=[^ ]+ sport=[0-9]+ dport=21 " <<<"$ours" |
    grep -vc 'helper=ftp' || true)
data=$(grep -cE "master=src=($LAB_LAN4_CLIENT|$LAB_LAN6_CLIENT) " <<<"$ours" || true)
# The ten parallel sessions alone: 8 IPv4 and 2 IPv6 control connections, one data connection each.
if ((ctrl4 >= 8 && ctrl6 >= 2 && nohelper == 0 && data >= 10)); then
    ok "offloadctl conntrack list shows the client's control connections with helper=ftp and their data connections"
else
    not_ok "offloadctl conntrack list shows the client's control connections with helper=ftp and their data connections" \
        "IPv4 control $ctrl4, IPv6 control $ctrl6, control without helper $nohelper, data (master=) $data"
fi
info "offloadd tracks $(wc -l <<<"$ours") connections; the kernel's table holds $(grep -c . <<<"$theirs" || true)"

# --- 6: stats and expect list ----------------------------------------------------------------------
stats=$(h_ctl stats) && rc=0 || rc=$?
problems=""
grep -qE '^queue [0-9]+ ' <<<"$stats" || problems+="no queue lines; "
while read -r l; do
    [[ $l =~ dropped\ 0\ \(truncated\ 0,\ engine\ faults\ 0\) ]] || problems+="$l; "
done < <(grep -E '^queue [0-9]+ ' <<<"$stats")
while read -r l; do
    [[ $l =~ ENOBUFS\ 0,\ malformed\ 0,\ verdict\ errors\ 0 ]] || problems+="$l; "
done < <(grep -E 'netlink:' <<<"$stats")
while read -r l; do
    [[ $l =~ dropped\ \(queue\ full\)\ 0,\ dropped\ \(socket\ full\)\ 0 ]] || problems+="$l; "
done < <(grep -E 'kernel: queue' <<<"$stats")
drops=$(grep -E '^ +(PacketsDropped|Dropped|Malformed|Helper)[A-Za-z]* ' <<<"$stats" | tr -s ' ' | tr '\n' ';' || true)
[[ -z $drops ]] || problems+="engine: $drops"
grep -qE '^ +PayloadRewrites +[1-9]' <<<"$stats" || problems+="no PayloadRewrites; "
grep -qE '^ +ExpectationsCreated +[1-9]' <<<"$stats" || problems+="no ExpectationsCreated; "
if ((rc == 0)) && [[ -z $problems ]]; then
    ok "offloadctl stats: no drops, no ENOBUFS, no kernel queue drops, helper rewrites counted"
else
    not_ok "offloadctl stats: no drops, no ENOBUFS, no kernel queue drops, helper rewrites counted" "exit $rc; $problems"
fi
info "stats: $(grep -E '^(queue|table)' <<<"$stats" | sed 's/ (truncated.*//' | tr '\n' ';')"

# An expectation that stays: a PORT with no transfer after it, in a session that waits.
off=$(vlog_size)
lab_exec "$C" lftp -c "set net:max-retries 1; set net:timeout 10; open ftp://$LAB_WAN4_SERVER;
    quote PORT $(tr . , <<<"$LAB_LAN4_CLIENT"),200,1; sleep 3" >"$work/lftp-expect.log" 2>&1 &
held=$!
for _ in $(seq 1 100); do
    vlog_since "$off" | grep -q '"200 PORT command successful' && break
    sleep 0.05
done
expects=$(h_ctl expect list) && rc=0 || rc=$?
wait "$held" || true
line=$(grep -E "src=$LAB_WAN4_SERVER dst=$LAB_WAN4_ROUTER .*master=src=$LAB_LAN4_CLIENT dst=$LAB_WAN4_SERVER sport=[0-9]+ dport=21" <<<"$expects" || true)
if ((rc == 0)) && [[ -n $line ]]; then
    ok "offloadctl expect list shows the expectation of a PORT command"
else
    not_ok "offloadctl expect list shows the expectation of a PORT command" "exit $rc: ${expects:-empty}"
fi

# --- 7: reload on SIGHUP --------------------------------------------------------------------------
# A session that stays open across the reload: a PORT download before it, one after it.
off=$(vlog_size)
mkdir -p "$work/lftp-held"
lab_exec "$C" lftp -c "set net:max-retries 1; set net:timeout 10; set cmd:fail-exit yes;
    set ftp:passive-mode off; set ftp:prefer-epsv no; open ftp://$LAB_WAN4_SERVER; lcd $work/lftp-held;
    get small.bin; sleep 3; get big.bin" >"$work/lftp-held.log" 2>&1 &
held=$!
for _ in $(seq 1 100); do
    vlog_since "$off" | grep -q 'OK DOWNLOAD: .*small.bin' && break
    sleep 0.05
done
sleep 0.2
before=$(h_ctl conntrack list)
held_line=$(grep -E "^ipv4 .* ESTABLISHED src=$LAB_LAN4_CLIENT dst=$LAB_WAN4_SERVER sport=[0-9]+ dport=21 .*helper=ftp" <<<"$before" | head -1 || true)
theirs=$({ ip netns exec "$R" conntrack -L && ip netns exec "$R" conntrack -L -f ipv6; } 2>/dev/null || true)
if [[ -n $held_line ]] && ! grep -qE "src=($LAB_LAN4_CLIENT|$LAB_LAN6_CLIENT) " <<<"$theirs"; then
    ok "during a session: offloadctl lists its ESTABLISHED control connection with helper=ftp, the kernel nothing"
else
    not_ok "during a session: offloadctl lists its ESTABLISHED control connection with helper=ftp, the kernel nothing" \
        "offloadd: ${held_line:-no such line}; kernel: $(grep -cE "src=($LAB_LAN4_CLIENT|$LAB_LAN6_CLIENT) " <<<"$theirs" || true) entries"
fi
from=$(h_log_lines)
kill -HUP "$H_DAEMON_PID"
reloaded=$(h_wait_log "$from" 'Reloaded |Reload of .* failed' 10 || true)
after=$(h_ctl conntrack list)
n_before=$(grep -c . <<<"$before" || true)
n_after=$(grep -c . <<<"$after" || true)
kept=$(sed -nE 's/.*; ([0-9]+) tracked connections kept.*/\1/p' <<<"$reloaded")
held_tuple=$(grep -oE "src=$LAB_LAN4_CLIENT dst=$LAB_WAN4_SERVER sport=[0-9]+ dport=21 " <<<"$held_line" || echo none)
if [[ $reloaded == *"Reloaded "* ]] && ((n_before == n_after)) && [[ $kept == "$n_before" ]] && grep -qF -- "$held_tuple" <<<"$after"; then
    ok "SIGHUP: reload logged, $n_before connections kept (list before = after = logged count), open session still listed"
else
    not_ok "SIGHUP: reload logged, connections kept" "log: ${reloaded:-nothing}; before $n_before, after $n_after, logged ${kept:-?}; open session $(grep -cF -- "$held_tuple" <<<"$after" || true)"
fi
rc=0
wait "$held" || rc=$?
if ((rc == 0)) && cmp -s "$work/lftp-held/small.bin" "$ftp_root/small.bin" && cmp -s "$work/lftp-held/big.bin" "$ftp_root/big.bin"; then
    ok "SIGHUP: the session open across the reload completes its next PORT transfer, identical"
else
    not_ok "SIGHUP: the session open across the reload completes its next PORT transfer, identical" "lftp exit $rc: $(tail -n 2 "$work/lftp-held.log" | tr '\n' ' ')"
fi
why=$(get_mode ipv4-port big.bin "$work/after-reload.bin")
if [[ -z $why ]]; then ok "SIGHUP: a new PORT transfer after the reload works"; else not_ok "SIGHUP: a new PORT transfer after the reload works" "$why"; fi

# A broken configuration: the reload fails, says where, and the daemon keeps its configuration.
cp "$cfg" "$work/offloadd.yaml.good"
echo "no-such-key: 1" >>"$cfg"
bad_line=$(wc -l <"$cfg")
from=$(h_log_lines)
kill -HUP "$H_DAEMON_PID"
failed_line=$(h_wait_log "$from" 'Reloaded |Reload of .* failed' 10 || true)
if [[ $failed_line == *"Reload of $cfg failed"* && $failed_line == *"$cfg:$bad_line:1:"* ]]; then
    ok "SIGHUP with a broken config: reload failed is logged with file:line:column"
else
    not_ok "SIGHUP with a broken config: reload failed is logged with file:line:column" "log: ${failed_line:-nothing}"
fi
why=$(get_mode ipv6-eprt big.bin "$work/after-bad-reload.bin")
why+=$(get_mode ipv4-port big.bin "$work/after-bad-reload4.bin")
if [[ -z $why ]] && h_daemon_alive; then
    ok "SIGHUP with a broken config: the daemon keeps working (IPv6 EPRT and IPv4 PORT transfers identical)"
else
    not_ok "SIGHUP with a broken config: the daemon keeps working" "${why:-daemon gone}"
fi
cp "$work/offloadd.yaml.good" "$cfg"
from=$(h_log_lines)
kill -HUP "$H_DAEMON_PID"
restored=$(h_wait_log "$from" 'Reloaded |Reload of .* failed' 10 || true)
if [[ $restored == *"Reloaded "* ]]; then
    ok "SIGHUP after restoring the config: reloaded"
else
    not_ok "SIGHUP after restoring the config: reloaded" "log: ${restored:-nothing}"
fi

# --- no un-NATed packet left by wan0 while offloadd ran --------------------------------------------------
h_capture_stop >/dev/null || true
leaks=$(h_count "$work/wan0-offloadd.pcapng" "$leak_filter")
natted=$(h_count "$work/wan0-offloadd.pcapng" "$nat_filter && tcp")
if ((leaks == 0 && natted > 1000)); then
    ok "wan0 capture while offloadd ran: $natted TCP packets from the router's addresses, none from the client's"
else
    not_ok "wan0 capture while offloadd ran: nothing from the client's addresses" "$leaks packets from the client's addresses, $natted NATed TCP packets"
fi

# Log: nothing went wrong besides the reload we broke on purpose.
bad_log=$(grep -E '\[(WRN|ERR|FTL)\]' "$H_DAEMON_LOG" | grep -v 'Reload of .* failed' || true)
if [[ -z $bad_log ]]; then
    ok "offloadd log: no warnings or errors (besides the broken reload)"
else
    not_ok "offloadd log: no warnings or errors (besides the broken reload)" "$(head -n 3 <<<"$bad_log" | tr '\n' ' ')"
fi

# --- SIGTERM removes the daemon's rules ---------------------------------------------------------------
h_daemon_stop
left=$(rules_in_router)
if [[ $H_DAEMON_RC == 0 && -z $left ]] && grep -q 'Steering rules removed' "$H_DAEMON_LOG"; then
    ok "SIGTERM: offloadd exits 0 and removes its steering rules"
else
    not_ok "SIGTERM: offloadd exits 0 and removes its steering rules" "exit $H_DAEMON_RC; $(grep -c . <<<"$left" || true) OFFLOAD lines left"
fi

# ===================================================================================================
# 8. Fail closed: rules applied by hand, daemon killed with SIGKILL in the middle of slow transfers.
# ===================================================================================================

if h_ctl_in "$R" rules apply --config "$cfg" && [[ -n $(rules_in_router) ]]; then
    ok "offloadctl rules apply (in the router) loads the steering rules"
else
    not_ok "offloadctl rules apply (in the router) loads the steering rules" "$(rules_in_router | wc -l) OFFLOAD lines"
fi
h_daemon_start "$R" "$cfg" || h_die "offloadd (without --apply-rules) did not become ready: $(tail -n 20 "$H_DAEMON_LOG")"
# A small receive buffer in the client, so the server cannot have sent the whole file before the kill
# (what already sits in the client's buffer would still be read at the limited rate).
lab_exec "$C" sysctl -q -w net.ipv4.tcp_rmem="4096 16384 16384"
h_capture_start "$R" wan0 "$work/wan0-killed.pcapng"
slow=(--limit-rate 50k --speed-time 4 --speed-limit 1)
ftp_curl ipv4-port big.bin "$work/slow4.bin" -o "$work/slow4.bin" "${slow[@]}" &
slow4=$!
ftp_curl ipv6-epsv big.bin "$work/slow6.bin" -o "$work/slow6.bin" "${slow[@]}" &
slow6=$!
for _ in $(seq 1 100); do
    (($(stat -c %s "$work/slow4.bin" 2>/dev/null || echo 0) >= 40000 &&
        $(stat -c %s "$work/slow6.bin" 2>/dev/null || echo 0) >= 40000)) && break
    sleep 0.05
done
size4=$(stat -c %s "$work/slow4.bin" 2>/dev/null || echo 0)
size6=$(stat -c %s "$work/slow6.bin" 2>/dev/null || echo 0)
counted() { ip netns exec "$R" "$1" -w -t mangle -L OFFLOAD-POST -v -x -n | awk '/NFQUEUE/ { n += $1 } END { print n + 0 }'; }
steered_before=$(($(counted iptables) + $(counted ip6tables)))
h_daemon_kill
killed_at=$(date +%s.%N)
info "SIGKILL with $size4 (IPv4 PORT) and $size6 (IPv6 EPSV) of 204800 bytes received"
# A new connection after the kill must not get out either.
rc=0
ftp_curl ipv4-pasv tiny.bin "$work/after-kill.bin" -o "$work/after-kill.bin" --connect-timeout 3 --max-time 5 || rc=$?
rc4=0 rc6=0
wait "$slow4" || rc4=$?
wait "$slow6" || rc6=$?
steered_after=$(($(counted iptables) + $(counted ip6tables)))
h_capture_stop >/dev/null || true
if ((rc4 != 0 && rc6 != 0 && rc != 0)) && ! cmp -s "$work/slow4.bin" "$ftp_root/big.bin" && ! cmp -s "$work/slow6.bin" "$ftp_root/big.bin"; then
    ok "fail closed: after SIGKILL the slow transfers cannot complete and a new session cannot start (curl exits $rc4, $rc6, $rc)"
else
    not_ok "fail closed: after SIGKILL the transfers cannot complete" "curl exits $rc4 (IPv4, $(stat -c %s "$work/slow4.bin") bytes), $rc6 (IPv6, $(stat -c %s "$work/slow6.bin") bytes), new session $rc"
fi
leaks=$(h_count "$work/wan0-killed.pcapng" "$leak_filter")
natted=$(h_count "$work/wan0-killed.pcapng" "$nat_filter && tcp")
late=$(h_count "$work/wan0-killed.pcapng" "($nat_filter) && tcp && frame.time_epoch > $killed_at")
if ((leaks == 0 && natted > 0 && steered_after > steered_before)); then
    ok "fail closed: no packet from the client's addresses left by wan0 (the client's $((steered_after - steered_before)) packets after the kill hit the queue rules)"
else
    not_ok "fail closed: no packet from the client's addresses left by wan0" "$leaks leaked, $natted NATed, queue rule hits after the kill $((steered_after - steered_before))"
fi
info "wan0 after the kill: $late packets from the router's addresses (expected 0: nothing passes a queue nobody reads)"
if h_ctl_in "$R" rules remove && [[ -z $(rules_in_router) ]]; then
    ok "offloadctl rules remove: iptables-save and ip6tables-save show no OFFLOAD chains"
else
    not_ok "offloadctl rules remove: iptables-save and ip6tables-save show no OFFLOAD chains" "$(rules_in_router | head -3 | tr '\n' ' ')"
fi
rm -f "$H_DAEMON_SOCK"

# ===================================================================================================
# 10. The same traffic through the kernel's MASQUERADE and ftp helper, in a fresh lab.
# ===================================================================================================

lab_up "$sfx" 2>/dev/null
lab_kernel_ftp_nat "$sfx"
lab_vsftpd_uploads "$sfx" 2>/dev/null
ftp_root=$(lab_ftp_root "$sfx")
vlog=$(lab_tmp "$sfx")/vsftpd.log
run_modes kernel kern
rc=0
lftp_session "set ftp:passive-mode off; set ftp:prefer-epsv no" "$work/kernel-lftp-active" || rc=$?
bad=$(check_lftp_dir "$work/kernel-lftp-active")
kern[lftp-active]=$(okfail "$rc" "$bad")
rc=0
lftp_session "set ftp:passive-mode on; set ftp:prefer-epsv no" "$work/kernel-lftp-passive" || rc=$?
bad=$(check_lftp_dir "$work/kernel-lftp-passive")
kern[lftp-passive]=$(okfail "$rc" "$bad")
for k in lftp-active lftp-passive; do
    if [[ ${kern[$k]} == ok ]]; then ok "kernel: $k session, all files identical"; else not_ok "kernel: $k session, all files identical" "see $work/kernel-$k.log"; fi
done
run_parallel kernel kern

info "side by side          offloadd   kernel (MASQUERADE + ftp helper)"
for k in "${modes[@]/#/get-}" "${modes[@]/#/put-}" lftp-active lftp-passive parallel parallel-seconds; do
    printf '# %-20s  %-9s  %s\n' "$k" "${offl[$k]:-?}" "${kern[$k]:-?}"
done
info "elapsed: ${SECONDS}s"
h_finish

#!/usr/bin/env bash
# offloadd restarted in the middle of transfers (issue 11): FTP in four modes (IPv4 active and passive, IPv6 active
# and passive; downloads and uploads, two of them with a second transfer on the same control connection after the
# restarts) and a long TCP stream, all through offloadd in the lab's router (flows: all, MASQUERADE, the FTP helper),
# rate-limited so that they outlive two restarts: a clean stop (SIGTERM) and start, then SIGKILL and start. Every
# transfer must complete byte-identical, and the WAN capture must hold no packet with the client's private address
# and no reset: the steering rules stay while the daemon is down, so its flows wait (TCP retransmits) instead of
# leaking, and the new daemon carries on with the state the old one saved. Then a corrupt, a truncated and a foreign
# snapshot: each refused, counted, and the daemon starts with an empty table.
#
# Output and environment: tests/lab/harness.sh (LAB_SUFFIX, default -rs; KEEP_WORK=1). SHARDS=N runs offloadd with N
# engine shards (a snapshot per shard, each restored into its shard), without the bad snapshots. RESHARD="A B" (with
# SHARDS) changes the number of shards at the restarts: A shards after the SIGTERM, B after the SIGKILL; the snapshots
# of the shards there were are dealt out to the shards there are (every connection saved is restored, the files of
# shards gone are removed) and the transfers still complete intact.
# Usage: tests/lab/e2e-restart.sh   (as root; builds the Release binaries if they are missing)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"
# shellcheck source=tests/lab/transfers.sh
. "$here/transfers.sh"

sfx=${LAB_SUFFIX--rs}
h_init ol-restart
h_need_root_and_tools ip iptables-save ip6tables-save vsftpd curl dumpcap tshark python3 dotnet cmp
h_build
h_on_exit "lab_down '$sfx'"
h_on_exit "ip netns exec '$(lab_ns router "$sfx")' dotnet '$H_OFFLOADCTL' rules remove"
h_on_exit 'jobs -p | xargs -r kill'

C=$(lab_ns client "$sfx")
R=$(lab_ns router "$sfx")
cfg=$H_WORK/offloadd.yaml
state=$H_WORK/state # offloadd's default: beside its control socket
dlog=$H_WORK/offloadd.log
started_at=0

# start_daemon : offloadd in the router, a checkpoint every second; started_at is where this run's log begins.
start_daemon() {
    started_at=0
    [[ ! -f $dlog ]] || started_at=$(wc -l <"$dlog")
    h_daemon_start "$R" "$cfg" --apply-rules --checkpoint 1
}

queue_rules() { { ip netns exec "$R" iptables-save && ip netns exec "$R" ip6tables-save; } | grep -c -- '-j NFQUEUE' || true; }

# restored_line : this run's "State restored" or "refused" log line, if any.
restored_line() { tail -n +"$((started_at + 1))" "$dlog" | grep -E -m1 'State (restored|snapshot .* refused)' || true; }

# --- the lab ------------------------------------------------------------------------------------------

lab_up "$sfx" 2>/dev/null
lab_vsftpd_uploads "$sfx" 2>/dev/null
SHARDS=${SHARDS:-1}
read -r -a reshard <<<"${RESHARD:-}"
((${#reshard[@]} == 0 || (${#reshard[@]} == 2 && SHARDS > 1))) || h_die "RESHARD takes two numbers of shards, with SHARDS"

# set_shards N : the configuration for N engine shards (queues pre 0..N-1, post N..2N-1); $shards is N.
set_shards() {
    shards=$1
    cp "$here/offloadd.yaml" "$cfg"
    if ((shards > 1)); then
        sed -i "s/^  queue-post: 1\$/  queue-post: $shards\n  shards: $shards/" "$cfg"
        grep -q "shards: $shards" "$cfg" || h_die "could not give $cfg $shards shards"
    fi
}
set_shards "$SHARDS"

start_daemon || h_die "offloadd did not become ready: $(tail -n 20 "$dlog")"
h_capture_start "$R" wan0 "$H_WORK/wan0.pcapng"

# --- transfers that outlive two restarts -----------------------------------------------------------------

tr_start "$sfx" "$H_WORK" || h_die "the transfers did not start"

# restart KIND [N] : stop the daemon (SIGTERM or SIGKILL) while every transfer runs, check the rules stayed, start it
# (with N shards: the snapshots of the shards before dealt out to N).
restart() {
    local kind=$1 to=${2:-} rules restored n from saved expired dealt stale f
    sleep 3
    h_result "$kind: every transfer is still running when offloadd goes down" \
        "$(tr_all_running || echo "some ended already: the restart proves nothing for them")"
    from=$(wc -l <"$dlog")
    if [[ $kind == SIGTERM ]]; then h_daemon_stop; else sleep 0.5; h_daemon_kill; fi
    rules=$(queue_rules)
    h_result "$kind: the steering rules stay while offloadd is down: its flows wait, they do not leak" \
        "$( ((rules > 0)) || echo "no NFQUEUE rule left")"
    # The connections the stop saved, all shards together (none logged after a SIGKILL).
    saved=$(tail -n +"$((from + 1))" "$dlog" | { grep -E 'State saved to' || true; } | { grep -oE 'stop: [0-9]+ connections' || true; } |
        awk '{ s += $2 } END { print s + 0 }')
    local before=$shards
    [[ -z $to ]] || set_shards "$to"
    start_daemon || h_die "offloadd did not become ready after $kind: $(tail -n 20 "$dlog")"
    restored=$(restored_line)
    info "after $kind: ${restored#*\] }"
    # With several shards, a line per shard: the connections of all of them.
    n=$(tail -n +"$((started_at + 1))" "$dlog" | grep -E 'State restored' |
        sed -n 's/.*: \([0-9]*\) connections, [0-9]* expectations.*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
    h_result "$kind: offloadd starts with the state it had (${n:-no} connections restored)" \
        "$([[ $restored == *'State restored'* ]] && ((${n:-0} >= 7)) || echo "${restored:-no restore logged}")"
    [[ -n $to ]] || return 0

    dealt=$(tail -n +"$((started_at + 1))" "$dlog" | grep -E -m1 'State snapshots of the shards dealt out' || true)
    info "$before -> $to shards: ${dealt#*\] }"
    h_result "$kind, $before -> $to shards: the $before shards' snapshots are dealt out to $to" \
        "$([[ $dealt == *"$before snapshots ("*") dealt to $to shards"* ]] || echo "${dealt:-no such line}")"
    if [[ $kind == SIGTERM ]]; then
        expired=$(tail -n +"$((started_at + 1))" "$dlog" | { grep -oE 'State restored.*expired while down [0-9]+' || true; } |
            awk '{ s += $NF } END { print s + 0 }')
        h_result "$kind, $before -> $to shards: every connection saved is restored ($saved saved, $n restored, $expired expired while down)" \
            "$( ((saved >= 7 && n + expired == saved)) || echo "saved $saved, restored $n, expired $expired")"
    fi
    stale=$(for ((i = 0; i < 8; i++)); do
        f=$state
        ((i == 0)) || f=$state.$i
        if ((i < to)); then [[ -s $f ]] || echo -n "no $f; "; elif [[ -e $f ]]; then echo -n "$f left; "; fi
    done)
    h_result "$kind, $before -> $to shards: the new layout is saved at once, the files of shards gone removed" "$stale"
}

if ((${#reshard[@]} > 0)); then
    restart SIGTERM "${reshard[0]}"
    restart SIGKILL "${reshard[1]}"
else
    restart SIGTERM
    restart SIGKILL
fi

stats=$(h_ctl stats || true)
h_result "offloadctl stats shows what was restored, FTP helper states included" \
    "$(grep -qE 'state: restored at start: (shard 0: )?[0-9]* connections' <<<"$stats" && grep -q 'helper states restored [1-9]' <<<"$stats" ||
        grep -A2 '^state:' <<<"$stats")"

# --- every transfer completes intact ---------------------------------------------------------------------

tr_wait
for k in "${TR_KEYS[@]}"; do
    h_result "${TR_WHAT[$k]}: complete and byte-identical across both restarts" "$(tr_intact "$k")"
done

h_capture_stop >/dev/null
h_wan_clean "wan0 across both restarts" "$H_WORK/wan0.pcapng" "ip.src==$LAB_WAN4_ROUTER || ipv6.src==$LAB_WAN6_ROUTER" 1000 \
    "$LAB_LAN4_PREFIX" "$LAB_LAN6_PREFIX"

# --- bad snapshots: refused, counted, an empty table -----------------------------------------------------

# fresh_session FILE : why a new FTP download (IPv4 passive) failed, nothing when it worked.
fresh_session() {
    if ! lab_exec "$C" curl -sS --max-time 30 --connect-timeout 10 --disable-epsv "ftp://$LAB_WAN4_SERVER/small.bin" -o "$1" 2>/dev/null ||
        ! cmp -s "$1" "$(lab_ftp_root "$sfx")/small.bin"; then
        echo "the download failed or differs"
    fi
}

h_daemon_stop
[[ -s $state ]] || not_ok "a clean stop writes the snapshot" "no $state"
if ((SHARDS > 1)); then
    h_result "a clean stop writes a snapshot per shard" "$(for ((i = 1; i < shards; i++)); do [[ -s $state.$i ]] || echo "no $state.$i"; done)"
    h_result "offloadd log: no warnings or errors" "$(h_daemon_log_problems | head -n 3)"
    h_finish
    exit
fi
for damage in corrupt truncated foreign; do
    case $damage in
    corrupt) printf '\xff' | dd of="$state" bs=1 seek=$(($(stat -c %s "$state") / 2)) conv=notrunc status=none ;;
    truncated) truncate -s $(($(stat -c %s "$state") / 2)) "$state" ;;
    foreign) head -c 4096 /dev/urandom >"$state" ;;
    esac
    start_daemon || h_die "offloadd did not start after a $damage snapshot: $(tail -n 20 "$dlog")"
    line=$(restored_line)
    table=$(h_ctl conntrack list | grep -c . || true)
    stats=$(h_ctl stats || true)
    h_result "a $damage snapshot is refused and counted; offloadd starts with an empty table" \
        "$([[ $line == *"refused ($damage)"* ]] && ((table == 0)) && grep -q 'snapshots refused 1' <<<"$stats" ||
            echo "log: ${line:-none}; $table connections; $(grep refused <<<"$stats" | head -1)")"
    # And it works: a new session through the fresh table, which the next stop saves for the next damage.
    h_result "after a $damage snapshot a new FTP session goes through" "$(fresh_session "$H_WORK/after-$damage.bin")"
    h_daemon_stop
done

h_result "offloadd log: no warnings or errors besides the refused snapshots" \
    "$(h_daemon_log_problems | grep -v 'State snapshot .* refused' | head -n 3)"
h_finish

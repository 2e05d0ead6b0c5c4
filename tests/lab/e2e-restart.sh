#!/usr/bin/env bash
# offloadd restarted in the middle of transfers (issue 11): FTP in four modes (IPv4 active and passive, IPv6 active
# and passive; downloads and uploads, two of them with a second transfer on the same control connection after the
# restarts) and a long TCP stream, all through offloadd in the lab's router (flows: all, MASQUERADE, the FTP helper),
# rate-limited so that they outlive two restarts: a clean stop (SIGTERM) and start, then SIGKILL and start. Every
# transfer must complete byte-identical, and the WAN capture must hold no packet with the client's private address:
# the steering rules stay while the daemon is down, so its flows wait (TCP retransmits) instead of leaking. Then a
# corrupt, a truncated and a foreign snapshot: each refused, counted, and the daemon starts with an empty table.
#
# Prints one line per check, "ok - what" or "not ok - what: details" (lines starting with "# " are information), and
# ends with "N passed, N failed"; exits non-zero if any check failed.
#
# Usage: tests/lab/e2e-restart.sh   (as root; builds the Release binaries if they are missing)
# Environment: LAB_SUFFIX (default -rs), KEEP_WORK=1 keeps the work directory (logs, captures, snapshots).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"

sfx=${LAB_SUFFIX--rs}
offloadd=$repo/daemon/Offload.Daemon/bin/Release/net10.0/offloadd.dll
offloadctl=$repo/daemon/Offload.Ctl/bin/Release/net10.0/offloadctl.dll

passed=0
failed=0
finished=0
err_line=
work=
daemon_pid=
dumpcap_pid=
C='' R='' S=''

ok() {
    passed=$((passed + 1))
    echo "ok - $1"
}

not_ok() {
    failed=$((failed + 1))
    echo "not ok - $1: $2"
}

info() { echo "# $*"; }

die() {
    echo "e2e-restart: $*" >&2
    exit 1
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    [[ -n $dumpcap_pid ]] && kill -INT "$dumpcap_pid" 2>/dev/null && wait "$dumpcap_pid" 2>/dev/null
    if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -KILL "$daemon_pid" 2>/dev/null
        wait "$daemon_pid" 2>/dev/null
    fi
    jobs -p | xargs -r kill 2>/dev/null
    lab_down "$sfx" >/dev/null 2>&1
    if ((failed > 0 || !finished)) && [[ -s ${dlog-} ]]; then
        tail -n 15 "$dlog" | sed 's/^/# offloadd: /'
    fi
    if [[ -n $work ]]; then
        if [[ ${KEEP_WORK:-} == 1 ]]; then
            echo "e2e-restart: work directory kept: $work" >&2
        else
            rm -rf -- "$work"
        fi
    fi
    if ((!finished)); then
        not_ok "the test ran to its end" "aborted (exit $rc${err_line:+, line $err_line})"
    fi
    echo "$passed passed, $failed failed"
    if ((failed > 0)); then exit 1; fi
    exit 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'err_line=$LINENO' ERR

for tool in ip iptables-save ip6tables-save vsftpd curl dumpcap tshark python3 dotnet cmp; do
    command -v "$tool" >/dev/null || die "missing tool '$tool' (install tests/lab/packages.txt)"
done
((EUID == 0)) || die "must run as root (network namespaces)"
if [[ ! -f $offloadd || ! -f $offloadctl ]]; then
    echo "e2e-restart: building the Release binaries" >&2
    dotnet build "$repo/Offload.sln" -c Release --nologo -v quiet >&2 || die "build failed"
fi

work=$(mktemp -d /tmp/ol-restart.XXXXXX)
C=$(lab_ns client "$sfx")
R=$(lab_ns router "$sfx")
S=$(lab_ns server "$sfx")
cfg=$work/offloadd.yaml
sock=$work/offloadd.sock
state=$work/state
dlog=$work/offloadd.log
: >"$dlog"

ctl() { timeout 20 dotnet "$offloadctl" "$@" --socket "$sock"; }
log_lines() { wc -l <"$dlog"; }

# wait_log FROM_LINE REGEX [TIMEOUT_S] : the first line of the daemon's log after FROM_LINE matching REGEX.
wait_log() {
    local from=$1 regex=$2 timeout=${3:-30} deadline line
    deadline=$((SECONDS + timeout))
    while :; do
        line=$(tail -n +"$((from + 1))" "$dlog" | grep -E -m1 -- "$regex" || true)
        [[ -n $line ]] && { printf '%s\n' "$line"; return 0; }
        [[ -n $daemon_pid ]] && ! kill -0 "$daemon_pid" 2>/dev/null && return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}

# start_daemon : offloadd in the router (checkpoint every second); sets started_at (log line) once it is ready.
started_at=
start_daemon() {
    started_at=$(log_lines)
    ip netns exec "$R" dotnet "$offloadd" --config "$cfg" --socket "$sock" --state "$state" --checkpoint 1 \
        --apply-rules </dev/null >>"$dlog" 2>&1 &
    daemon_pid=$!
    wait_log "$started_at" '\] Ready: ' 40 >/dev/null
}

stop_daemon() { # SIGTERM, and wait for the exit
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || true
    daemon_pid=
}

kill_daemon() {
    kill -KILL "$daemon_pid"
    wait "$daemon_pid" 2>/dev/null || true
    daemon_pid=
}

rules_in_router() { { ip netns exec "$R" iptables-save && ip netns exec "$R" ip6tables-save; } | grep -c -- '-j NFQUEUE' || true; }

# restored_line : the daemon's "State restored" or "refused" line of the current run, if any.
restored_line() { tail -n +"$((started_at + 1))" "$dlog" | grep -E -m1 'State (restored|snapshot .* refused)' || true; }

# --- the lab ------------------------------------------------------------------------------------------

lab_up "$sfx" 2>/dev/null
lab_vsftpd_uploads "$sfx" 2>/dev/null
ftp_root=$(lab_ftp_root "$sfx")
head -c 614400 /dev/urandom >"$ftp_root/long.bin"
chmod 0644 "$ftp_root/long.bin"
cp "$here/offloadd.yaml" "$cfg"
# A small receive buffer in the client: the server cannot send a download ahead into it before a restart.
lab_exec "$C" sysctl -q -w net.ipv4.tcp_rmem="4096 16384 16384"
lab_exec "$C" sysctl -q -w net.ipv4.tcp_wmem="4096 16384 16384"

start_daemon || die "offloadd did not become ready: $(tail -n 20 "$dlog")"
line=$(restored_line)
[[ $line == *'No state snapshot'* || -z $line ]] || info "first start: $line"

: >"$work/wan0.log"
ip netns exec "$R" dumpcap -q -p -s 128 -i wan0 -w "$work/wan0.pcapng" </dev/null >"$work/wan0.log" 2>&1 &
dumpcap_pid=$!
lab_wait_capture "$R" 1 || die "dumpcap is not capturing: $(cat "$work/wan0.log")"

# --- transfers that outlive two restarts -----------------------------------------------------------------

slow=(--limit-rate 40k --max-time 100 --connect-timeout 10)
curl_in_client() { lab_exec "$C" curl -sS -g "${slow[@]}" "$@"; }
h4=$LAB_WAN4_SERVER
h6="[$LAB_WAN6_SERVER]"
declare -A pid what
# Two transfers on one control connection: the second PORT/EPRT goes out after both restarts, so it needs the
# sequence offsets of the first rewrite and the helper's newline positions back from the snapshot.
curl_in_client -P - --disable-eprt "ftp://$h4/long.bin" -o "$work/port4.bin" "ftp://$h4/small.bin" -o "$work/port4-small.bin" 2>"$work/port4.err" &
pid[port4]=$!
what[port4]="IPv4 active (PORT) download of long.bin, then small.bin on the same control connection"
curl_in_client -P - "ftp://$h6/long.bin" -o "$work/eprt6.bin" "ftp://$h6/small.bin" -o "$work/eprt6-small.bin" 2>"$work/eprt6.err" &
pid[eprt6]=$!
what[eprt6]="IPv6 active (EPRT) download of long.bin, then small.bin on the same control connection"
curl_in_client --disable-epsv -T "$ftp_root/long.bin" "ftp://$h4/incoming/pasv4.bin" 2>"$work/pasv4.err" &
pid[pasv4]=$!
what[pasv4]="IPv4 passive (PASV) upload of long.bin"
curl_in_client -T "$ftp_root/long.bin" "ftp://$h6/incoming/epsv6.bin" 2>"$work/epsv6.err" &
pid[epsv6]=$!
what[epsv6]="IPv6 passive (EPSV) upload of long.bin"

# The long stream: 1.5 MB at 60 kB/s from the client to a server that hashes what it receives.
lab_exec "$S" python3 - "$LAB_WAN4_SERVER" 5001 "$work/stream.received" <<'EOF' &
import hashlib, socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
conn, _ = server.accept()
digest, total = hashlib.sha256(), 0
while data := conn.recv(65536):
    digest.update(data)
    total += len(data)
with open(sys.argv[3], "w") as out:
    out.write(f"{total} {digest.hexdigest()}\n")
conn.close()
EOF
stream_server=$!
lab_wait_port "$S" 5001 10 || die "the stream's server did not listen"
lab_exec "$C" python3 - "$LAB_WAN4_SERVER" 5001 "$work/stream.sent" <<'EOF' &
import hashlib, random, socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=90)
source, digest, sent, start = random.Random(11), hashlib.sha256(), 0, time.monotonic()
while sent < 1_500_000:
    chunk = source.randbytes(4096)
    conn.sendall(chunk)
    digest.update(chunk)
    sent += len(chunk)
    time.sleep(max(0.0, sent / 60_000 - (time.monotonic() - start)))
conn.shutdown(socket.SHUT_WR)
conn.recv(1)
with open(sys.argv[3], "w") as out:
    out.write(f"{sent} {digest.hexdigest()}\n")
EOF
pid[stream]=$!
what[stream]="a long TCP stream (1.5 MB, client to server)"

all_running() {
    local k
    for k in "${!pid[@]}"; do kill -0 "${pid[$k]}" 2>/dev/null || return 1; done
}

# restart KIND : stop the daemon (SIGTERM or SIGKILL) while every transfer runs, check the rules stayed, start it.
restart() {
    local kind=$1 rules restored
    sleep 3
    if all_running; then
        ok "$kind: every transfer is still running when offloadd goes down"
    else
        not_ok "$kind: every transfer is still running when offloadd goes down" "some ended already: the restart proves nothing for them"
    fi
    if [[ $kind == SIGTERM ]]; then stop_daemon; else sleep 0.5; kill_daemon; fi
    rules=$(rules_in_router)
    if ((rules > 0)); then
        ok "$kind: the steering rules stay while offloadd is down ($rules queue rules): its flows wait, they do not leak"
    else
        not_ok "$kind: the steering rules stay while offloadd is down" "no NFQUEUE rule left"
    fi
    start_daemon || die "offloadd did not become ready after $kind: $(tail -n 20 "$dlog")"
    restored=$(restored_line)
    info "after $kind: ${restored#*\] }"
    n=$(sed -n 's/.*: \([0-9]*\) connections, \([0-9]*\) expectations.*/\1/p' <<<"$restored")
    if [[ $restored == *'State restored'* ]] && ((${n:-0} >= 7)); then
        ok "$kind: offloadd starts with the state it had (${n} connections restored)"
    else
        not_ok "$kind: offloadd starts with the state it had" "${restored:-no restore logged}"
    fi
}

restart SIGTERM
restart SIGKILL

stats=$(ctl stats || true)
if grep -q 'state: restored at start: [0-9]* connections' <<<"$stats" && grep -q 'helper states restored [1-9]' <<<"$stats"; then
    ok "offloadctl stats shows what was restored, FTP helper states included"
else
    not_ok "offloadctl stats shows what was restored, FTP helper states included" "$(grep -A2 '^state:' <<<"$stats" | tr '\n' ' ')"
fi

# --- every transfer completes intact ---------------------------------------------------------------------

for k in port4 eprt6 pasv4 epsv6 stream; do
    rc=0
    wait "${pid[$k]}" || rc=$?
    case $k in
    port4 | eprt6) cmp -s "$work/$k.bin" "$ftp_root/long.bin" && cmp -s "$work/$k-small.bin" "$ftp_root/small.bin" || rc=${rc/#0/99} ;;
    pasv4 | epsv6) cmp -s "$ftp_root/incoming/$k.bin" "$ftp_root/long.bin" || rc=${rc/#0/99} ;;
    stream)
        wait "$stream_server" || true
        [[ -s $work/stream.sent ]] && cmp -s "$work/stream.sent" "$work/stream.received" || rc=${rc/#0/99}
        ;;
    esac
    if ((rc == 0)); then
        ok "${what[$k]}: complete and byte-identical across both restarts"
    else
        not_ok "${what[$k]}: complete and byte-identical across both restarts" "exit $rc; $(head -c 300 "$work/$k.err" 2>/dev/null) $(cat "$work/stream".* 2>/dev/null | tr '\n' ' ')"
    fi
done

kill -INT "$dumpcap_pid"
wait "$dumpcap_pid" || true
dumpcap_pid=
leaks=$(tshark -n -r "$work/wan0.pcapng" -Y "ip.src==$LAB_LAN4_CLIENT || ipv6.src==$LAB_LAN6_CLIENT" -T fields -e frame.number 2>/dev/null | wc -l)
natted=$(tshark -n -r "$work/wan0.pcapng" -Y "tcp && (ip.src==$LAB_WAN4_ROUTER || ipv6.src==$LAB_WAN6_ROUTER)" -T fields -e frame.number 2>/dev/null | wc -l)
resets=$(tshark -n -r "$work/wan0.pcapng" -Y "tcp.flags.reset==1" -T fields -e frame.number 2>/dev/null | wc -l)
if ((leaks == 0 && natted > 1000)); then
    ok "wan0 across both restarts: no packet with the client's private address ($natted translated TCP packets)"
else
    not_ok "wan0 across both restarts: no packet with the client's private address" "$leaks leaked, $natted translated"
fi
if ((resets == 0)); then
    ok "wan0 across both restarts: no TCP reset (no flow was taken for a new one)"
else
    not_ok "wan0 across both restarts: no TCP reset" "$resets resets"
fi

# --- bad snapshots: refused, counted, an empty table -----------------------------------------------------

stop_daemon
[[ -s $state ]] || not_ok "a clean stop writes the snapshot" "no $state"
for damage in corrupt truncated foreign; do
    case $damage in
    corrupt) printf '\xff' | dd of="$state" bs=1 seek=$(($(stat -c %s "$state") / 2)) conv=notrunc status=none ;;
    truncated) truncate -s $(($(stat -c %s "$state") / 2)) "$state" ;;
    foreign) head -c 4096 /dev/urandom >"$state" ;;
    esac
    start_daemon || die "offloadd did not start after a $damage snapshot: $(tail -n 20 "$dlog")"
    line=$(restored_line)
    table=$(ctl conntrack list | grep -c . || true)
    stats=$(ctl stats || true)
    if [[ $line == *"refused ($damage)"* ]] && ((table == 0)) && grep -q 'snapshots refused 1' <<<"$stats"; then
        ok "a $damage snapshot is refused and counted; offloadd starts with an empty table"
    else
        not_ok "a $damage snapshot is refused and counted; offloadd starts with an empty table" "log: ${line:-none}; $table connections; $(grep 'refused' <<<"$stats" | head -1)"
    fi
    # And it works: a new session through the fresh table, which the next stop saves for the next damage.
    if curl_in_client --disable-epsv "ftp://$h4/small.bin" -o "$work/after-$damage.bin" 2>/dev/null &&
        cmp -s "$work/after-$damage.bin" "$ftp_root/small.bin"; then
        ok "after a $damage snapshot a new FTP session goes through"
    else
        not_ok "after a $damage snapshot a new FTP session goes through" "download failed"
    fi
    stop_daemon
done

bad_log=$(grep -E '\[(WRN|ERR|FTL)\]' "$dlog" | grep -v 'State snapshot .* refused' || true)
if [[ -z $bad_log ]]; then
    ok "offloadd log: no warnings or errors besides the refused snapshots"
else
    not_ok "offloadd log: no warnings or errors besides the refused snapshots" "$(head -n 3 <<<"$bad_log" | tr '\n' ' ')"
fi
ip netns exec "$R" dotnet "$offloadctl" rules remove >/dev/null 2>&1 || true
finished=1

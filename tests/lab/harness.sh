#!/usr/bin/env bash
# The lab scripts' shared harness: TAP-like output and counters, cleanup on every exit, offloadd started in
# a namespace with readiness, offloadctl with a timeout, and a capture with its "no private source left" check.
#
# Source it from a bash script running under `set -euo pipefail`, then call h_init once:
#
#   . "$here/harness.sh"
#   h_init my-lab                      # work directory, traps; the final line "N passed, N failed"
#                                      # (h_init my-lab /run: under /run, for a plugin offloadd must load)
#   h_on_exit "lab_down $sfx"          # cleanup steps, run last-registered first
#   h_build                            # the Release binaries, built if missing: $H_OFFLOADD, $H_OFFLOADCTL
#   h_daemon_start "$ns" "$cfg" --apply-rules || h_die "offloadd did not start"
#   h_ctl stats
#   from=$(h_log_lines); kill -HUP "$H_DAEMON_PID"; h_wait_log "$from" 'Reloaded '   # the log after a point
#   h_daemon_kill                      # SIGKILL, as a crash would (h_daemon_stop: SIGTERM)
#   h_capture_start "$ns" wan0 "$H_WORK/wan0.pcapng"
#   ...; h_capture_stop
#   n=$(h_sources_in "$H_WORK/wan0.pcapng" 192.0.2.0/24 2001:db8:1::/64)
#   h_wan_clean "wan0" "$H_WORK/wan0.pcapng" "ip.src==198.51.100.1" 100 192.0.2.0/24   # no leak, no reset
#   h_check "offloadd: NAT44 ping" ping ...     # ok / not ok from a command's exit code
#   h_finish                           # the script reached its end (otherwise: "not ok - the test ran to its end")
#
# Output: "ok - WHAT", "not ok - WHAT: WHY", "# information", and last "N passed, N failed"; the script exits
# 1 if any check failed or it did not reach h_finish. KEEP_WORK=1 keeps the work directory.

# Counters and state; plain globals so that the sourcing script can read them.
H_PASSED=0
H_FAILED=0
H_FINISHED=0
H_NAME=lab
H_WORK=
H_ERR_LINE=
H_CLEANUPS=()
H_DAEMON_PID=
H_DAEMON_NS=
H_DAEMON_LOG=
H_DAEMON_SOCK=
H_DAEMON_RC=
H_CAPTURE_PID=
H_CAPTURE_LOG=
H_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
H_OFFLOADD=$H_REPO/daemon/Offload.Daemon/bin/Release/net10.0/offloadd.dll
H_OFFLOADCTL=$H_REPO/daemon/Offload.Ctl/bin/Release/net10.0/offloadctl.dll
# offloadctl must answer within this many seconds.
H_CTL_TIMEOUT=${H_CTL_TIMEOUT:-15}

# --- reporting ---------------------------------------------------------------------------------------------

ok() {
    H_PASSED=$((H_PASSED + 1))
    echo "ok - $1"
}

# not_ok WHAT WHY : WHY on one line (newlines become " | ").
not_ok() {
    local why=${2:-failed}
    H_FAILED=$((H_FAILED + 1))
    why=${why//$'\n'/ | }
    echo "not ok - $1: $why"
}

info() { echo "# $*"; }

# h_result WHAT WHY : ok when WHY is empty, else not ok with WHY.
h_result() {
    if [[ -z ${2-} ]]; then ok "$1"; else not_ok "$1" "$2"; fi
}

# h_check WHAT CMD... : ok when CMD exits 0; else not ok with its exit code and the last lines of its output.
h_check() {
    local what=$1 out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    if ((rc == 0)); then ok "$what"; else not_ok "$what" "exit $rc: $(tail -n 3 <<<"$out")"; fi
}

h_die() {
    echo "$H_NAME: $*" >&2
    exit 1
}

# --- life cycle ----------------------------------------------------------------------------------------------

# h_on_exit CMD : run CMD (with eval, errors ignored) when the script exits, before earlier registered ones.
h_on_exit() { H_CLEANUPS+=("$1"); }

_h_exit() {
    local rc=$? i
    trap - EXIT INT TERM
    set +e
    h_capture_stop >/dev/null 2>&1
    if [[ -n $H_DAEMON_PID ]]; then
        h_daemon_stop >/dev/null 2>&1
    fi
    for ((i = ${#H_CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${H_CLEANUPS[i]}" >/dev/null 2>&1
    done
    # The daemon's last words, when something failed.
    if ((!H_FINISHED || H_FAILED > 0)) && [[ -s ${H_DAEMON_LOG-} ]]; then
        tail -n 15 "$H_DAEMON_LOG" | sed 's/^/# offloadd: /'
    fi
    if ((!H_FINISHED)); then
        not_ok "the test ran to its end" "aborted (exit $rc${H_ERR_LINE:+, line $H_ERR_LINE})"
    fi
    if [[ -n $H_WORK ]]; then
        if [[ ${KEEP_WORK:-} == 1 ]]; then
            echo "$H_NAME: work directory kept: $H_WORK" >&2
        else
            rm -rf -- "$H_WORK"
        fi
    fi
    echo "$H_PASSED passed, $H_FAILED failed"
    if ((H_FAILED > 0)); then exit 1; fi
    exit 0
}

# h_init NAME [PARENT] : the work directory ($H_WORK, under PARENT, /tmp by default) and the traps. Call once,
# early. A plugin offloadd loads must be in a directory chain only root can change (strict modes, docs/helpers.md):
# such a script passes /run (root's, 0755) under umask 022.
h_init() {
    H_NAME=$1
    H_WORK=$(mktemp -d "${2:-/tmp}/$H_NAME.XXXXXX")
    trap _h_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'H_ERR_LINE=$LINENO' ERR
}

# h_finish : the script reached its end.
h_finish() { H_FINISHED=1; }

# h_need_root_and_tools TOOL... : dies unless root and every tool is on the PATH.
h_need_root_and_tools() {
    local tool
    ((EUID == 0)) || h_die "must run as root (network namespaces)"
    for tool in "$@"; do
        command -v "$tool" >/dev/null || h_die "missing tool '$tool' (install tests/lab/packages.txt)"
    done
}

# h_build : builds the Release binaries if either is missing.
h_build() {
    if [[ ! -f $H_OFFLOADD || ! -f $H_OFFLOADCTL ]]; then
        echo "$H_NAME: building the Release binaries" >&2
        dotnet build "$H_REPO/Offload.sln" -c Release --nologo -v quiet >&2 || h_die "build failed"
    fi
}

# h_flows_config CONFIG OUT : CONFIG, whose steering section says "  flows: helpers", written to OUT with the flows
# $FLOWS asks for (helpers, the default, or all), which $H_FLOWS then holds. Dies on another value, or without that line.
h_flows_config() {
    H_FLOWS=${FLOWS:-helpers}
    [[ $H_FLOWS == helpers || $H_FLOWS == all ]] || h_die "FLOWS must be helpers or all"
    sed "s/^  flows: helpers\$/  flows: $H_FLOWS/" "$1" >"$2"
    grep -q "^  flows: $H_FLOWS\$" "$2" || h_die "no flows: line in $1"
}

# h_wait_for TIMEOUT_S CMD... : runs CMD every 50 ms until it succeeds (0) or TIMEOUT_S pass (1).
h_wait_for() {
    local timeout=$1 deadline
    shift
    deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}

# --- offloadd --------------------------------------------------------------------------------------------------

# h_daemon_start NS CONFIG [ARGS...] : offloadd in namespace NS with CONFIG, its control socket in the work
# directory ($H_DAEMON_SOCK), its log appended to $H_WORK/offloadd.log ($H_DAEMON_LOG); returns 0 once it logged
# "Ready:" (its queues are bound), 1 if it exits first or is not ready after 60 s (then it is stopped).
h_daemon_start() {
    local ns=$1 cfg=$2 from deadline
    shift 2
    H_DAEMON_NS=$ns
    H_DAEMON_LOG=$H_WORK/offloadd.log
    H_DAEMON_SOCK=$H_WORK/offloadd.sock
    touch "$H_DAEMON_LOG"
    from=$(wc -l <"$H_DAEMON_LOG")
    # `ip netns exec` and env exec in place: $! is the daemon's own pid. SIGHUP back to its default, as systemd starts
    # it: a run under nohup ignores it, and .NET then never hands it to the daemon (no reload).
    ip netns exec "$ns" env --default-signal=HUP dotnet "$H_OFFLOADD" --config "$cfg" --socket "$H_DAEMON_SOCK" "$@" \
        </dev/null >>"$H_DAEMON_LOG" 2>&1 &
    H_DAEMON_PID=$!
    deadline=$((SECONDS + 60))
    until tail -n +"$((from + 1))" "$H_DAEMON_LOG" | grep -qE '\] Ready: '; do
        if ! kill -0 "$H_DAEMON_PID" 2>/dev/null; then
            wait "$H_DAEMON_PID" 2>/dev/null || true
            H_DAEMON_PID=
            return 1
        fi
        if ((SECONDS >= deadline)); then
            h_daemon_stop
            return 1
        fi
        sleep 0.05
    done
}

# h_daemon_alive : the daemon started by h_daemon_start still runs.
h_daemon_alive() { [[ -n $H_DAEMON_PID ]] && kill -0 "$H_DAEMON_PID" 2>/dev/null; }

# h_daemon_kill : SIGKILL, as a crash would; the daemon leaves its rules and sets behind.
h_daemon_kill() {
    kill -KILL "$H_DAEMON_PID"
    wait "$H_DAEMON_PID" 2>/dev/null || true
    H_DAEMON_PID=
}

# h_daemon_stop : SIGTERM, 10 s, then SIGKILL; $H_DAEMON_RC is its exit code ("killed" if it had to be).
h_daemon_stop() {
    local pid=$H_DAEMON_PID
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        H_DAEMON_RC=killed
    else
        H_DAEMON_RC=0
        wait "$pid" 2>/dev/null || H_DAEMON_RC=$?
    fi
    H_DAEMON_PID=
}

# h_ctl ARGS... : offloadctl against the running daemon's socket, killed after $H_CTL_TIMEOUT s.
h_ctl() {
    timeout -k 2 "$H_CTL_TIMEOUT" dotnet "$H_OFFLOADCTL" "$@" --socket "$H_DAEMON_SOCK"
}

# h_ctl_in NS ARGS... : offloadctl inside namespace NS (for rules print/apply/remove), with the same timeout.
h_ctl_in() {
    local ns=$1
    shift
    timeout -k 2 "$H_CTL_TIMEOUT" ip netns exec "$ns" dotnet "$H_OFFLOADCTL" "$@"
}

# h_log_lines : how many lines the daemon's log has (a FROM for h_wait_log).
h_log_lines() { wc -l <"$H_DAEMON_LOG"; }

# h_wait_log FROM REGEX [TIMEOUT_S] : waits until the daemon's log has, after line FROM, a line matching REGEX
# (extended), and prints it. Fails after TIMEOUT_S (20), or at once if the daemon has exited.
h_wait_log() {
    local from=$1 regex=$2 deadline=$((SECONDS + ${3:-20})) line
    while :; do
        line=$(tail -n +"$((from + 1))" "$H_DAEMON_LOG" | grep -E -m1 -- "$regex" || true)
        if [[ -n $line ]]; then
            printf '%s\n' "$line"
            return 0
        fi
        if [[ -n $H_DAEMON_PID ]] && ! kill -0 "$H_DAEMON_PID" 2>/dev/null; then
            return 1
        fi
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}

# h_daemon_log_problems : the daemon's warning, error and fatal lines (nothing when none).
h_daemon_log_problems() {
    grep -E '\[(WRN|ERR|FTL)\]' "$H_DAEMON_LOG" 2>/dev/null || true
}

# --- capture ---------------------------------------------------------------------------------------------------

# h_capture_start NS IFACE FILE : dumpcap on IFACE in NS (headers only, no promiscuous mode) into FILE; returns
# once its packet socket is open.
h_capture_start() {
    local ns=$1 iface=$2 file=$3 before deadline
    H_CAPTURE_LOG=$file.log
    : >"$H_CAPTURE_LOG"
    before=$(ip netns exec "$ns" awk 'NR > 1' /proc/net/packet | wc -l)
    ip netns exec "$ns" dumpcap -q -p -B 16 -s 256 -i "$iface" -w "$file" </dev/null >"$H_CAPTURE_LOG" 2>&1 &
    H_CAPTURE_PID=$!
    deadline=$((SECONDS + 15))
    # dumpcap names its file once the interface is open; its socket shows in /proc/net/packet.
    until grep -q '^File: ' "$H_CAPTURE_LOG" &&
        (($(ip netns exec "$ns" awk 'NR > 1' /proc/net/packet | wc -l) > before)); do
        kill -0 "$H_CAPTURE_PID" 2>/dev/null || h_die "dumpcap exited early: $(cat "$H_CAPTURE_LOG")"
        ((SECONDS < deadline)) || h_die "dumpcap did not start"
        sleep 0.05
    done
    sleep 0.3
}

# h_capture_stop : SIGINT (dumpcap drains and closes its file), wait. Prints the packets dumpcap says it dropped.
h_capture_stop() {
    local pid=$H_CAPTURE_PID
    [[ -n $pid ]] || return 0
    H_CAPTURE_PID=
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # "Packets received/dropped on interface 'wan0': 9049/0 (...)"
    sed -nE "s/.*received\/dropped on interface '[^']+': [0-9]+\/([0-9]+).*/\1/p" "$H_CAPTURE_LOG" | head -n 1
}

# h_sources_in FILE PREFIX... : prints how many packets of FILE have an outer IPv4 or IPv6 source address in one
# of the prefixes, then that many lines "frame src dst proto" (at most 5). Only the outermost header counts: the
# header quoted inside an ICMP error is not a packet that left.
h_sources_in() {
    local file=$1
    shift
    tshark -n -r "$file" -T fields -E occurrence=f -e frame.number -e ip.src -e ipv6.src -e ip.dst -e ipv6.dst \
        -e _ws.col.Protocol 2>/dev/null |
        python3 -c '
import ipaddress, sys
nets = [ipaddress.ip_network(p, strict=False) for p in sys.argv[1:]]
hits = []
for line in sys.stdin:
    f = line.rstrip("\n").split("\t")
    f += [""] * (6 - len(f))
    src = f[1] or f[2]
    dst = f[3] or f[4]
    if not src:
        continue
    a = ipaddress.ip_address(src)
    if any(a.version == n.version and a in n for n in nets):
        hits.append(f"{f[0]} {src} > {dst} {f[5]}")
print(len(hits))
for h in hits[:5]:
    print(h)
' "$@"
}

# h_count FILE DISPLAY_FILTER : packets of FILE matching a tshark display filter.
h_count() {
    tshark -n -r "$1" -Y "$2" -T fields -e frame.number 2>/dev/null | wc -l
}

# h_wan_clean WHAT FILE TRANSLATED MIN PREFIX... : two checks on a capture of what left on the WAN: no packet with an
# outer source in one of the LAN's PREFIXes while more than MIN TCP packets match the display filter TRANSLATED (the
# traffic was there, translated), and no TCP reset (no flow was taken for a new one).
h_wan_clean() {
    local what=$1 file=$2 translated=$3 min=$4 leaks natted resets
    shift 4
    leaks=$(h_sources_in "$file" "$@")
    natted=$(h_count "$file" "tcp && ($translated)")
    resets=$(h_count "$file" "tcp.flags.reset==1")
    h_result "$what: no packet with a LAN-private source ($natted translated TCP packets)" \
        "$([[ ${leaks%%$'\n'*} == 0 ]] && ((natted > min)) || echo "$leaks leaked, $natted translated")"
    h_result "$what: no TCP reset (no flow was taken for a new one)" "$( ((resets == 0)) || echo "$resets resets")"
}

#!/usr/bin/env bash
# The helper walk-through in the lab (docs/helpers.md): the example protocol's client behind a masquerading
# router, its server beyond. Without the helper the server cannot call the client back; loaded into the running
# offloadd with `offloadctl helper load CallbackHelper.cs`, it can. Unloaded, it cannot again.
#
# Usage: sudo examples/helpers/callback/run-lab.sh
# Environment: LAB_SUFFIX (default -cb). Ends with "N passed, N failed".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
# shellcheck source=tests/lab/lab.sh
. "$repo/tests/lab/lab.sh"

sfx=${LAB_SUFFIX:--cb}
# The daemon loads only a plugin that root alone can change, in a directory chain root alone can change (strict
# modes, docs/helpers.md): not under /tmp, nor in a checkout of another user's. The work directory is made under
# /run (root's, 0755), and the helper copied there, 0644, when it is loaded.
umask 022
work=$(mktemp -d "/run/ol-callback$sfx.XXXXXX")
passed=0
failed=0
daemon_pid=
server_pid=
ok() { echo "ok - $*"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $*"; failed=$((failed + 1)); }
cleanup() {
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
    [[ -n $daemon_pid ]] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
    lab_down "$sfx" >/dev/null 2>&1 || true
    rm -rf "$work"
    echo "$passed passed, $failed failed"
}
trap cleanup EXIT

((EUID == 0)) || { echo "run-lab.sh needs root (namespaces, iptables): sudo $0" >&2; exit 1; }
offloadd="$repo/daemon/Offload.Daemon/bin/Release/net10.0/offloadd.dll"
offloadctl="$repo/daemon/Offload.Ctl/bin/Release/net10.0/offloadctl.dll"
[[ -f $offloadd && -f $offloadctl ]] || dotnet build "$repo/Offload.sln" -c Release --nologo -v quiet >/dev/null
ctl() { dotnet "$offloadctl" "$@" --socket "$work/offloadd.sock"; }

lab_up "$sfx" >/dev/null
c=$(lab_ns client "$sfx")
r=$(lab_ns router "$sfx")
s=$(lab_ns server "$sfx")

# The configuration, with an empty plugin directory of its own: the helper comes in by hand below.
mkdir "$work/plugins"
{ cat "$here/offloadd.yaml"; echo "plugins: $work/plugins"; } >"$work/offloadd.yaml"
ip netns exec "$r" dotnet "$offloadd" --config "$work/offloadd.yaml" --apply-rules --socket "$work/offloadd.sock" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do [[ -S $work/offloadd.sock ]] && break; sleep 0.1; done
[[ -S $work/offloadd.sock ]] && ok "offloadd runs in the router" || { not_ok "offloadd did not start: $(tail -5 "$work/daemon.log")"; exit 1; }

ip netns exec "$s" python3 "$here/peers.py" server >"$work/server.log" 2>&1 &
server_pid=$!
lab_wait_port "$s" 111 >/dev/null

call() { timeout 30 ip netns exec "$c" python3 "$here/peers.py" client "$1" 40000; }

if out=$(call 198.51.100.2); then
    not_ok "without the helper the call-back should fail, but: $out"
else
    ok "without the helper, the server cannot call the client back ($out)"
fi

install -m 0644 "$here/CallbackHelper.cs" "$work/CallbackHelper.cs"
ctl helper load "$work/CallbackHelper.cs" && ok "offloadctl helper load CallbackHelper.cs" || not_ok "the helper did not load"
ctl helper list | grep -E '^callback' && ok "the helper is listed" || not_ok "callback is not in: $(ctl helper list)"

for target in 198.51.100.2 2001:db8:2::2; do
    family=4
    [[ $target == *:* ]] && family=6
    if out=$(call "$target") && grep -q '^hello 198.51.100.1 port 6[0-9]* from the server\|^hello 2001:db8:2::1 port 6[0-9]* from the server' <<<"$out"; then
        ok "with the helper, the server calls back the masqueraded client over IPv$family: $(head -1 <<<"$out")"
    else
        not_ok "with the helper, no call-back to $target: $out"
    fi
done

# The server was told a port of the router's range (nat-ports), and the call-back was RELATED to its master.
grep -q 'port 6[1-5][0-9][0-9][0-9] from' <<<"$out" && ok "the announced port was moved into nat-ports and rewritten" || not_ok "the port was not moved: $out"
stats=$(ctl stats)
awk '$1 == "ConnectionsExpected" && $2 >= 2 { found = 1 } END { exit !found }' <<<"$stats" && ok "offloadd counted the expected connections" || not_ok "no expected connections in: $(grep -i expect <<<"$stats")"

ctl helper unload callback && ok "offloadctl helper unload callback" || not_ok "unload failed"
if out=$(call 198.51.100.2); then
    not_ok "after unloading, the call-back should fail again, but: $out"
else
    ok "after unloading, the call-back fails again"
fi
kill -0 "$daemon_pid" && ok "offloadd is still running" || not_ok "offloadd died: $(tail -5 "$work/daemon.log")"

#!/usr/bin/env bash
# The helper walk-through in the lab (docs/helpers.md): the example protocol's client behind a masquerading
# router, its server beyond. Without the helper the server cannot call the client back; loaded into the running
# offloadd with `offloadctl helper load CallbackHelper.cs`, it can. Unloaded, it cannot again.
#
# Usage: sudo examples/helpers/callback/run-lab.sh
# Output and environment: tests/lab/harness.sh (LAB_SUFFIX, default -cb; KEEP_WORK=1). Ends with "N passed, N failed".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
# shellcheck source=tests/lab/lab.sh
. "$repo/tests/lab/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$repo/tests/lab/harness.sh"

sfx=${LAB_SUFFIX:--cb}
# The daemon loads only a plugin that root alone can change, in a directory chain root alone can change (strict
# modes, docs/helpers.md): not under /tmp, nor in a checkout of another user's. The work directory is made under
# /run (root's, 0755), and the helper copied there, 0644, when it is loaded.
umask 022
((EUID == 0)) || { echo "run-lab.sh needs root (namespaces, iptables): sudo $0" >&2; exit 1; }
h_init "ol-callback$sfx" /run
h_need_root_and_tools ip iptables python3 dotnet
h_build
h_on_exit "lab_down '$sfx'"
work=$H_WORK

lab_up "$sfx" >/dev/null
c=$(lab_ns client "$sfx")
r=$(lab_ns router "$sfx")
s=$(lab_ns server "$sfx")

# The configuration, with an empty plugin directory of its own: the helper comes in by hand below.
mkdir "$work/plugins"
{ cat "$here/offloadd.yaml"; echo "plugins: $work/plugins"; } >"$work/offloadd.yaml"
if h_daemon_start "$r" "$work/offloadd.yaml" --apply-rules; then
    ok "offloadd runs in the router"
else
    not_ok "offloadd runs in the router" "$(tail -5 "$H_DAEMON_LOG")"
    h_die "offloadd did not start"
fi

ip netns exec "$s" python3 "$here/peers.py" server >"$work/server.log" 2>&1 &
h_on_exit "kill $!"
lab_wait_port "$s" 111 >/dev/null

call() { timeout 30 ip netns exec "$c" python3 "$here/peers.py" client "$1" 40000; }

if out=$(call 198.51.100.2); then
    not_ok "without the helper, the server cannot call the client back" "it did: $out"
else
    ok "without the helper, the server cannot call the client back ($out)"
fi

install -m 0644 "$here/CallbackHelper.cs" "$work/CallbackHelper.cs"
if out=$(h_ctl helper load "$work/CallbackHelper.cs" 2>&1); then
    ok "offloadctl helper load CallbackHelper.cs: $out"
else
    not_ok "offloadctl helper load CallbackHelper.cs" "the helper did not load: $out"
fi
list=$(h_ctl helper list 2>&1 || true)
if line=$(grep -E '^callback' <<<"$list"); then
    ok "the helper is listed: $line"
else
    not_ok "the helper is listed" "callback is not in: $list"
fi

for target in 198.51.100.2 2001:db8:2::2; do
    family=4
    [[ $target == *:* ]] && family=6
    if out=$(call "$target") && grep -q '^hello 198.51.100.1 port 6[0-9]* from the server\|^hello 2001:db8:2::1 port 6[0-9]* from the server' <<<"$out"; then
        ok "with the helper, the server calls back the masqueraded client over IPv$family: $(head -1 <<<"$out")"
    else
        not_ok "with the helper, the server calls back the masqueraded client over IPv$family" "no call-back to $target: $out"
    fi
done

# The server was told a port of the router's range (nat-ports), and the call-back was RELATED to its master.
h_result "the announced port was moved into nat-ports and rewritten" \
    "$(grep -q 'port 6[1-5][0-9][0-9][0-9] from' <<<"$out" || echo "the port was not moved: $out")"
stats=$(h_ctl stats 2>&1 || true)
h_result "offloadd counted the expected connections" \
    "$(awk '$1 == "ConnectionsExpected" && $2 >= 2 { found = 1 } END { exit !found }' <<<"$stats" || echo "no expected connections in: $(grep -i expect <<<"$stats")")"

if out=$(h_ctl helper unload callback 2>&1); then
    ok "offloadctl helper unload callback: $out"
else
    not_ok "offloadctl helper unload callback" "unload failed: $out"
fi
if out=$(call 198.51.100.2); then
    not_ok "after unloading, the call-back fails again" "it did not: $out"
else
    ok "after unloading, the call-back fails again"
fi
h_daemon_alive && ok "offloadd is still running" || not_ok "offloadd is still running" "$(tail -5 "$H_DAEMON_LOG")"
h_finish

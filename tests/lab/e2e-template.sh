#!/usr/bin/env bash
# The helper author's kit end to end, as a newcomer uses it (docs/helpers.md, "Start from the template"): the SDK
# packages and the template packed (sdk/pack), the template installed into a scratch hive (nothing of the machine's
# changes), `dotnet new offload-helper`, the generated solution restored from the packed folder and the machine's
# package caches only (offline), built and tested (its engine tests and its capture replay pass as generated); then the
# generated helper's .cs loaded by hand into offloadd in the lab's router, where it takes its protocol's traffic: the
# server reaches the masqueraded client, which it cannot without the helper.
#
# Output and environment: tests/lab/harness.sh (LAB_SUFFIX, default -tp; KEEP_WORK=1).
# Usage: tests/lab/e2e-template.sh   (as root; builds the Release binaries if they are missing)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"

sfx=${LAB_SUFFIX--tp}
h_init ol-template
h_need_root_and_tools ip iptables python3 dotnet
h_build
example=$H_REPO/examples/helpers/callback
h_on_exit "lab_down '$sfx'"
h_on_exit 'jobs -p | xargs -r kill'
# The generated project lives where strict modes let offloadd read its .cs: root's, in directories only root can change.
umask 022
project_root=$(mktemp -d "/run/ol-template$sfx.XXXXXX")
h_on_exit "rm -rf '$project_root'"
feed=$H_WORK/feed
hive=$H_WORK/hive
project=$project_root/Portmap

# --- the kit ----------------------------------------------------------------------------------------------

if out=$("$H_REPO/sdk/pack" "$feed" 2>&1); then
    ok "sdk/pack: $(cd "$feed" && echo *.nupkg)"
else
    not_ok "sdk/pack" "$(tail -n 5 <<<"$out")"
    h_die "nothing to install"
fi
template=$(echo "$feed"/Offload.Templates.*.nupkg)

h_check "dotnet new install the template into a scratch hive" dotnet new install "$template" --debug:custom-hive "$hive"
h_check "dotnet new offload-helper -n Portmap" dotnet new offload-helper -n Portmap -o "$project" --debug:custom-hive "$hive"
[[ ! -e $HOME/.templateengine/packages/$(basename "$template") ]] && ok "the machine's own template hive is untouched" \
    || not_ok "the machine's own template hive is untouched" "$(basename "$template") is in $HOME/.templateengine/packages"

# Offline: the packed folder, and the packages the repository's own restore left on this machine. A scratch
# global-packages folder, so that a package of the same version packed before cannot be taken from the cache.
cat >"$project/nuget.config" <<CONFIG
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="offload" value="$feed" />
    <add key="restored" value="${NUGET_PACKAGES:-$HOME/.nuget/packages}" />
    <add key="machine" value="/opt/nuget/packages" />
  </packageSources>
</configuration>
CONFIG
export NUGET_PACKAGES=$H_WORK/packages
if out=$(cd "$project" && dotnet build -c Release --nologo 2>&1); then
    ok "the generated solution builds (warnings as errors)"
else
    not_ok "the generated solution builds" "$(grep -E 'error|Error' <<<"$out" | head -n 5)"
fi
out=$(cd "$project" && dotnet test -c Release --no-build --nologo 2>&1) || true
# Every test the template wrote ran and passed, the capture replay among them.
facts=$(cat "$project"/tests/*/*.cs | grep -c '\[Fact\]' || true)
if [[ -f $project/tests/PortmapHelper.Tests/CaptureReplayTests.cs ]] && ((facts >= 2)) \
    && grep -qE "^Passed! +- Failed: +0, Passed: +$facts," <<<"$out"; then
    ok "its tests pass as generated, the capture replay among them: $facts passed"
else
    not_ok "its tests pass as generated" "$(tail -n 8 <<<"$out")"
fi
unset NUGET_PACKAGES
helper_cs=$project/src/PortmapHelper/PortmapHelper.cs
[[ -f $helper_cs ]] && grep -q 'base("portmap"' "$helper_cs" && ok "the helper is named after the project (portmap)" \
    || not_ok "the helper is named after the project" "$(ls "$project/src" 2>&1)"

# --- the generated helper in offloadd -------------------------------------------------------------------------

lab_up "$sfx" >/dev/null 2>&1
C=$(lab_ns client "$sfx")
R=$(lab_ns router "$sfx")
S=$(lab_ns server "$sfx")
h_on_exit "ip netns exec '$R' dotnet '$H_OFFLOADCTL' rules remove"
mkdir "$project_root/plugins"
{ cat "$example/offloadd.yaml"; echo "plugins: $project_root/plugins"; } >"$H_WORK/offloadd.yaml"
h_daemon_start "$R" "$H_WORK/offloadd.yaml" --apply-rules --state none || h_die "offloadd did not start: $(tail -n 5 "$H_DAEMON_LOG")"
ok "offloadd runs in the router, no helper loaded"

ip netns exec "$S" python3 "$example/peers.py" server >"$H_WORK/server.log" 2>&1 &
lab_wait_port "$S" 111 >/dev/null
call() { timeout 30 ip netns exec "$C" python3 "$example/peers.py" client "$1" 40000; }

if out=$(call 198.51.100.2 2>&1); then
    not_ok "without the helper the server cannot reach the client" "it did: $out"
else
    ok "without the helper the server cannot reach the client"
fi

if out=$(h_ctl helper load "$helper_cs" 2>&1) && grep -q '^loaded portmap' <<<"$out"; then
    ok "offloadctl helper load PortmapHelper.cs (compiled by offloadd): $out"
else
    not_ok "offloadctl helper load PortmapHelper.cs" "$out"
fi
list=$(h_ctl helper list 2>&1 || true)
grep -qE '^portmap .* tcp/111 ' <<<"$list" && ok "helper list shows portmap bound at tcp/111" || not_ok "helper list shows portmap bound at tcp/111" "$list"

for target in 198.51.100.2 2001:db8:2::2; do
    if out=$(call "$target" 2>&1) && grep -q '^hello .* from the server' <<<"$out"; then
        ok "with the generated helper the server reaches the masqueraded client ($target): $(head -n 1 <<<"$out")"
    else
        not_ok "with the generated helper the server reaches the masqueraded client ($target)" "$out"
    fi
done
stats=$(h_ctl stats 2>&1 || true)
awk '$1 == "ConnectionsExpected" && $2 >= 2 { found = 1 } END { exit !found }' <<<"$stats" \
    && ok "offloadd counted the connections the helper expected" || not_ok "offloadd counted the connections the helper expected" "$(grep -i expect <<<"$stats")"
# offloadctl's global option before the command, the expectation listing's header, and no daemon said in words.
out=$(timeout 15 dotnet "$H_OFFLOADCTL" --socket "$H_DAEMON_SOCK" expect list 2>&1) && head -n 1 <<<"$out" | grep -q '^TIMEOUT PROTO EXPECTED MASTER HELPER$' \
    && ok "offloadctl --socket S expect list (the option before the command): a header" || not_ok "offloadctl --socket S expect list" "$out"
out=$(timeout 15 dotnet "$H_OFFLOADCTL" helper list --socket "$H_WORK/none.sock" 2>&1) && rc=0 || rc=$?
((rc == 1)) && grep -q "nothing listens on $H_WORK/none.sock" <<<"$out" && ok "without a daemon offloadctl says that nothing listens on the socket" \
    || not_ok "without a daemon offloadctl says that nothing listens on the socket" "exit $rc: $out"
h_daemon_alive && ok "offloadd is still running" || not_ok "offloadd is still running" "$(tail -n 5 "$H_DAEMON_LOG")"
h_finish

#!/usr/bin/env bash
# offloadd in helpers mode (tests/lab/offloadd-helpers.yaml): only FTP control connections and the data
# connections they announce reach the daemon, steered one by one through ipset entries it keeps over netlink;
# every other flow stays with the kernel. Checks every FTP mode, the set entries while flows live and after,
# that only those flows are taken from the kernel, and that the entries survive the daemon being killed in the
# middle of a transfer. Ends with "N passed, N failed".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"

sfx=${LAB_SUFFIX:--hm}
# Under /run (root's, 0755), not /tmp: the plugin loaded below is copied here, and strict modes refuse a plugin in a
# directory someone other than root may write (docs/helpers.md).
umask 022
work=$(mktemp -d "/run/ol-helpers-mode$sfx.XXXXXX")
passed=0
failed=0
daemon_pid=
ok() { echo "ok - $*"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $*"; failed=$((failed + 1)); }
cleanup() {
    [[ -n $daemon_pid ]] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
    lab_down "$sfx" >/dev/null 2>&1 || true
    rm -rf "$work"
    echo "$passed passed, $failed failed"
}
trap cleanup EXIT

((EUID == 0)) || { echo "needs root" >&2; exit 1; }
offloadd="$repo/daemon/Offload.Daemon/bin/Release/net10.0/offloadd.dll"
offloadctl="$repo/daemon/Offload.Ctl/bin/Release/net10.0/offloadctl.dll"
[[ -f $offloadd && -f $offloadctl ]] || dotnet build "$repo/Offload.sln" -c Release --nologo -v quiet >/dev/null

lab_up "$sfx" >/dev/null
lab_vsftpd "$sfx" >/dev/null
r=$(lab_ns router "$sfx")
c=$(lab_ns client "$sfx")
root=$(lab_ftp_root "$sfx")
sock="$work/offloadd.sock"
ip netns exec "$r" dotnet "$offloadd" --config "$repo/tests/lab/offloadd-helpers.yaml" --apply-rules --remove-rules-on-stop --checkpoint 1 --socket "$sock" >>"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.1; done
[[ -S $sock ]] && ok "offloadd started in helpers mode" || { not_ok "offloadd did not start: $(tail -5 "$work/daemon.log")"; exit 1; }

for mode in "PORT|-P - --disable-eprt|ftp://198.51.100.2" "EPRT|-P -|ftp://198.51.100.2" "PASV|--disable-epsv|ftp://198.51.100.2" \
    "EPSV||ftp://198.51.100.2" "IPv6 EPRT|-P -|ftp://[2001:db8:2::2]" "IPv6 EPSV||ftp://[2001:db8:2::2]"; do
    IFS='|' read -r name flags url <<<"$mode"
    rm -f "$work/file"
    # shellcheck disable=SC2086
    if timeout 30 ip netns exec "$c" curl -sS -g $flags -o "$work/file" "$url/big.bin" && cmp -s "$work/file" "$root/big.bin"; then
        ok "$name download through offloadd in helpers mode is identical"
    else
        not_ok "$name download failed or differs"
    fi
done

stats=$(dotnet "$offloadctl" stats --socket "$sock")
if grep -qE '^ipset: [1-9][0-9]* flows steered by entry, entries added [1-9]' <<<"$stats" && grep -q 'failed 0$' <<<"$(grep '^ipset' <<<"$stats")"; then
    ok "data connections were steered by set entries ($(grep '^ipset' <<<"$stats"))"
else
    not_ok "no set entries were used: $(grep '^ipset' <<<"$stats" || echo none)"
fi

members=$(ip netns exec "$r" ipset list offload4 | sed -n '/Members/,$p' | tail -n +2)
if grep -q "198.51.100.2,tcp:" <<<"$members"; then ok "offload4 holds the live data flows"; else not_ok "offload4 is empty while flows live"; fi

# A flow of no helper stays with the kernel: on the LAN side only the helper's port and the set are untracked.
if ip netns exec "$r" iptables -t raw -S OFFLOAD-PRE | grep -q -- '--dport 21 -j CT --notrack' \
    && ! ip netns exec "$r" iptables -t raw -S OFFLOAD-PRE | grep -qE -- '-i lan0 -p tcp -m addrtype ! --dst-type LOCAL -j CT'; then
    ok "only the helper's port and the set are taken from the kernel on the LAN side"
else
    not_ok "steering rules are not the helpers-mode rules"
fi

# A helper plugin loaded at run time is steered at once (its own port, 111), and no more once unloaded.
pre_rules() { ip netns exec "$r" iptables -t raw -S OFFLOAD-PRE; }
install -m 0644 "$repo/examples/helpers/callback/CallbackHelper.cs" "$work/CallbackHelper.cs"
dotnet "$offloadctl" helper load "$work/CallbackHelper.cs" --socket "$sock" >/dev/null
if pre_rules | grep -q -- '--dport 111 -j CT --notrack' && pre_rules | grep -q -- '--dport 21 -j CT --notrack'; then
    ok "a plugin loaded at run time gets its port steered (helpers mode rewrites the rules)"
else
    not_ok "the loaded plugin's port 111 is not steered: $(pre_rules | grep -c dport) port rules"
fi
dotnet "$offloadctl" helper unload callback --socket "$sock" >/dev/null
if ! pre_rules | grep -q -- '--dport 111 ' && pre_rules | grep -q -- '--dport 21 -j CT --notrack'; then
    ok "unloading it takes its port out of the steering again"
else
    not_ok "port 111 still steered after unloading"
fi

# Killed in the middle of a passive download whose data connection an entry steers: the entry stays while the
# daemon is down (its packets wait in the queue nobody reads, instead of reaching the kernel untranslated), and the
# next daemon, restoring its checkpoint, swaps in what its table needs and finishes the transfer.
# The entries of this client's passive data connections (the earlier downloads' may still be there: closed TCP
# connections linger in the table a while, as in the kernel's).
entry_of_download() { ip netns exec "$r" ipset list offload4 | grep -E "^198\.51\.100\.2,tcp:4[0-9]{4},192\.0\.2\.2" || true; }
rm -f "$work/slow.bin"
timeout 60 ip netns exec "$c" curl -sS --limit-rate 20k --disable-epsv -o "$work/slow.bin" "ftp://198.51.100.2/big.bin" 2>"$work/slow.err" &
slow=$!
for _ in $(seq 50); do [[ -n $(entry_of_download) ]] && break; sleep 0.1; done
sleep 2 # a checkpoint (every second) holds the data connection
before=$(entry_of_download)
kill -KILL "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
sleep 1
while_down=$(entry_of_download)
ip netns exec "$r" dotnet "$offloadd" --config "$repo/tests/lab/offloadd-helpers.yaml" --apply-rules --remove-rules-on-stop --socket "$sock" >>"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do grep -q 'State restored' "$work/daemon.log" && [[ -S $sock ]] && break; sleep 0.1; done
after=$(entry_of_download)
if [[ -n $before && $while_down == "$before" && -n $after ]]; then
    ok "the data connections' set entries stay while offloadd is down and after it starts again ($(wc -l <<<"$before") of this client's passive ports)"
else
    not_ok "the set entry across the restart: before '${before}', while down '${while_down}', after '${after}'"
fi
if wait "$slow" && cmp -s "$work/slow.bin" "$root/big.bin"; then
    ok "a passive download across SIGKILL and a start in helpers mode completes identical"
else
    not_ok "the passive download across the restart failed or differs: $(head -c 200 "$work/slow.err")"
fi

kill -TERM "$daemon_pid"
wait "$daemon_pid" || true
daemon_pid=
if ! ip netns exec "$r" ipset list -n 2>/dev/null | grep -q offload && ! ip netns exec "$r" iptables-save | grep -q OFFLOAD; then
    ok "stopping removed the rules and the sets"
else
    not_ok "rules or sets left behind after stopping"
fi

#!/usr/bin/env bash
# offloadd in helpers mode (tests/lab/offloadd-helpers.yaml): only FTP control connections and the data
# connections they announce reach the daemon, steered one by one through ipset entries it keeps over netlink;
# every other flow stays with the kernel. Checks every FTP mode, the set entries while flows live and after,
# that only those flows are taken from the kernel, and that the entries survive the daemon being killed in the
# middle of a transfer.
#
# Output and environment: tests/lab/harness.sh (LAB_SUFFIX, default -hm; KEEP_WORK=1). Ends with "N passed, N failed".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"

sfx=${LAB_SUFFIX:--hm}
# Under /run, not /tmp: the plugin loaded below is copied into the work directory, and strict modes refuse a plugin
# in a directory someone other than root may write (docs/helpers.md).
umask 022
h_init "ol-helpers-mode$sfx" /run
h_need_root_and_tools ip iptables ipset curl dotnet
h_build
h_on_exit "lab_down '$sfx'"
work=$H_WORK
cfg=$H_REPO/tests/lab/offloadd-helpers.yaml

lab_up "$sfx" >/dev/null
lab_vsftpd "$sfx" >/dev/null
r=$(lab_ns router "$sfx")
c=$(lab_ns client "$sfx")
root=$(lab_ftp_root "$sfx")
if h_daemon_start "$r" "$cfg" --apply-rules --remove-rules-on-stop --checkpoint 1; then
    ok "offloadd started in helpers mode"
else
    not_ok "offloadd started in helpers mode" "$(tail -5 "$H_DAEMON_LOG")"
    h_die "offloadd did not start"
fi

for mode in "PORT|-P - --disable-eprt|ftp://198.51.100.2" "EPRT|-P -|ftp://198.51.100.2" "PASV|--disable-epsv|ftp://198.51.100.2" \
    "EPSV||ftp://198.51.100.2" "IPv6 EPRT|-P -|ftp://[2001:db8:2::2]" "IPv6 EPSV||ftp://[2001:db8:2::2]"; do
    IFS='|' read -r name flags url <<<"$mode"
    rm -f "$work/file"
    # shellcheck disable=SC2086
    if timeout 30 ip netns exec "$c" curl -sS -g $flags -o "$work/file" "$url/big.bin" && cmp -s "$work/file" "$root/big.bin"; then
        ok "$name download through offloadd in helpers mode is identical"
    else
        not_ok "$name download through offloadd in helpers mode is identical" "failed or differs"
    fi
done

stats=$(h_ctl stats)
ipset_line=$(grep '^ipset' <<<"$stats" || true)
if grep -qE '^ipset: [1-9][0-9]* flows steered by entry, entries added [1-9]' <<<"$stats" && grep -q 'failed 0$' <<<"$ipset_line"; then
    ok "data connections were steered by set entries ($ipset_line)"
else
    not_ok "data connections were steered by set entries" "no set entries were used: ${ipset_line:-none}"
fi

members=$(ip netns exec "$r" ipset list offload4 | sed -n '/Members/,$p' | tail -n +2)
h_result "offload4 holds the live data flows" "$(grep -q "198.51.100.2,tcp:" <<<"$members" || echo "offload4 is empty while flows live")"

# A flow of no helper stays with the kernel: on the LAN side only the helper's port and the set are untracked.
pre_rules() { ip netns exec "$r" iptables -t raw -S OFFLOAD-PRE; }
if pre_rules | grep -q -- '--dport 21 -j CT --notrack' \
    && ! pre_rules | grep -qE -- '-i lan0 -p tcp -m addrtype ! --dst-type LOCAL -j CT'; then
    ok "only the helper's port and the set are taken from the kernel on the LAN side"
else
    not_ok "only the helper's port and the set are taken from the kernel on the LAN side" "steering rules are not the helpers-mode rules"
fi

# A helper plugin loaded at run time is steered at once (its own port, 111), and no more once unloaded.
install -m 0644 "$H_REPO/examples/helpers/callback/CallbackHelper.cs" "$work/CallbackHelper.cs"
h_ctl helper load "$work/CallbackHelper.cs" >/dev/null
if pre_rules | grep -q -- '--dport 111 -j CT --notrack' && pre_rules | grep -q -- '--dport 21 -j CT --notrack'; then
    ok "a plugin loaded at run time gets its port steered (helpers mode rewrites the rules)"
else
    not_ok "a plugin loaded at run time gets its port steered" "the loaded plugin's port 111 is not steered: $(pre_rules | grep -c dport) port rules"
fi
h_ctl helper unload callback >/dev/null
if ! pre_rules | grep -q -- '--dport 111 ' && pre_rules | grep -q -- '--dport 21 -j CT --notrack'; then
    ok "unloading it takes its port out of the steering again"
else
    not_ok "unloading it takes its port out of the steering again" "port 111 still steered after unloading"
fi

# Killed in the middle of a passive download whose data connection an entry steers: the entry stays while the
# daemon is down (its packets wait in the queue nobody reads, instead of reaching the kernel untranslated), and the
# next daemon, restoring its checkpoint, swaps in what its table needs and finishes the transfer.
# The entries of this client's passive data connections (the earlier downloads' may still be there: closed TCP
# connections linger in the table a while, as in the kernel's).
entry_of_download() { ip netns exec "$r" ipset list offload4 | grep -E "^198\.51\.100\.2,tcp:4[0-9]{4},192\.0\.2\.2" || true; }
has_entry() { [[ -n $(entry_of_download) ]]; }
restored() { grep -q 'State restored' "$H_DAEMON_LOG"; }
rm -f "$work/slow.bin"
timeout 60 ip netns exec "$c" curl -sS --limit-rate 20k --disable-epsv -o "$work/slow.bin" "ftp://198.51.100.2/big.bin" 2>"$work/slow.err" &
slow=$!
h_wait_for 5 has_entry || true
sleep 2 # a checkpoint (every second) holds the data connection
before=$(entry_of_download)
h_daemon_kill
sleep 1
while_down=$(entry_of_download)
h_daemon_start "$r" "$cfg" --apply-rules --remove-rules-on-stop || true
h_wait_for 10 restored || true
after=$(entry_of_download)
if [[ -n $before && $while_down == "$before" && -n $after ]]; then
    ok "the data connections' set entries stay while offloadd is down and after it starts again ($(wc -l <<<"$before") of this client's passive ports)"
else
    not_ok "the data connections' set entries stay while offloadd is down and after it starts again" \
        "before '${before}', while down '${while_down}', after '${after}'"
fi
if wait "$slow" && cmp -s "$work/slow.bin" "$root/big.bin"; then
    ok "a passive download across SIGKILL and a start in helpers mode completes identical"
else
    not_ok "a passive download across SIGKILL and a start in helpers mode completes identical" \
        "failed or differs: $(head -c 200 "$work/slow.err")"
fi

h_daemon_stop
if ! ip netns exec "$r" ipset list -n 2>/dev/null | grep -q offload && ! ip netns exec "$r" iptables-save | grep -q OFFLOAD; then
    ok "stopping removed the rules and the sets"
else
    not_ok "stopping removed the rules and the sets" "rules or sets left behind after stopping"
fi
h_finish

#!/usr/bin/env bash
# Hand-back (tests/lab/offloadd-handback.yaml): offloadd in helpers mode hands each FTP data connection, once
# established, to the kernel's conntrack over ctnetlink with its own NAT, and takes it out of its steering; the
# control connection stays with offloadd. Checks that passive and active transfers are intact; that the kernel's
# table holds the data connection with the NAT port offloadd chose and no control connection, while offloadd lists
# the control connection; that nothing untranslated and no reset leaves on the WAN; that the guard drops nothing of
# the kernel's; that offloadd's entry goes when the kernel's does (destroy event); and that with hand-back switched
# off by a live reload, nothing reaches the kernel's table.
#
# FLOWS=all runs the same checks with steering flows: all, where every packet of lan0 and wan0 is queued to offloadd
# and the hand-back set alone lets a handed-back flow past the rules, both ways; offloadd starts with hand-back
# switched off, and the reload that switches it on must add those rules. It also checks that they took the bulk of
# the transfers (the kernel forwarded them) and that offloadd's queues did not.
#
# Output and environment: tests/lab/harness.sh (LAB_SUFFIX, default -hb; KEEP_WORK=1). Ends with "N passed, N failed".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"

sfx=${LAB_SUFFIX:--hb}
h_init "ol-handback$sfx"
h_need_root_and_tools ip iptables ipset conntrack curl dumpcap tshark dotnet
h_build
h_on_exit "lab_down '$sfx'"
work=$H_WORK
cfg=$work/offloadd.yaml
h_flows_config "$H_REPO/tests/lab/offloadd-handback.yaml" "$cfg"
flows=$H_FLOWS
# With flows: all it starts switched off, and a reload switches it on: the rules of the start had no hand-back set.
[[ $flows == helpers ]] || sed -i 's/^  helpers: \[ftp\]$/  enabled: false\n  helpers: [ftp]/' "$cfg"

lab_up "$sfx" >/dev/null
lab_vsftpd "$sfx" >/dev/null
r=$(lab_ns router "$sfx")
c=$(lab_ns client "$sfx")
root=$(lab_ftp_root "$sfx")
head -c $((24 << 20)) /dev/urandom >"$root/large.bin"
chmod 0644 "$root/large.bin"
# A closed data connection leaves the kernel's table after TIME_WAIT: 2 s here rather than 120, so that its destroy
# event (and offloadd's entry going with it) comes within the test.
ip netns exec "$r" sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait=2

if h_daemon_start "$r" "$cfg" --apply-rules --remove-rules-on-stop; then
    ok "offloadd started in flows: $flows with hand-back"
else
    not_ok "offloadd started in flows: $flows with hand-back" "$(tail -5 "$H_DAEMON_LOG")"
    h_die "offloadd did not start"
fi

handback_rules() { ip netns exec "$r" iptables -t raw -S OFFLOAD-PRE | grep -c 'match-set offloadh4' || true; }
if [[ $flows == all ]]; then
    h_result "switched off at start, the rules have no hand-back set" "$( (($(handback_rules) == 0)) || echo "$(handback_rules) rules")"
    sed -i 's/^  enabled: false$/  enabled: true/' "$cfg"
    from=$(h_log_lines)
    kill -HUP "$H_DAEMON_PID"
    h_wait_log "$from" 'Hand-back to the kernel.s conntrack: ftp' >/dev/null || true
    h_result "a reload that switches hand-back on adds the hand-back set's rules, from outside and from the LAN" \
        "$(ip netns exec "$r" iptables -t raw -S OFFLOAD-PRE | head -n 3 | tr '\n' '|' |
            grep -qE '^-N OFFLOAD-PRE\|-A OFFLOAD-PRE -m set --match-set offloadh4 dst,dst,src -j RETURN\|-A OFFLOAD-PRE -i lan0 -m set --match-set offloadh4 src,src,dst -j RETURN\|$' ||
            ip netns exec "$r" iptables -t raw -S OFFLOAD-PRE | head -n 3 | tr '\n' '|')"
fi

kernel_ct() { ip netns exec "$r" conntrack -L -p tcp 2>/dev/null; ip netns exec "$r" conntrack -L -f ipv6 -p tcp 2>/dev/null; }
# The kernel's entry of the client's passive data connection to the server's ports 40000-40999.
kernel_data() { kernel_ct | grep -E "src=192\.0\.2\.2 dst=198\.51\.100\.2 sport=[0-9]+ dport=40[0-9]{3} " || true; }

# 1. A slow passive download: while it runs, the kernel has its data connection, with offloadd's NAT port.
h_capture_start "$r" wan0 "$work/wan.pcapng"
rm -f "$work/slow.bin"
timeout 40 ip netns exec "$c" curl -sS --limit-rate 3M --disable-epsv -o "$work/slow.bin" "ftp://198.51.100.2/large.bin" 2>"$work/slow.err" &
slow=$!
has_kernel_data() { [[ -n $(kernel_data) ]]; }
h_wait_for 10 has_kernel_data || true
in_kernel=$(kernel_data)
ours=$(h_ctl conntrack list)
kernel_port=$(sed -nE 's/.* src=198\.51\.100\.2 dst=198\.51\.100\.1 sport=[0-9]+ dport=([0-9]+) .*/\1/p' <<<"$in_kernel" | head -n 1)
our_port=$(sed -nE 's/.*dport=40[0-9]{3} src=198\.51\.100\.2 dst=198\.51\.100\.1 sport=[0-9]+ dport=([0-9]+) .*/\1/p' <<<"$ours" | head -n 1)
h_result "the kernel's table holds the handed-back data connection, translated to offloadd's port (kernel ${kernel_port:-none}, offloadd ${our_port:-none})" \
    "$([[ -n $kernel_port && $kernel_port == "$our_port" && $kernel_port -ge 61000 ]] || echo "kernel: '${in_kernel}'; offloadd: '$(grep -E 'dport=40' <<<"$ours")'")"
h_result "the kernel's entry is established and assured" "$(grep -q 'ESTABLISHED.*\[ASSURED\]' <<<"$in_kernel" || echo "'$in_kernel'")"
h_result "the control connection stays with offloadd: not in the kernel's table, in offloadd's" \
    "$(! kernel_ct | grep -q 'dport=21 ' && grep -q 'dport=21 ' <<<"$ours" || echo "kernel: '$(kernel_ct | grep 'dport=21 ' || true)'")"
if wait "$slow" && cmp -s "$work/slow.bin" "$root/large.bin"; then
    ok "a passive (PASV) download handed back in its middle is identical"
else
    not_ok "a passive (PASV) download handed back in its middle is identical" "failed or differs: $(head -c 200 "$work/slow.err")"
fi
# The kernel picked the flow up in its middle (liberal window tracking): none of its packets was INVALID to the guard.
# Read at once: a segment that comes after the kernel's entry has ended (a late FIN or RST, seconds later with this
# lab's short TIME_WAIT) is INVALID, rightly, and dropped.
guard=$({ ip netns exec "$r" iptables -t mangle -L OFFLOAD-FWD -v -n -x; ip netns exec "$r" ip6tables -t mangle -L OFFLOAD-FWD -v -n -x; } |
    awk '/INVALID/ {s += $1} END {print s + 0}')
h_result "the INVALID guard dropped none of the handed-back transfer's packets" "$( ((guard == 0)) || echo "$guard dropped")"

# 2. Full speed, passive and active, IPv4 and IPv6 (NAT66: the IPv6 hand-back set).
for mode in "PASV|--disable-epsv|198.51.100.2" "EPSV||198.51.100.2" "PORT|-P - --disable-eprt|198.51.100.2" "EPRT|-P -|198.51.100.2" \
    "IPv6 EPSV||[2001:db8:2::2]" "IPv6 EPRT|-P -|[2001:db8:2::2]"; do
    IFS='|' read -r name flags host <<<"$mode"
    rm -f "$work/file"
    # shellcheck disable=SC2086
    if timeout 30 ip netns exec "$c" curl -sS -g $flags -o "$work/file" "ftp://$host/large.bin" && cmp -s "$work/file" "$root/large.bin"; then
        ok "$name download of 24 MiB handed back to the kernel is identical"
    else
        not_ok "$name download of 24 MiB handed back to the kernel is identical" "failed or differs"
    fi
done
dropped=$(h_capture_stop)

if [[ $flows == all ]]; then
    # Every packet of lan0 and wan0 would be queued: the hand-back set's rules let the handed-back flows past, from the
    # LAN (src,src,dst) and from outside (dst,dst,src), ahead of the untrack and queue rules; the kernel forwarded them.
    bypassed() { # direction: the packets the hand-back rules of both families let past
        { ip netns exec "$r" iptables -t raw -L OFFLOAD-PRE -v -n -x; ip netns exec "$r" ip6tables -t raw -L OFFLOAD-PRE -v -n -x; } |
            awk -v d="$1" '/match-set offloadh[46] / && $0 ~ d && /RETURN/ {s += $1} END {print s + 0}'
    }
    lan_side=$(bypassed 'src,src,dst')
    wan_side=$(bypassed 'dst,dst,src')
    # What the kernel queued to offloadd meanwhile (each queue's last packet id): the control connections and the first
    # packets of each data connection, a small part of the transfers (the sender's TSO makes their packets up to 64 KiB).
    queued=$(ip netns exec "$r" awk '{s += $8} END {print s + 0}' /proc/net/netfilter/nfnetlink_queue)
    h_result "the hand-back rules let the transfers past the queues: from the LAN $lan_side packets, from outside $wan_side; queued to offloadd $queued" \
        "$( ((lan_side > 500 && wan_side > 1000 && queued * 4 < lan_side + wan_side)) || echo "too few past the queues")"
fi

stats=$(h_ctl stats)
line=$(grep '^handback' <<<"$stats" || true)
handed=$(sed -nE 's/.*handed back ([0-9]+).*/\1/p' <<<"$line")
h_result "offloadd handed the data connections back (${line:-no handback line})" "$( ((${handed:-0} >= 7)) || echo "only ${handed:-0}")"
h_result "the kernel refused none" "$(grep -q 'refused 0,' <<<"$line" || echo "$line")"
h_wan_clean "WAN capture${dropped:+ (dumpcap dropped $dropped)}" "$work/wan.pcapng" "ip.src==198.51.100.1 || ip.dst==198.51.100.1" 10000 192.0.2.0/24 2001:db8:1::/64

# 3. The kernel's entries end (FIN, then TIME_WAIT of 2 s): their destroy events take offloadd's with them. The kernel
# reaps an expired entry (and sends its event) when its garbage collector passes, which may be a minute on an idle
# table, or when a dump meets it: conntrack -L here, as an administrator's would.
kernel_ftp_data() { kernel_ct | grep -E 'dport=40[0-9]{3} |sport=20 ' || true; }
kernel_done() { [[ -z $(kernel_ftp_data) ]]; }
h_wait_for 20 kernel_done || true
h_result "the kernel's entries of the data connections ended" "$(kernel_ftp_data | head -2)"
our_data() { h_ctl conntrack list | grep -cE 'dport=(40[0-9]{3}|20) ' || true; }
no_data_left() { (($(our_data) == 0)); }
if h_wait_for 5 no_data_left; then
    ok "offloadd's entries of the data connections went with the kernel's"
else
    not_ok "offloadd's entries of the data connections went with the kernel's" \
        "$(our_data) left: $(h_ctl conntrack list | grep -E 'dport=(40[0-9]{3}|20) ' | head -2); the kernel's: $(kernel_ct | head -3)"
fi
withdrawn=$(h_ctl stats | sed -nE 's/^handback:.*withdrawn after the kernel.s end ([0-9]+).*/\1/p')
h_result "withdrawn after the kernel's destroy events: ${withdrawn:-none}" "$( ((${withdrawn:-0} >= 7)) || echo "only ${withdrawn:-0}")"

# 4. Switched off by a live reload: every packet stays with offloadd, nothing reaches the kernel's table.
sed -i -e '/^  enabled: /d' -e 's/^  helpers: \[ftp\]$/  enabled: false\n  helpers: [ftp]/' "$cfg"
from=$(h_log_lines)
kill -HUP "$H_DAEMON_PID"
h_wait_log "$from" 'Hand-back to the kernel.s conntrack off' >/dev/null || true
ip netns exec "$r" conntrack -F 2>/dev/null || true
rm -f "$work/file"
for flags in "--disable-epsv" "-P - --disable-eprt"; do
    # shellcheck disable=SC2086
    timeout 30 ip netns exec "$c" curl -sS $flags -o "$work/file" "ftp://198.51.100.2/big.bin" && cmp -s "$work/file" "$root/big.bin" || echo failed >>"$work/off.err"
done
h_result "with hand-back off, passive and active downloads are identical" "$([[ ! -s $work/off.err ]] || echo "failed or differs")"
h_result "with hand-back off, the kernel's table holds no FTP connection" \
    "$(! kernel_ct | grep -qE 'dport=(21|20|40[0-9]{3}) |sport=(20|21) ' || echo "$(kernel_ct | grep -E 'dport=(21|20|40[0-9]{3}) |sport=(20|21) ' | head -3)")"

h_daemon_stop
h_result "no warning or error in offloadd's log" "$(h_daemon_log_problems | head -3)"
h_finish

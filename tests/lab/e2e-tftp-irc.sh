#!/usr/bin/env bash
# offloadd's TFTP and IRC helpers end to end (tests/lab/offloadd-tftp-irc.yaml: every flow, masquerade on wan0,
# helpers tftp and irc; the kernel's own helpers never attached). tftp-hpa in the client gets and puts a file of
# many blocks from in.tftpd (tftpd-hpa) in the server, over IPv4 and IPv6. Through ngircd in the server, a
# scripted IRC client behind the NAT ("alice") offers DCC SEND and DCC CHAT to a scripted peer ("bob") in the
# server namespace: bob must see the router's address, connect, and the file and chat lines cross; a third offer
# announcing someone else's address must arrive untouched and open nothing. Then a fresh lab runs the same
# traffic through the kernel's MASQUERADE and its tftp and irc helpers, and the offers bob received from each are
# compared. Ends with "N passed, N failed".
#
# Output and environment: tests/lab/harness.sh (LAB_SUFFIX, default -ti; KEEP_WORK=1 keeps the work directory).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/lab-tftp-irc.sh
. "$here/lab-tftp-irc.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"

sfx=${LAB_SUFFIX--ti}
h_init ol-tftp-irc
h_need_root_and_tools in.tftpd tftp ngircd python3 dotnet
h_build
h_on_exit "lab_down '$sfx'"
h_on_exit 'jobs -p | xargs -r kill -TERM'
work=$H_WORK

wan4_number=$(python3 -c "import socket,struct; print(struct.unpack('!I', socket.inet_aton('$LAB_WAN4_ROUTER'))[0])")
foreign=203.0.113.77
foreign_number=$(python3 -c "import socket,struct; print(struct.unpack('!I', socket.inet_aton('$foreign'))[0])")

# A fresh lab with tftpd and ngircd in the server; the router is set up by the caller.
lab_with_servers() {
    lab_up "$sfx" >/dev/null
    lab_tftpd "$sfx" >/dev/null
    lab_ngircd "$sfx" >/dev/null
}

# run_tftp NAME : get and put big.bin (200 KiB, 400 blocks of 512) over IPv4 and IPv6; checks the bytes.
run_tftp() {
    local name=$1 fam host c root out
    c=$(lab_ns client "$sfx")
    root=$(lab_tftp_root "$sfx")
    out="$work/$name"
    mkdir -p "$out"
    for fam in 4 6; do
        host=$LAB_WAN4_SERVER
        [[ $fam == 6 ]] && host=$LAB_WAN6_SERVER
        rm -f "$out/get$fam.bin"
        timeout 30 ip netns exec "$c" tftp "-$fam" -m binary "$host" -c get big.bin "$out/get$fam.bin" >"$out/tftp-get$fam.log" 2>&1 || true
        if cmp -s "$out/get$fam.bin" "$root/big.bin"; then
            ok "$name: IPv$fam TFTP get of a 400-block file is identical"
        else
            not_ok "$name: IPv$fam TFTP get of a 400-block file is identical" "$(stat -c %s "$out/get$fam.bin" 2>/dev/null || echo no) bytes; $(tail -2 "$out/tftp-get$fam.log" | tr '\n' ' ')"
        fi
        cp "$root/small.bin" "$out/put$fam.bin"
        head -c 100000 "$root/big.bin" >>"$out/put$fam.bin"
        timeout 30 ip netns exec "$c" tftp "-$fam" -m binary "$host" -c put "$out/put$fam.bin" "up-$fam.bin" >"$out/tftp-put$fam.log" 2>&1 || true
        if cmp -s "$out/put$fam.bin" "$root/up-$fam.bin"; then
            ok "$name: IPv$fam TFTP put of a $(stat -c %s "$out/put$fam.bin")-byte file arrives identical"
        else
            not_ok "$name: IPv$fam TFTP put arrives identical" "$(stat -c %s "$root/up-$fam.bin" 2>/dev/null || echo no) bytes; $(tail -2 "$out/tftp-put$fam.log" | tr '\n' ' ')"
        fi
    done
}

# run_irc NAME [HOOK] : alice offers SEND, CHAT and a foreign CHAT to bob; HOOK runs while alice is still
# connected, after bob saw all three offers. Leaves bob's lines in $work/NAME/irc/offers.txt.
run_irc() {
    local name=$1 hook=${2-} c s out script a_pid b_pid deadline
    c=$(lab_ns client "$sfx")
    s=$(lab_ns server "$sfx")
    out="$work/$name/irc"
    mkdir -p "$out"
    chmod 0777 "$out"
    cp "$(lab_tftp_root "$sfx")/big.bin" "$out/send.bin"
    script=$(lab_irc_script "$sfx")
    timeout 45 ip netns exec "$s" python3 "$script" accept "$LAB_WAN4_SERVER" bob "$out" &
    b_pid=$!
    timeout 45 ip netns exec "$c" python3 "$script" offer "$LAB_WAN4_SERVER" alice bob "$out" "$foreign" &
    a_pid=$!
    deadline=$((SECONDS + 40))
    until grep -qs "all offers seen\|FAILED" "$out/bob.log" || ((SECONDS > deadline)); do sleep 0.1; done
    [[ -n $hook ]] && "$hook" "$out"
    touch "$out/done"
    local rc_b=0 rc_a=0
    wait "$b_pid" || rc_b=$?
    wait "$a_pid" || rc_a=$?
    if ((rc_a == 0 && rc_b == 0)); then
        ok "$name: both IRC clients finished"
    else
        not_ok "$name: both IRC clients finished" "alice $rc_a, bob $rc_b; $(cat "$out/alice.log" "$out/bob.log" 2>/dev/null | grep FAILED | tr '\n' ' ')"
    fi

    local send chat third
    send=$(sed -n 1p "$out/offers.txt" 2>/dev/null || true)
    chat=$(sed -n 2p "$out/offers.txt" 2>/dev/null || true)
    third=$(sed -n 3p "$out/offers.txt" 2>/dev/null || true)
    if [[ $send == *$'\x01'"DCC SEND send.bin $wan4_number "* && $chat == *$'\x01'"DCC CHAT chat $wan4_number "* ]]; then
        ok "$name: bob sees the router's address ($LAB_WAN4_ROUTER = $wan4_number) in DCC SEND and DCC CHAT"
    else
        not_ok "$name: bob sees the router's address in DCC SEND and DCC CHAT" "$(tr '\001' '^' <<<"$send / $chat")"
    fi
    if cmp -s "$out/send.bin" "$out/received.bin"; then
        ok "$name: the DCC SEND file crossed the NAT identical, acknowledged to alice ($(grep -o 'acknowledged [0-9]*' "$out/alice.log" || echo not acknowledged))"
    else
        not_ok "$name: the DCC SEND file crossed the NAT identical" "$(cat "$out/bob.log" "$out/alice.log" 2>/dev/null | tail -4 | tr '\n' ' ')"
    fi
    if grep -qs "CHAT got hello alice, bob here" "$out/alice.log" && grep -qs "hello bob, alice here" "$out/chat.txt"; then
        ok "$name: DCC CHAT lines crossed both ways"
    else
        not_ok "$name: DCC CHAT lines crossed both ways" "$(tail -3 "$out/alice.log" 2>/dev/null | tr '\n' ' ')"
    fi
    if [[ $third == *$'\x01'"DCC CHAT chat $foreign_number 5555"$'\x01'* ]]; then
        ok "$name: an offer of a foreign address ($foreign) reaches bob untranslated"
    else
        not_ok "$name: an offer of a foreign address reaches bob untranslated" "$(tr '\001' '^' <<<"$third")"
    fi
}

# While alice is still connected, after her foreign offer: offloadd expects nothing for her IRC connection, and
# counted the refusal.
check_offloadd_refused() {
    local expects stats
    expects=$(h_ctl expect list 2>&1) || true
    stats=$(h_ctl stats 2>&1) || true
    if ! grep -q "master=.*dport=6667" <<<"$expects" && grep -qE '^ +HelperForeignAddressRefused +[1-9]' <<<"$stats"; then
        ok "offloadd: the foreign offer created no expectation (expect list) and was counted ($(grep -E '^ +HelperForeignAddressRefused' <<<"$stats" | tr -s ' '))"
    else
        not_ok "offloadd: the foreign offer created no expectation and was counted" "expects: $(grep 6667 <<<"$expects" | head -2); $(grep -E 'HelperForeign' <<<"$stats" || echo no counter)"
    fi
}

# --- 1: offloadd in the router ------------------------------------------------------------------------------
started=$SECONDS
lab_with_servers
r=$(lab_ns router "$sfx")
if h_daemon_start "$r" "$H_REPO/tests/lab/offloadd-tftp-irc.yaml" --apply-rules; then
    ok "offloadd started with helpers tftp and irc"
else
    not_ok "offloadd started" "$(tail -5 "$H_DAEMON_LOG")"
    h_die "offloadd did not start"
fi

# Besides the kernel NAT rules offloadd manages (OFFLOAD-NAT-*) for what it leaves to the kernel: untracked packets never reach them.
kernel_rules=$({ ip netns exec "$r" iptables-save && ip netns exec "$r" ip6tables-save; } | grep -E -- '--helper|MASQUERADE|SNAT|DNAT' | grep -v -- '^-A OFFLOAD-NAT-' || true)
if [[ -z $kernel_rules ]]; then ok "router: no kernel NAT and no kernel helper rules"; else not_ok "router: no kernel NAT and no kernel helper rules" "$kernel_rules"; fi

run_tftp offloadd
run_irc offloadd check_offloadd_refused

# The port bob was told lies in the daemon's NAT port range (the engine chose it).
port=$(sed -n 1p "$work/offloadd/irc/offers.txt" | tr '\001' ' ' | awk '{for (i = 1; i <= NF; i++) if ($i == "send.bin") print $(i + 2)}')
if [[ $port =~ ^[0-9]+$ ]] && ((port >= 61000 && port <= 65535)); then
    ok "offloadd: the DCC SEND port bob was told ($port) is one the engine chose in nat-ports 61000-65535"
else
    not_ok "offloadd: the DCC SEND port is in nat-ports" "${port:-none}"
fi

stats=$(h_ctl stats 2>&1) || true
theirs=$(ip netns exec "$r" conntrack -L 2>/dev/null | grep -cE "src=$LAB_LAN4_CLIENT |src=$LAB_LAN6_CLIENT " || true)
# Six expected connections: four TFTP transfers (get and put, both families) and the two DCC connections.
expected=$(grep -E '^ +ConnectionsExpected ' <<<"$stats" | awk '{print $2}' || true)
if [[ ${expected:-0} -ge 6 ]] && grep -qE '^ +PayloadRewrites +[1-9]' <<<"$stats" && ((theirs == 0)); then
    ok "offloadd let in $expected expected connections and rewrote the offers; the kernel tracked none of the client's flows"
else
    not_ok "offloadd created expectations and rewrites, the kernel none" "$(grep -E '^ +(ExpectationsCreated|PayloadRewrites|Helper)' <<<"$stats" | tr -s ' ' | tr '\n' ';'); kernel entries $theirs"
fi
info "offloadd stats: $(grep -E '^ +(ExpectationsCreated|ConnectionsExpected|PayloadRewrites|Helper[A-Za-z]+|Dropped[A-Za-z]*) +[1-9]' <<<"$stats" | tr -s ' ' | tr '\n' ';')"

h_daemon_stop

# --- 2: the same traffic through the kernel's MASQUERADE and its tftp and irc helpers --------------------------
lab_with_servers
lab_kernel_tftp_irc_nat "$sfx"
run_tftp kernel
run_irc kernel

# What bob received, kernel against offloadd: the three whole lines as ngircd relayed them (prefix, target, CTCP
# text, address, size), identical except the port of the two translated offers, which each NAT chose: offloadd in
# its nat-ports range, the kernel the port alice listened on (free on the router, so kept).
normalize() { tr '\001' '^' <"$1" | sed -E '1,2s/^(.*\^DCC (SEND|CHAT) [^ ]+ [0-9]+ )[0-9]+/\1PORT/'; }
if [[ -s $work/kernel/irc/offers.txt ]] && diff <(normalize "$work/kernel/irc/offers.txt") <(normalize "$work/offloadd/irc/offers.txt") >"$work/offers.diff"; then
    ok "bob received the same DCC lines through the kernel and through offloadd (ports of the translated offers aside)"
else
    not_ok "bob received the same DCC lines through the kernel and through offloadd" "$(tr '\n' ' ' <"$work/offers.diff")"
fi
kport=$(sed -n 1p "$work/kernel/irc/offers.txt" | tr '\001' ' ' | awk '{for (i = 1; i <= NF; i++) if ($i == "send.bin") print $(i + 2)}')
aport=$(grep -o 'offered SEND [^ ]* [0-9]* [0-9]*' "$work/kernel/irc/alice.log" | awk '{print $5}')
if [[ -n $kport && $kport == "$aport" ]]; then
    ok "kernel: the DCC SEND port bob was told ($kport) is the one alice listened on"
else
    not_ok "kernel: the DCC SEND port is alice's" "told ${kport:-none}, alice ${aport:-none}"
fi
info "runtime $((SECONDS - started)) s"
h_finish

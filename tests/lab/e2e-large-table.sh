#!/usr/bin/env bash
# A table large enough for offloadd's workers to stage each burst's lookups (ConntrackEngine.StagedLookupsFrom, 65,536
# connections), live: 70,000 UDP flows from two LAN addresses fill it, and FTP in four modes (IPv4 and IPv6, active
# and passive: an IPv6 entry keeps its addresses in an address block beside the table) and a long TCP stream run
# through it while it is that large, refreshed once half-way. Every transfer completes byte-identical (the server has
# no route back to the LAN: nothing untranslated is answered), the workers report staged bursts, the daemon logs no
# fault, and the flows leave the table when their 30 s are up.
#
# Output and environment: tests/lab/harness.sh (LAB_SUFFIX, default -lt; KEEP_WORK=1).
# Usage: tests/lab/e2e-large-table.sh   (as root; builds the Release binaries if they are missing)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$here/harness.sh"
# shellcheck source=tests/lab/transfers.sh
. "$here/transfers.sh"

sfx=${LAB_SUFFIX--lt}
h_init ol-large-table
h_need_root_and_tools ip iptables vsftpd curl python3 dotnet cmp
h_build
h_on_exit "lab_down '$sfx'"
h_on_exit 'jobs -p | xargs -r kill'

C=$(lab_ns client "$sfx")
R=$(lab_ns router "$sfx")
second_client=192.0.2.3
flows_per_address=35000

lab_up "$sfx" 2>/dev/null
lab_vsftpd_uploads "$sfx" 2>/dev/null
ip -n "$C" addr add "$second_client/24" dev eth0
h_daemon_start "$R" "$H_REPO/tests/lab/offloadd.yaml" --apply-rules || h_die "offloadd did not start: $(tail -n 5 "$H_WORK/offloadd.log")"

# One datagram from each of 35,000 ports of each client address to the server: 70,000 new connections, masqueraded,
# never answered (the server's port unreachable errors come back related to them). The router masquerades to the
# 4,536 ports of nat-ports on one address, so the datagrams go to 20 server ports: each gives room for 4,536 flows.
flood() {
    lab_exec "$C" python3 - "$LAB_LAN4_CLIENT" "$second_client" "$LAB_WAN4_SERVER" "$flows_per_address" <<'PY'
import socket, sys
sources, server, count = sys.argv[1:3], sys.argv[3], int(sys.argv[4])
for source in sources:
    for port in range(20000, 20000 + count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((source, port))
        s.sendto(b"fill the table", (server, 30000 + port % 20))
        s.close()
PY
}

table_size() { h_ctl stats | sed -nE 's/^table: ([0-9]+) connections.*/\1/p'; }
staged_bursts() { h_ctl stats | sed -nE 's/.*lookups staged ([0-9]+).*/\1/p' | awk '{s += $1} END {print s + 0}'; }

flood
size=$(table_size)
((size >= 65536)) && ok "70,000 UDP flows through offloadd: its table holds $size connections (staging starts at 65,536)" \
    || not_ok "the table holds 65,536 connections or more" "$size"
staged_before=$(staged_bursts)

tr_start "$sfx" "$H_WORK"
sleep 6
# Only the transfers have crossed the router since: what was staged meanwhile was theirs.
staged_mid=$(staged_bursts)
size=$(table_size)
tr_all_running && ok "the transfers run with $size connections in the table" || not_ok "the transfers run" "one ended within 6 s"
((staged_mid > staged_before)) && ok "the workers staged the lookups of $((staged_mid - staged_before)) bursts of the transfers" \
    || not_ok "the workers staged the transfers' lookups" "$staged_before before, $staged_mid after 6 s"
flood # the flows' 30 s start again, so that the table stays large until the transfers end
tr_wait
for k in "${TR_KEYS[@]}"; do
    why=$(tr_intact "$k")
    [[ -z $why ]] && ok "${TR_WHAT[$k]}: complete and byte-identical through the large table" || not_ok "${TR_WHAT[$k]}" "$why"
done

problems=$(h_daemon_log_problems)
[[ -z $problems ]] && ok "offloadd logged no fault" || not_ok "offloadd logged no fault" "$problems"

# The flows were never answered: UDP's 30 s for an unreplied flow, then the collector takes them.
deadline=$((SECONDS + 60))
until size=$(table_size) && ((size < 1000)) || ((SECONDS >= deadline)); do sleep 2; done
((size < 1000)) && ok "the flows left the table when their time was up ($size connections left)" \
    || not_ok "the flows left the table" "$size connections after 60 s"

h_daemon_stop
[[ $H_DAEMON_RC == 0 ]] && ok "offloadd exits 0 on SIGTERM" || not_ok "offloadd exits 0 on SIGTERM" "$H_DAEMON_RC"
h_finish

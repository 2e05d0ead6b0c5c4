#!/usr/bin/env bash
# Transfers that outlive a daemon's restart or a package upgrade, shared by the lab scripts that take offloadd down
# in their middle (tests/lab/e2e-restart.sh, tests/package/test-deb.sh): FTP in four modes (IPv4 active and passive,
# IPv6 active and passive; the two downloads fetch a second file on the same control connection afterwards, so
# that they need the FTP helper's sequence offsets and state from before the interruption) and a long TCP stream
# from the client to a server that hashes what it receives. All rate-limited: by default about 15 s for FTP, 25 s
# for the stream; TR_FTP_RATE (curl's --limit-rate, default 40k) and TR_STREAM_RATE (bytes a second, default 60000)
# make them last longer, for what takes longer than a restart (a package upgrade).
#
# Needs tests/lab/lab.sh sourced and its lab up, with vsftpd taking uploads (lab_vsftpd_uploads). Usage:
#
#   . "$here/transfers.sh"
#   tr_start "$sfx" "$work"          # starts them all in the background
#   tr_all_running || ...            # every transfer still runs
#   tr_wait                          # waits for them all
#   for k in "${TR_KEYS[@]}"; do why=$(tr_intact "$k"); ...; done   # nothing when complete and byte-identical
#
# The client's socket buffers are made small so that the server cannot send a download ahead into them before the
# interruption: the transfers are in flight while the daemon is down.

TR_KEYS=(port4 eprt6 pasv4 epsv6 stream)
declare -A TR_PID=() TR_WHAT=() TR_RC=()
TR_WORK=
TR_FTP_ROOT=
TR_STREAM_SERVER=

# tr_start SUFFIX WORK : the lab of SUFFIX; what the transfers receive and their errors go to WORK.
tr_start() {
    local sfx=$1 c s h4 h6
    TR_WORK=$2
    c=$(lab_ns client "$sfx") && s=$(lab_ns server "$sfx") || return 1
    TR_FTP_ROOT=$(lab_ftp_root "$sfx")
    [[ -s $TR_FTP_ROOT/long.bin ]] || head -c 614400 /dev/urandom >"$TR_FTP_ROOT/long.bin"
    chmod 0644 "$TR_FTP_ROOT/long.bin"
    lab_exec "$c" sysctl -q -w net.ipv4.tcp_rmem="4096 16384 16384"
    lab_exec "$c" sysctl -q -w net.ipv4.tcp_wmem="4096 16384 16384"
    h4=$LAB_WAN4_SERVER
    h6="[$LAB_WAN6_SERVER]"
    local slow=(curl -sS -g --limit-rate "${TR_FTP_RATE:-40k}" --max-time 200 --connect-timeout 10)

    lab_exec "$c" "${slow[@]}" -P - --disable-eprt "ftp://$h4/long.bin" -o "$TR_WORK/port4.bin" \
        "ftp://$h4/small.bin" -o "$TR_WORK/port4-small.bin" 2>"$TR_WORK/port4.err" &
    TR_PID[port4]=$!
    TR_WHAT[port4]="IPv4 active (PORT) download of long.bin, then small.bin on the same control connection"
    lab_exec "$c" "${slow[@]}" -P - "ftp://$h6/long.bin" -o "$TR_WORK/eprt6.bin" \
        "ftp://$h6/small.bin" -o "$TR_WORK/eprt6-small.bin" 2>"$TR_WORK/eprt6.err" &
    TR_PID[eprt6]=$!
    TR_WHAT[eprt6]="IPv6 active (EPRT) download of long.bin, then small.bin on the same control connection"
    lab_exec "$c" "${slow[@]}" --disable-epsv -T "$TR_FTP_ROOT/long.bin" "ftp://$h4/incoming/pasv4.bin" 2>"$TR_WORK/pasv4.err" &
    TR_PID[pasv4]=$!
    TR_WHAT[pasv4]="IPv4 passive (PASV) upload of long.bin"
    lab_exec "$c" "${slow[@]}" -T "$TR_FTP_ROOT/long.bin" "ftp://$h6/incoming/epsv6.bin" 2>"$TR_WORK/epsv6.err" &
    TR_PID[epsv6]=$!
    TR_WHAT[epsv6]="IPv6 passive (EPSV) upload of long.bin"

    # The long stream: 1.5 MB (at 60 kB/s by default) from the client to a server that hashes what it receives.
    lab_exec "$s" python3 - "$LAB_WAN4_SERVER" 5001 "$TR_WORK/stream.received" <<'PY' &
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
PY
    TR_STREAM_SERVER=$!
    lab_wait_port "$s" 5001 10 || return 1
    lab_exec "$c" python3 - "$LAB_WAN4_SERVER" 5001 "$TR_WORK/stream.sent" "${TR_STREAM_RATE:-60000}" 2>"$TR_WORK/stream.err" <<'PY' &
import hashlib, random, socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=90)
rate = int(sys.argv[4])
source, digest, sent, start = random.Random(11), hashlib.sha256(), 0, time.monotonic()
while sent < 1_500_000:
    chunk = source.randbytes(4096)
    conn.sendall(chunk)
    digest.update(chunk)
    sent += len(chunk)
    time.sleep(max(0.0, sent / rate - (time.monotonic() - start)))
conn.shutdown(socket.SHUT_WR)
conn.recv(1)
with open(sys.argv[3], "w") as out:
    out.write(f"{sent} {digest.hexdigest()}\n")
PY
    TR_PID[stream]=$!
    TR_WHAT[stream]="a long TCP stream (1.5 MB, client to server)"
}

# tr_all_running : every transfer still runs.
tr_all_running() {
    local k
    for k in "${TR_KEYS[@]}"; do kill -0 "${TR_PID[$k]}" 2>/dev/null || return 1; done
}

# tr_wait : waits for every transfer; their exit codes in TR_RC.
tr_wait() {
    local k
    for k in "${TR_KEYS[@]}"; do
        TR_RC[$k]=0
        wait "${TR_PID[$k]}" || TR_RC[$k]=$?
    done
    wait "$TR_STREAM_SERVER" || true
}

# tr_intact KEY : why the transfer KEY is not complete and identical (nothing when it is).
tr_intact() {
    local k=$1
    ((TR_RC[$k] == 0)) || { echo "exit ${TR_RC[$k]}: $(head -c 300 "$TR_WORK/$k.err" 2>/dev/null)"; return; }
    case $k in
    port4 | eprt6) cmp -s "$TR_WORK/$k.bin" "$TR_FTP_ROOT/long.bin" && cmp -s "$TR_WORK/$k-small.bin" "$TR_FTP_ROOT/small.bin" ;;
    pasv4 | epsv6) cmp -s "$TR_FTP_ROOT/incoming/$k.bin" "$TR_FTP_ROOT/long.bin" ;;
    stream) cmp -s "$TR_WORK/stream.sent" "$TR_WORK/stream.received" ;;
    esac || echo "what arrived differs from what was sent"
}

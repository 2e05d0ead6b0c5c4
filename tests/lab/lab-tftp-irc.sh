#!/usr/bin/env bash
# Lab functions for the TFTP and IRC helpers (sourced after lab.sh): tftpd-hpa and ngircd run by hand in the
# server namespace, a scripted IRC client (python3, sockets only) for both ends of a DCC offer, and the kernel's
# own tftp and irc helpers as the reference.
#
#   lab_tftpd SUFFIX           in.tftpd (tftpd-hpa) on 69/udp, IPv4 and IPv6, serving and taking files in
#                              $(lab_tftp_root SUFFIX); files from lab_ftp_files
#   lab_ngircd SUFFIX          ngircd on 198.51.100.2:6667, configured in the lab's directory
#   lab_kernel_tftp_irc_nat SUFFIX   the kernel's MASQUERADE and its tftp and irc helpers, attached explicitly
#   lab_irc_script SUFFIX      prints the path of the scripted IRC client (written on first use)
#
# Every function works under `set -euo pipefail` and returns non-zero on failure.

# lab_tftp_root [SUFFIX] -> the directory in.tftpd serves (and writes uploads to).
lab_tftp_root() {
    local t
    t=$(lab_tmp "${1-}") || return 1
    printf '%s/tftp-root\n' "$t"
}

# lab_tftpd [SUFFIX] : one in.tftpd per family in the server namespace, in the foreground of a background job
# (-L), chrooted to the lab's tftp root, which anyone may write to (uploads need -c and a writable directory).
lab_tftpd() {
    local sfx=${1-} s root
    s=$(lab_ns server "$sfx") && root=$(lab_tftp_root "$sfx") || return 1
    mkdir -p "$root" && lab_ftp_files "$root" && chmod 1777 "$root" || return 1
    ip netns exec "$s" in.tftpd -L -4 -a "$LAB_WAN4_SERVER:69" -c -s "$root" </dev/null >/dev/null 2>&1 &
    ip netns exec "$s" in.tftpd -L -6 -a "[$LAB_WAN6_SERVER]:69" -c -s "$root" </dev/null >/dev/null 2>&1 &
    lab_wait_port "$s" 69 10 udp || return 1
    # Both sockets: two listeners on port 69.
    local deadline=$((SECONDS + 10))
    while (($(ip netns exec "$s" ss -Hlun 'sport = :69' | wc -l) < 2)); do
        ((SECONDS < deadline)) || { lab_log "in.tftpd did not listen on both families"; return 1; }
        sleep 0.05
    done
}

# lab_ngircd [SUFFIX] : ngircd in the server namespace, on the server's IPv4 address, port 6667, with no DNS,
# ident or PAM look-ups (nothing outside the lab to ask), its configuration and pid file in the lab's directory.
lab_ngircd() {
    local sfx=${1-} s t conf
    s=$(lab_ns server "$sfx") && t=$(lab_tmp "$sfx") || return 1
    conf="$t/ngircd.conf"
    cat >"$conf" <<CONF || return 1
[Global]
    Name = irc.lab.test
    Info = Offload lab IRC server
    Listen = $LAB_WAN4_SERVER
    Ports = 6667
    PidFile = $t/ngircd.pid
    MotdPhrase = lab
[Limits]
    MaxConnectionsIP = 0
    PingTimeout = 120
[Options]
    DNS = no
    Ident = no
    PAM = no
    SyslogFacility = local7
CONF
    ip netns exec "$s" ngircd -n -f "$conf" </dev/null >"$t/ngircd.log" 2>&1 &
    lab_wait_port "$s" 6667 10 tcp || { lab_log "ngircd: $(tail -5 "$t/ngircd.log")"; return 1; }
}

# lab_kernel_tftp_irc_nat [SUFFIX] : the kernel's MASQUERADE on wan0 (IPv4 and IPv6) with its tftp helper
# (both families) and its irc helper (IPv4 only, as the kernel has it) attached explicitly. Idempotent.
lab_kernel_tftp_irc_nat() {
    local r ipt
    r=$(lab_ns router "${1-}") || return 1
    lab_kernel_nat "${1-}" || return 1
    for ipt in iptables ip6tables; do
        _lab_rule "$r" "$ipt" -t raw PREROUTING -p udp --dport 69 -j CT --helper tftp || return 1
    done
    _lab_rule "$r" iptables -t raw PREROUTING -p tcp --dport 6667 -j CT --helper irc
}

# lab_irc_script [SUFFIX] -> the path of the scripted IRC client, written into the lab's directory.
#
#   python3 SCRIPT offer  SERVER NICK PEER OUTDIR [foreign-address]   (the client behind the NAT, "alice")
#       registers, waits for OUTDIR/peer-ready, offers DCC SEND of OUTDIR/send.bin from a listening socket and
#       serves it, then DCC CHAT (receives a line from the peer and answers), then a DCC CHAT announcing the
#       foreign address (no listener behind it); then waits for OUTDIR/done and quits.
#   python3 SCRIPT accept SERVER NICK OUTDIR                           (the peer in the server namespace, "bob")
#       registers, writes OUTDIR/peer-ready, and for each DCC offer received writes the raw line to
#       OUTDIR/offers.txt, connects to the announced endpoint (not for the third, foreign one), receives the
#       file into OUTDIR/received.bin (acknowledging as DCC does) or chats; writes OUTDIR/chat.txt.
#   Each side writes what happened to OUTDIR/<nick>.log and exits non-zero on any failure; every socket has a
#   timeout, the whole run at most 40 s.
lab_irc_script() {
    local t path
    t=$(lab_tmp "${1-}") || return 1
    path="$t/irc-dcc.py"
    [[ -f $path ]] && { printf '%s\n' "$path"; return 0; }
    cat >"$path" <<'PY' || return 1
import os, socket, struct, sys, time

DEADLINE = time.monotonic() + 40
TIMEOUT = 10


def log(out, nick, text):
    with open(os.path.join(out, nick + ".log"), "a") as f:
        f.write(text + "\n")


def wait_file(path):
    while not os.path.exists(path):
        if time.monotonic() > DEADLINE:
            raise TimeoutError("waiting for " + path)
        time.sleep(0.05)


class Irc:
    def __init__(self, server, nick):
        self.sock = socket.create_connection((server, 6667), timeout=TIMEOUT)
        self.buf = b""
        self.nick = nick
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :{nick}")
        while True:
            line = self.line()
            if line.startswith(b"PING"):
                self.send("PONG " + line.split(b" ", 1)[1].decode())
            elif line.split(b" ")[1:2] in ([b"376"], [b"422"]):  # end of (or no) MOTD: registered
                return

    def send(self, text):
        data = text.encode("latin-1") if isinstance(text, str) else text
        self.sock.sendall(data + b"\r\n")

    def line(self):
        while b"\n" not in self.buf:
            if time.monotonic() > DEADLINE:
                raise TimeoutError("IRC line")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("IRC server closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")


def offer(server, nick, peer, out, foreign):
    irc = Irc(server, nick)
    wait_file(os.path.join(out, "peer-ready"))
    own = irc.sock.getsockname()[0]
    number = struct.unpack("!I", socket.inet_aton(own))[0]
    data = open(os.path.join(out, "send.bin"), "rb").read()

    # DCC SEND: serve the file, read the peer's acknowledgements (total bytes so far, 32-bit network order).
    lst = socket.socket()
    lst.bind((own, 0))
    lst.listen(1)
    lst.settimeout(TIMEOUT)
    port = lst.getsockname()[1]
    irc.send(f"PRIVMSG {peer} :\x01DCC SEND send.bin {number} {port} {len(data)}\x01")
    log(out, nick, f"offered SEND {own} {number} {port}")
    conn, addr = lst.accept()
    conn.settimeout(TIMEOUT)
    log(out, nick, f"SEND connection from {addr[0]}")
    conn.sendall(data)
    acked = 0
    while acked < len(data):
        chunk = b""
        while len(chunk) < 4:
            more = conn.recv(4 - len(chunk))
            if not more:
                raise ConnectionError("peer closed before acknowledging everything")
            chunk += more
        acked = struct.unpack("!I", chunk)[0]
    conn.close()
    lst.close()
    log(out, nick, f"SEND acknowledged {acked}")

    # DCC CHAT: the peer speaks first; answer it.
    lst = socket.socket()
    lst.bind((own, 0))
    lst.listen(1)
    lst.settimeout(TIMEOUT)
    port = lst.getsockname()[1]
    irc.send(f"PRIVMSG {peer} :\x01DCC CHAT chat {number} {port}\x01")
    conn, addr = lst.accept()
    conn.settimeout(TIMEOUT)
    got = b""
    while not got.endswith(b"\n"):
        more = conn.recv(1024)
        if not more:
            break
        got += more
    log(out, nick, "CHAT got " + got.decode("latin-1").strip())
    conn.sendall(b"hello bob, alice here\n")
    conn.close()
    lst.close()

    # A CHAT offer for someone else's address: nothing listens behind it.
    foreign_number = struct.unpack("!I", socket.inet_aton(foreign))[0]
    irc.send(f"PRIVMSG {peer} :\x01DCC CHAT chat {foreign_number} 5555\x01")
    log(out, nick, f"offered foreign CHAT {foreign} {foreign_number} 5555")
    wait_file(os.path.join(out, "done"))
    irc.send("QUIT :bye")
    log(out, nick, "quit")


def accept(server, nick, out):
    irc = Irc(server, nick)
    open(os.path.join(out, "peer-ready"), "w").close()
    offers = 0
    while offers < 3:
        line = irc.line()
        if line.startswith(b"PING"):
            irc.send(b"PONG " + line.split(b" ", 1)[1])
            continue
        if b"\x01DCC " not in line:
            continue
        offers += 1
        with open(os.path.join(out, "offers.txt"), "ab") as f:
            f.write(line + b"\n")
        body = line.split(b"\x01")[1].split()
        kind, address, port = body[1], int(body[3]), int(body[4])
        host = socket.inet_ntoa(struct.pack("!I", address))
        log(out, nick, f"offer {kind.decode()} {host} {port}")
        if offers == 3:
            break
        conn = socket.create_connection((host, port), timeout=TIMEOUT)
        if kind == b"SEND":
            size, got = int(body[5]), bytearray()
            while len(got) < size:
                more = conn.recv(65536)
                if not more:
                    break
                got += more
                conn.sendall(struct.pack("!I", len(got)))
            open(os.path.join(out, "received.bin"), "wb").write(got)
            log(out, nick, f"SEND received {len(got)}")
        else:
            conn.sendall(b"hello alice, bob here\n")
            answer = b""
            while not answer.endswith(b"\n"):
                more = conn.recv(1024)
                if not more:
                    break
                answer += more
            with open(os.path.join(out, "chat.txt"), "ab") as f:
                f.write(answer)
        conn.close()
    log(out, nick, "all offers seen")


if __name__ == "__main__":
    mode = sys.argv[1]
    try:
        if mode == "offer":
            offer(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6])
        else:
            accept(sys.argv[2], sys.argv[3], sys.argv[4])
    except Exception as e:  # noqa: BLE001 - any failure is reported the same way
        log(sys.argv[5] if mode == "offer" else sys.argv[4], sys.argv[3], f"FAILED {type(e).__name__}: {e}")
        sys.exit(1)
PY
    printf '%s\n' "$path"
}

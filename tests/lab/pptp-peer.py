#!/usr/bin/env python3
"""Scripted PPTP peers for tests/lab/e2e-pptp.sh (a real PPTP server, pptpd, cannot carry a call here: the kernel
has no PPP, so pppd cannot run; the control channel is real, the call's GRE comes from these scripts).

  pptp-peer.py client SERVER SOURCE CALL_ID COUNT [PORT]
      A PPTP client (PNS): opens the control connection from SOURCE to SERVER:1723, Start-Control-Connection,
      Outgoing-Call-Request with CALL_ID; on the reply sends COUNT enhanced GRE packets to the server's call ID and
      counts the GRE that comes back to CALL_ID; then, unless the server closes the control connection within
      PPTP_WAIT_CLOSE seconds (default 3; pptpd does once pppd fails), Call-Clear-Request. Prints one JSON line:
      {"pac": server call ID, "peer": the call ID the reply names, "result": reply's result code, "sent": N, "received": N}

  pptp-peer.py gre-echo IFACE SECONDS
      Beside pptpd on the server: reads the Outgoing-Call-Replies pptpd sends (which pair its call ID with the
      caller's, as the server sees it) and answers every GRE packet to one of those call IDs with a GRE packet to the
      caller's call ID, for SECONDS. Prints how many it answered, by caller call ID, as JSON.

  pptp-peer.py pac ADDRESS SECONDS
      A scripted PPTP server (PAC) for IPv6, which pptpd does not speak: answers Start-Control-Connection and
      Outgoing-Call-Request (its call ID 0x5150 + n) on ADDRESS:1723, and echoes GRE like gre-echo.
"""
import json, os, select, signal, socket, struct, sys, time

COOKIE = 0x1A2B3C4D
GRE_PROTO = 47


def message(msg_type, body):
    length = 12 + len(body)
    return struct.pack("!HHIHH", length, 1, COOKIE, msg_type, 0) + body


def read_message(sock, deadline):
    data = b""
    while True:
        if len(data) >= 2:
            length = struct.unpack("!H", data[:2])[0]
            if length < 12:
                raise ValueError("bad length")
            if len(data) >= length:
                return data[:length], data[length:]
        left = deadline - time.time()
        if left <= 0:
            raise TimeoutError("no PPTP message")
        sock.settimeout(left)
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("control connection closed")
        data += chunk


def gre(call_id, seq, payload):
    # Enhanced GRE (RFC 2637): K and S set, version 1, protocol PPP, payload length, call ID, sequence number.
    return struct.pack("!BBHHHI", 0x30, 0x01, 0x880B, len(payload), call_id, seq) + payload


def parse_gre(packet):
    """(call_id, payload) of an enhanced GRE packet (bytes start at the GRE header), or None."""
    if len(packet) < 8 or packet[1] & 7 != 1 or struct.unpack("!H", packet[2:4])[0] != 0x880B:
        return None
    flags = packet[0]
    off = 8 + (4 if flags & 0x10 else 0) + (4 if packet[1] & 0x80 else 0)
    return struct.unpack("!H", packet[6:8])[0], packet[off:]


def gre_socket(family):
    s = socket.socket(family, socket.SOCK_RAW, GRE_PROTO)
    s.setblocking(False)
    return s


def received_gre(sock, family):
    """(source address, GRE bytes) from a raw GRE socket: IPv4 raw sockets hand over the IP header, IPv6 ones do not."""
    data, addr = sock.recvfrom(65535)
    if family == socket.AF_INET:
        data = data[(data[0] & 0x0F) * 4:]
    return addr[0], data


def set_up_call(family, server, source, call_id, port, deadline):
    """Control connection, session and outgoing call: (socket, leftover bytes, Outgoing-Call-Reply)."""
    ctl = socket.socket(family, socket.SOCK_STREAM)
    ctl.bind((source, 0))
    ctl.settimeout(10)
    ctl.connect((server, port))
    ctl.sendall(message(1, struct.pack("!HHIIHH", 0x0100, 0, 1, 1, 1, 1) + b"pns".ljust(64, b"\0") + b"lab".ljust(64, b"\0")))
    reply, rest = read_message(ctl, deadline)
    assert struct.unpack("!H", reply[8:10])[0] == 2, "expected Start-Control-Connection-Reply"
    ctl.sendall(message(7, struct.pack("!HHIIIIHHHH", call_id, 1, 300, 100000000, 3, 3, 64, 0, 0, 0) + b"\0" * 128))
    while True:
        reply, rest = read_message(ctl, deadline) if not rest else (rest, b"")
        if struct.unpack("!H", reply[8:10])[0] == 8:
            return ctl, rest, reply


def client(server, source, call_id, count, port=1723):
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    deadline = time.time() + 20
    raw = gre_socket(family)
    raw.bind((source, 0))  # else a second client address would send its GRE from the first
    try:
        ctl, rest, reply = set_up_call(family, server, source, call_id, port, deadline)
    except EOFError:
        # pptpd now and then closes a control connection that arrives while another one's pppd fails; a client
        # dials again, and so does this one, once (said on stderr).
        print("server closed the control connection before the call was set up: dialling again", file=sys.stderr)
        ctl, rest, reply = set_up_call(family, server, source, call_id, port, deadline)
    pac, peer, result = struct.unpack("!HHB", reply[12:17])
    sent = received = 0
    seq = 0
    end = time.time() + 8
    while time.time() < end and (sent < count or received < count):
        if sent < count:
            seq += 1
            raw.sendto(gre(pac, seq, b"PPTP-LAB-%d" % seq), (server, 0))
            sent += 1
        ready, _, _ = select.select([raw], [], [], 0.02)
        if ready:
            src, data = received_gre(raw, family)
            parsed = parse_gre(data)
            if parsed and parsed[0] == call_id and parsed[1].startswith(b"PPTP-ECHO"):
                received += 1
    # pptpd closes the control connection once pppd fails (no /dev/ppp): wait for that a while, and clear the call only
    # if the connection is still open, so that no reset answers the request of a closing server.
    closed = False
    wait_until = time.time() + float(os.environ.get("PPTP_WAIT_CLOSE", "3"))
    while not closed and time.time() < wait_until:
        ready, _, _ = select.select([ctl], [], [], 0.1)
        if ready:
            try:
                closed = ctl.recv(4096) == b""
            except OSError:
                closed = True
    if not closed:
        ctl.sendall(message(12, struct.pack("!HH", call_id, 0)))
        time.sleep(0.2)
    ctl.close()
    print(json.dumps({"pac": pac, "peer": peer, "result": result, "sent": sent, "received": received}))


def echo_gre(raw, family, calls, answered, pending):
    """Answers the GRE waiting on raw; one for a call not seen yet (its reply may still be in the sniffer's queue) is
    kept a while and tried again."""
    while True:
        try:
            pending.append((time.time(), received_gre(raw, family)))
        except BlockingIOError:
            break
    keep = []
    for at, (src, data) in pending:
        parsed = parse_gre(data)
        if not parsed or not parsed[1].startswith(b"PPTP-LAB"):
            continue
        if parsed[0] not in calls:
            if time.time() - at < 3:
                keep.append((at, (src, data)))
            continue
        caller = calls[parsed[0]]
        raw.sendto(gre(caller, 1, b"PPTP-ECHO"), (src, 0))
        answered[caller] = answered.get(caller, 0) + 1
    pending[:] = keep


def gre_echo(iface, seconds):
    # The Outgoing-Call-Replies pptpd sends name (its call ID, the caller's call ID as it arrived).
    # ETH_P_ALL: a packet socket sees the frames its host sends only with that protocol.
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sniff.bind((iface, 0x0003))
    sniff.setblocking(False)
    raw = gre_socket(socket.AF_INET)
    calls, answered = {}, {}
    end = time.time() + seconds
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", file=sys.stderr, flush=True)
    try:
        _gre_echo_loop(sniff, raw, calls, answered, end)
    finally:
        print(json.dumps({str(k): v for k, v in answered.items()}), flush=True)


def _gre_echo_loop(sniff, raw, calls, answered, end):
    pending = []
    while time.time() < end:
        select.select([sniff, raw], [], [], 0.05)
        # Every frame sniffed so far first: a call's reply is known before its GRE is answered.
        while True:
            try:
                frame = sniff.recv(65535)
            except BlockingIOError:
                break
            ip = frame[14:] if frame[12:14] == b"\x08\x00" else b""
            if len(ip) < 20 or ip[9] != 6:
                continue
            tcp = ip[(ip[0] & 0x0F) * 4:]
            if len(tcp) < 20 or struct.unpack("!H", tcp[:2])[0] != 1723:
                continue
            payload = tcp[(tcp[12] >> 4) * 4:]
            off = 0
            while off + 12 <= len(payload):
                length, _, cookie, kind = struct.unpack("!HHIH", payload[off:off + 10])
                if length < 12 or cookie != COOKIE:
                    break
                if kind == 8 and off + 16 <= len(payload):
                    pac_call, peer = struct.unpack("!HH", payload[off + 12:off + 16])
                    calls[pac_call] = peer
                off += length
        echo_gre(raw, socket.AF_INET, calls, answered, pending)


def pac(address, seconds):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    lsock = socket.socket(family, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((address, 1723))
    lsock.listen(8)
    lsock.setblocking(False)
    raw = gre_socket(family)
    conns, buffers, calls, answered = [], {}, {}, {}
    end = time.time() + seconds
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", file=sys.stderr, flush=True)
    try:
        _pac_loop(lsock, raw, family, conns, buffers, calls, answered, end)
    finally:
        print(json.dumps({str(k): v for k, v in answered.items()}), flush=True)


def _pac_loop(lsock, raw, family, conns, buffers, calls, answered, end):
    next_call = 0x5150
    pending = []
    while time.time() < end:
        ready, _, _ = select.select([lsock, raw] + conns, [], [], 0.2)
        for s in ready:
            if s is lsock:
                c, _ = lsock.accept()
                conns.append(c)
                buffers[c] = b""
            elif s is raw:
                echo_gre(raw, family, calls, answered, pending)
            else:
                chunk = s.recv(4096)
                if not chunk:
                    conns.remove(s)
                    s.close()
                    continue
                buffers[s] += chunk
                data = buffers[s]
                while len(data) >= 12 and len(data) >= struct.unpack("!H", data[:2])[0] >= 12:
                    length = struct.unpack("!H", data[:2])[0]
                    msg, data = data[:length], data[length:]
                    kind = struct.unpack("!H", msg[8:10])[0]
                    if kind == 1:
                        s.sendall(message(2, struct.pack("!HBBIIHH", 0x0100, 1, 0, 1, 1, 1, 1) + b"pac".ljust(64, b"\0") + b"lab".ljust(64, b"\0")))
                    elif kind == 7:
                        caller = struct.unpack("!H", msg[12:14])[0]
                        calls[next_call] = caller
                        s.sendall(message(8, struct.pack("!HHBBHIHHI", next_call, caller, 1, 0, 0, 100000000, 64, 0, 0)))
                        next_call += 1
                buffers[s] = data


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "client":
        client(sys.argv[2], sys.argv[3], int(sys.argv[4], 0), int(sys.argv[5]), int(sys.argv[6]) if len(sys.argv) > 6 else 1723)
    elif mode == "gre-echo":
        gre_echo(sys.argv[2], float(sys.argv[3]))
    elif mode == "pac":
        pac(sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit(__doc__)

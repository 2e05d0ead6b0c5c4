#!/usr/bin/env python3
"""A tiny ONC RPC service for the RPC helper's lab (tests/lab/e2e-rpc.sh).

  rpc-peer.py serve PROGRAM VERSION PORT
  rpc-peer.py getport HOST PROGRAM VERSION tcp|udp
  rpc-peer.py call HOST PORT PROGRAM VERSION tcp|udp

registers PROGRAM/VERSION at PORT for TCP and UDP, IPv4 and IPv6, with the local rpcbind (portmapper version 2 SET
from a privileged port on the loopback, as a root-run service does, and rpcbind version 3 SET for tcp6 and udp6),
then answers the NULL procedure on that port over UDP and TCP (record marking, RFC 5531 section 11), as
rpcinfo -T tcp|udp|tcp6|udp6 HOST PROGRAM VERSION calls it. Every
answered call is logged to stdout as "answered PROTO FROM". It unregisters on SIGTERM.

getport asks HOST's portmapper where PROGRAM/VERSION listens with portmapper version 2 GETPORT over UDP (what
glibc's pmap_getport and the kernel's NFS mount do; rpcinfo asks with version 4 GETADDR), then calls the NULL
procedure there over the protocol asked. It prints "ready PORT" and exits 0, or exits 1 saying what failed.

call calls the NULL procedure at HOST:PORT without asking the portmapper (rpcinfo -n still asks it first).
"""
import signal
import socket
import struct
import sys
import threading

PMAP_PROG, PMAP_VERS, PMAPPROC_SET, PMAPPROC_UNSET = 100000, 2, 1, 2


def ask_rpcbind(call):
    """Sends a call to the local rpcbind (127.0.0.1:111, UDP, from a privileged port as a root-run service does) until
    it answers; True when the answer is an accepted, successful "true" (the boolean SET and UNSET return)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for privileged in range(600, 700):
            try:
                s.bind(("127.0.0.1", privileged))
                break
            except OSError:
                continue
        s.settimeout(2)
        for _ in range(10):
            s.sendto(call, ("127.0.0.1", 111))
            try:
                reply = s.recv(512)
            except socket.timeout:
                continue
            # xid, REPLY, MSG_ACCEPTED, verifier (flavor, empty), SUCCESS, bool
            return len(reply) >= 28 and struct.unpack(">I", reply[-4:])[0] == 1
    return False


def pmap(proc, prog, vers, proto, port):
    """Portmapper v2 SET or UNSET for one transport; True when rpcbind said yes."""
    call = struct.pack(">IIIIII", 0x5e7 + proc + proto, 0, 2, PMAP_PROG, PMAP_VERS, proc)
    call += struct.pack(">IIII", 0, 0, 0, 0)  # AUTH_NONE credential and verifier
    return ask_rpcbind(call + struct.pack(">IIII", prog, vers, proto, port))


def rpcb_set(prog, vers, netid, port):
    """rpcbind version 3 SET for an IPv6 netid (tcp6, udp6) at the wildcard address, as libtirpc's rpcb_set does;
    True when rpcbind said yes (version 2 SET registers IPv4 only)."""
    def string(text):
        data = text.encode()
        return struct.pack(">I", len(data)) + data + b"\0" * (-len(data) % 4)

    call = struct.pack(">IIIIII", 0x5e70 + len(netid), 0, 2, PMAP_PROG, 3, 1) + struct.pack(">IIII", 0, 0, 0, 0)
    uaddr = f"::.{port >> 8}.{port & 0xff}"
    return ask_rpcbind(call + struct.pack(">II", prog, vers) + string(netid) + string(uaddr) + string("superuser"))


def answer(call):
    """The reply to a NULL call (any other procedure: PROC_UNAVAIL); None for what is no call."""
    if len(call) < 24:
        return None
    xid, mtype, rpcvers, prog, vers, proc = struct.unpack(">IIIIII", call[:24])
    if mtype != 0 or rpcvers != 2:
        return None
    status = 0 if proc == 0 else 3
    return struct.pack(">IIIIII", xid, 1, 0, 0, 0, status)


def serve_udp(sock):
    while True:
        data, peer = sock.recvfrom(65535)
        reply = answer(data)
        if reply is not None:
            sock.sendto(reply, peer)
            print(f"answered udp {peer[0]}", flush=True)


def read_record(conn):
    record = b""
    while True:
        mark = recv_exact(conn, 4)
        if mark is None:
            return None
        (word,) = struct.unpack(">I", mark)
        body = recv_exact(conn, word & 0x7FFFFFFF)
        if body is None:
            return None
        record += body
        if word & 0x80000000:
            return record


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve_tcp_client(conn, peer):
    with conn:
        while True:
            record = read_record(conn)
            if record is None:
                return
            reply = answer(record)
            if reply is not None:
                conn.sendall(struct.pack(">I", 0x80000000 | len(reply)) + reply)
                print(f"answered tcp {peer[0]}", flush=True)


def serve_tcp(sock):
    while True:
        conn, peer = sock.accept()
        threading.Thread(target=serve_tcp_client, args=(conn, peer), daemon=True).start()


def call_null(host, port, prog, vers, proto):
    """The NULL procedure at host:port over TCP or UDP; True when it was answered with success."""
    call = struct.pack(">IIIIII", 0x4e11, 0, 2, prog, vers, 0) + struct.pack(">IIII", 0, 0, 0, 0)
    if proto == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1)
            for _ in range(5):
                s.sendto(call, (host, port))
                try:
                    return s.recv(512)[:24] == answer(call)
                except socket.timeout:
                    continue
        return False
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(struct.pack(">I", 0x80000000 | len(call)) + call)
        s.settimeout(5)
        return read_record(s) == answer(call)


def getport(host, prog, vers, proto):
    call = struct.pack(">IIIIII", 0x6e7, 0, 2, PMAP_PROG, PMAP_VERS, 3) + struct.pack(">IIII", 0, 0, 0, 0)
    call += struct.pack(">IIII", prog, vers, 6 if proto == "tcp" else 17, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        reply = None
        for _ in range(5):
            s.sendto(call, (host, 111))
            try:
                reply = s.recv(512)
                break
            except socket.timeout:
                continue
    if reply is None or len(reply) != 28:
        sys.exit(f"rpc-peer: no GETPORT answer from {host}")
    (port,) = struct.unpack(">I", reply[24:])
    if port == 0:
        sys.exit(f"rpc-peer: {prog}/{vers} is not registered at {host}")
    try:
        ok = call_null(host, port, prog, vers, proto)
    except OSError as e:
        sys.exit(f"rpc-peer: calling {host}:{port} over {proto}: {e}")
    if not ok:
        sys.exit(f"rpc-peer: no answer from {host}:{port} over {proto}")
    print(f"ready {port}", flush=True)


def main():
    if len(sys.argv) == 7 and sys.argv[1] == "call":
        host, port, proto = sys.argv[2], int(sys.argv[3]), sys.argv[6]
        try:
            ok = call_null(host, port, int(sys.argv[4], 0), int(sys.argv[5]), proto)
        except OSError as e:
            sys.exit(f"rpc-peer: calling {host}:{port} over {proto}: {e}")
        if not ok:
            sys.exit(f"rpc-peer: no answer from {host}:{port} over {proto}")
        print(f"ready {port}", flush=True)
        return
    if len(sys.argv) == 6 and sys.argv[1] == "getport":
        getport(sys.argv[2], int(sys.argv[3], 0), int(sys.argv[4]), sys.argv[5])
        return
    if len(sys.argv) != 5 or sys.argv[1] != "serve":
        sys.exit(__doc__)
    prog, vers, port = int(sys.argv[2], 0), int(sys.argv[3]), int(sys.argv[4])
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", port))
    tcp.listen(16)
    udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    udp6.bind(("::", port))
    tcp6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    tcp6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    tcp6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp6.bind(("::", port))
    tcp6.listen(16)
    for proto in (6, 17):
        if not pmap(PMAPPROC_SET, prog, vers, proto, port):
            sys.exit(f"rpc-peer: rpcbind refused to register {prog}/{vers} proto {proto} at {port}")
    for netid in ("tcp6", "udp6"):
        if not rpcb_set(prog, vers, netid, port):
            sys.exit(f"rpc-peer: rpcbind refused to register {prog}/{vers} {netid} at {port}")

    def stop(*_):
        for proto in (6, 17):
            pmap(PMAPPROC_UNSET, prog, vers, proto, 0)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"registered {prog:#x}/{vers} at {port}", flush=True)
    threading.Thread(target=serve_udp, args=(udp,), daemon=True).start()
    threading.Thread(target=serve_udp, args=(udp6,), daemon=True).start()
    threading.Thread(target=serve_tcp, args=(tcp6,), daemon=True).start()
    serve_tcp(tcp)


if __name__ == "__main__":
    main()

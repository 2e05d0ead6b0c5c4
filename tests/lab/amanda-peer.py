#!/usr/bin/env python3
"""Scripted Amanda peers for the lab (stdlib only), speaking Amanda's UDP wire format (bsd auth).

  amanda-peer.py amandad --ports 50000,50010,50020 --out DIR [--timeout S]
      The backup client's daemon: on UDP 10080 it answers each REQ with an ACK and a REP whose
      CONNECT line announces DATA, MESG and INDEX on the given TCP ports (each REP as sent goes to
      DIR/sent-HANDLE.bin), where it listens and sends each stream's bytes to whoever connects (the
      stream is chosen by the port it listens on).

  amanda-peer.py server --amandad ADDR --sessions N --out DIR [--hold READY GO] [--timeout S]
      The backup server: N sessions, each from its own UDP port (850, 851, ...). It gets every
      session's REP first (so later sessions are answered while the earlier ones' streams are still
      expected), writes each REP's payload as received to DIR/rep-I.bin, then, after the optional
      hold (writes READY, waits for GO), connects to every port each REP announces and checks the
      bytes of each stream. Prints one line per stream; exits 0 when every stream arrived intact.
"""
import argparse
import hashlib
import os
import re
import socket
import sys
import threading
import time

AMANDA_PORT = 10080
STREAMS = ("DATA", "MESG", "INDEX")
SIZES = {"DATA": 400_000, "MESG": 3_000, "INDEX": 20_000}


def stream_bytes(name):
    """The deterministic bytes of one stream: a SHA-256 counter stream, the same in every process."""
    out = bytearray()
    counter = 0
    while len(out) < SIZES[name]:
        out += hashlib.sha256(f"{name}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[: SIZES[name]])


def header(kind, handle, seq):
    return f"Amanda 3.5 {kind} HANDLE {handle} SEQ {seq}\n"


# --- amandad --------------------------------------------------------------------------------------

def serve_stream(listener, name):
    data = stream_bytes(name)
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)


def amandad(args):
    os.makedirs(args.out, exist_ok=True)
    ports = [int(p) for p in args.ports.split(",")]
    if len(ports) != len(STREAMS):
        sys.exit("amandad: --ports needs one port per stream (DATA, MESG, INDEX)")
    for name, port in zip(STREAMS, ports):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(16)
        threading.Thread(target=serve_stream, args=(listener, name), daemon=True).start()

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", AMANDA_PORT))
    udp.settimeout(0.5)
    connect = "CONNECT " + " ".join(f"{n} {p}" for n, p in zip(STREAMS, ports)) + "\n"
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            packet, peer = udp.recvfrom(65535)
        except socket.timeout:
            continue
        m = re.match(rb"Amanda \S+ REQ HANDLE (\S+) SEQ (\d+)\n", packet)
        if not m:
            continue  # the server's ACKs of our REPs
        handle, seq = m.group(1).decode(), m.group(2).decode()
        udp.sendto((header("ACK", handle, seq) + "\n").encode(), peer)
        rep = header("REP", handle, seq) + "SECURITY USER backup\n" + connect + "OPTIONS features=9ffe00;\n"
        with open(os.path.join(args.out, f"sent-{handle}.bin"), "wb") as f:
            f.write(rep.encode())
        udp.sendto(rep.encode(), peer)


# --- server ---------------------------------------------------------------------------------------

def request(index):
    handle = f"000-0000A{index:03d}"
    seq = 1700000000 + index
    text = (header("REQ", handle, seq) + "SECURITY USER backup\nSERVICE sendbackup\n"
            + "OPTIONS features=9ffe00;hostname=client;\nGNUTAR /home 0 1970:1:1:0:0:0 OPTIONS |;index;\n")
    return text.encode()


def get_reply(index, amandad_addr, deadline):
    """One session's REQ/ACK/REP exchange; returns the REP's payload as received."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 850 + index))
    udp.connect((amandad_addr, AMANDA_PORT))
    udp.settimeout(1.0)
    req = request(index)
    while time.monotonic() < deadline:
        udp.send(req)
        try:
            while True:
                packet = udp.recv(65535)
                if re.match(rb"Amanda \S+ REP ", packet):
                    m = re.match(rb"Amanda \S+ REP HANDLE (\S+) SEQ (\d+)\n", packet)
                    udp.send(header("ACK", m.group(1).decode(), m.group(2).decode()).encode() + b"\n")
                    udp.close()
                    return packet
        except socket.timeout:
            continue  # resend the request, as Amanda does
    sys.exit(f"server: no REP for session {index}")


def fetch(addr, port, deadline):
    with socket.create_connection((addr, port), timeout=max(1.0, deadline - time.monotonic())) as conn:
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def server(args):
    deadline = time.monotonic() + args.timeout
    os.makedirs(args.out, exist_ok=True)
    replies = []
    for i in range(args.sessions):
        rep = get_reply(i, args.amandad, deadline)
        with open(os.path.join(args.out, f"rep-{i}.bin"), "wb") as f:
            f.write(rep)
        replies.append(rep)

    if args.hold:
        ready, go = args.hold
        open(ready, "w").close()
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                sys.exit("server: no go")
            time.sleep(0.05)

    bad = 0
    for i, rep in enumerate(replies):
        line = re.search(rb"CONNECT ([^\n]*)\n", rep)
        announced = re.findall(rb"(DATA|MESG|INDEX) (\d+)", line.group(1)) if line else []
        if len(announced) != len(STREAMS):
            print(f"session {i}: CONNECT line not understood: {rep!r}")
            bad += 1
            continue
        for name, port in announced:
            name, port = name.decode(), int(port)
            try:
                got = fetch(args.amandad, port, deadline)
            except OSError as e:
                print(f"session {i} {name} port {port}: {e}")
                bad += 1
                continue
            intact = got == stream_bytes(name)
            print(f"session {i} {name} port {port}: {len(got)} bytes {'intact' if intact else 'DIFFER'}")
            bad += 0 if intact else 1
    sys.exit(1 if bad else 0)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    a = sub.add_parser("amandad")
    a.add_argument("--ports", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--timeout", type=float, default=300)
    s = sub.add_parser("server")
    s.add_argument("--amandad", required=True)
    s.add_argument("--sessions", type=int, default=1)
    s.add_argument("--out", required=True)
    s.add_argument("--hold", nargs=2, metavar=("READY", "GO"))
    s.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    (amandad if args.role == "amandad" else server)(args)


if __name__ == "__main__":
    main()

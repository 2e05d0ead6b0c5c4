#!/usr/bin/env python3
"""Peers of the router lab (tests/lab/e2e-router.sh): plain sockets, no third-party module.

  router-peer.py serve DIR [--http 80] [--udp 7] [--gre]
      HTTP on [::]:80 (IPv4 and IPv6): GET /peer answers "ADDRESS PORT" as seen by the server, GET /NAME sends
      DIR/NAME, POST /upload answers "LENGTH SHA256 ADDRESS"; a UDP echo on [::]:7 answering
      "ADDRESS PORT PAYLOAD"; with --gre, a GRE (IPv4, protocol 47) echo: every GRE packet is sent back to its
      source. Runs until killed.
  router-peer.py udp HOST PORT [--timeout S]
      Sends one datagram and prints the answer. Exit 0: answered; 3: refused (an ICMP port unreachable came
      back); 4: no answer in time.
  router-peer.py gre HOST [--count N] [--timeout S]
      Sends GRE packets (protocol type 0x88b5, a nonce as payload) and waits for each to come back from HOST.
      Exit 0 if all came back, 4 otherwise.
"""
import argparse
import hashlib
import http.server
import os
import socket
import sys
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    root = "."

    def log_message(self, fmt, *args):  # quiet: the lab reads answers, not logs
        pass

    def _peer(self):
        host = self.client_address[0]
        if host.startswith("::ffff:"):
            host = host[7:]
        return host, self.client_address[1]

    def _send(self, body, ctype="text/plain"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/peer":
            host, port = self._peer()
            self._send(f"{host} {port}\n".encode())
            return
        name = os.path.basename(self.path)
        path = os.path.join(self.root, name)
        if not name or not os.path.isfile(path):
            self.send_error(404)
            return
        with open(path, "rb") as f:
            self._send(f.read(), "application/octet-stream")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        digest = hashlib.sha256()
        left = length
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        host, _ = self._peer()
        self._send(f"{length - left} {digest.hexdigest()} {host}\n".encode())


class DualStackServer(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def udp_echo(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    while True:
        data, addr = s.recvfrom(2048)
        host = addr[0][7:] if addr[0].startswith("::ffff:") else addr[0]
        s.sendto(f"{host} {addr[1]} ".encode() + data, addr)


def gre_echo():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
    while True:
        packet, addr = s.recvfrom(65535)
        ihl = (packet[0] & 0x0F) * 4
        gre = packet[ihl:]
        if len(gre) >= 4 and gre[4:].startswith(b"ping "):
            s.sendto(gre[:4] + b"pong " + gre[9:], (addr[0], 0))


def serve(args):
    Handler.root = args.dir
    if args.udp:
        threading.Thread(target=udp_echo, args=(args.udp,), daemon=True).start()
    if args.gre:
        threading.Thread(target=gre_echo, daemon=True).start()
    DualStackServer(("::", args.http), Handler).serve_forever()


def udp(args):
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(args.timeout)
    s.connect((args.host, args.port))
    try:
        s.send(b"hello")
        print(s.recv(2048).decode(errors="replace"))
        return 0
    except ConnectionRefusedError:
        print("refused")
        return 3
    except socket.timeout:
        print("timeout")
        return 4


def gre(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
    s.settimeout(0.2)
    got = 0
    for i in range(args.count):
        nonce = f"{os.getpid()}-{i}".encode()
        s.sendto(b"\x00\x00\x88\xb5ping " + nonce, (args.host, 0))
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            try:
                packet, addr = s.recvfrom(65535)
            except socket.timeout:
                continue
            ihl = (packet[0] & 0x0F) * 4
            if addr[0] == args.host and packet[ihl + 4:] == b"pong " + nonce:
                got += 1
                break
    print(f"{got}/{args.count} GRE packets came back")
    return 0 if got == args.count else 4


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("dir")
    s.add_argument("--http", type=int, default=80)
    s.add_argument("--udp", type=int, default=7)
    s.add_argument("--gre", action="store_true")
    u = sub.add_parser("udp")
    u.add_argument("host")
    u.add_argument("port", type=int)
    u.add_argument("--timeout", type=float, default=2.0)
    g = sub.add_parser("gre")
    g.add_argument("host")
    g.add_argument("--count", type=int, default=3)
    g.add_argument("--timeout", type=float, default=2.0)
    args = p.parse_args()
    return {"serve": serve, "udp": udp, "gre": gre}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

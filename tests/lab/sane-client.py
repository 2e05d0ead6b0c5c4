#!/usr/bin/env python3
"""A scripted SANE network client for the lab (stdlib only), speaking saned's protocol: big-endian
32-bit words, strings as a length word (counting the NUL) and the bytes with their NUL.

  sane-client.py HOST DEVICE OUT [--hold READY GO] [--timeout S]

INIT, OPEN DEVICE, START; writes the port of the GOOD answer to OUT.port and the first 16 bytes of
that answer as received (status, port, byte order, resource length) to OUT.reply; after the optional hold
(writes READY, waits for GO) opens the data connection to HOST on that port, reads the records up to
the end mark, writes the image bytes to OUT, then CANCEL, CLOSE and EXIT. Exits 0 when all went well.
"""
import argparse
import os
import socket
import struct
import sys
import time

SANE_PORT = 6566
NET_INIT, NET_OPEN, NET_CLOSE, NET_START, NET_CANCEL, NET_EXIT = 0, 2, 3, 7, 8, 10
VERSION = (1 << 24) | (0 << 16) | 3  # SANE_VERSION_CODE(1, 0, 3)


def word(value):
    return struct.pack(">I", value)


def string(text):
    data = text.encode() + b"\0"
    return word(len(data)) + data


class Wire:
    def __init__(self, sock):
        self.sock = sock

    def exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError(f"connection closed after {len(out)} of {n} bytes")
            out += chunk
        return out

    def word(self):
        return struct.unpack(">I", self.exact(4))[0]

    def string(self):
        n = self.word()
        return self.exact(n).rstrip(b"\0").decode(errors="replace") if n else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("device")
    parser.add_argument("out")
    parser.add_argument("--hold", nargs=2, metavar=("READY", "GO"))
    parser.add_argument("--timeout", type=float, default=20)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout

    control = socket.create_connection((args.host, SANE_PORT), timeout=args.timeout)
    wire = Wire(control)

    control.sendall(word(NET_INIT) + word(VERSION) + string("lab"))
    status, _ = wire.word(), wire.word()
    if status != 0:
        sys.exit(f"INIT: status {status}")

    control.sendall(word(NET_OPEN) + string(args.device))
    status, handle, resource = wire.word(), wire.word(), wire.string()
    if status != 0 or resource:
        sys.exit(f"OPEN: status {status}, resource {resource!r}")

    # One segment of exactly two words, as the SANE helpers look for it.
    control.sendall(word(NET_START) + word(handle))
    fixed = wire.exact(12)
    status, port, _byte_order = struct.unpack(">III", fixed)
    length = wire.word()
    resource = wire.exact(length).rstrip(b"\0").decode(errors="replace") if length else None
    with open(args.out + ".reply", "wb") as f:
        f.write(fixed + word(length))
    if status != 0 or resource:
        sys.exit(f"START: status {status}, resource {resource!r}")
    with open(args.out + ".port", "w") as f:
        f.write(f"{port}\n")

    if args.hold:
        ready, go = args.hold
        open(ready, "w").close()
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                sys.exit("no go")
            time.sleep(0.05)

    image = bytearray()
    with socket.create_connection((args.host, port), timeout=args.timeout) as data:
        records = Wire(data)
        while True:
            length = records.word()
            if length == 0xFFFFFFFF:
                end_status = records.exact(1)[0]
                break
            image += records.exact(length)
    with open(args.out, "wb") as f:
        f.write(image)

    control.sendall(word(NET_CANCEL) + word(handle))
    wire.word()
    control.sendall(word(NET_CLOSE) + word(handle))
    wire.word()
    control.sendall(word(NET_EXIT))
    control.close()
    print(f"data port {port}: {len(image)} image bytes, end status {end_status}")


if __name__ == "__main__":
    main()

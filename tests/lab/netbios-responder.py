#!/usr/bin/env python3
"""A NetBIOS name server for the lab (RFC 1002, name query only): answers every query for NAME, broadcast or
unicast, from its own address on UDP 137, with a positive response naming ADDRESS. It stands for the Windows or
Samba host that holds the name on the far subnet (nmbd is not in the lab's packages).

Usage: netbios-responder.py NAME ADDRESS LOG
Each query it answered is logged as "answered QUERIER-ADDRESS:PORT", flushed at once."""
import socket
import struct
import sys


def encode(name: str) -> bytes:
    """First-level encoding: the name padded to 15 bytes, suffix 0x00, each nibble as a letter."""
    raw = name.upper().ljust(15)[:15].encode("ascii") + b"\x00"
    return bytes([32]) + bytes(c for b in raw for c in (0x41 + (b >> 4), 0x41 + (b & 0x0F))) + b"\x00"


def main() -> None:
    name, address, log = sys.argv[1], sys.argv[2], sys.argv[3]
    wanted = encode(name)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.bind(("0.0.0.0", 137))
    with open(log, "a", buffering=1) as out:
        out.write("listening\n")
        while True:
            data, peer = sock.recvfrom(1500)
            if len(data) < 12 + len(wanted) + 4 or data[2] & 0x80:
                continue
            (opcode,) = struct.unpack("!H", data[2:4])
            if (opcode >> 11) & 0xF != 0 or data[12 : 12 + len(wanted)] != wanted:
                continue
            # Response, authoritative, recursion desired as asked; one answer: NB, IN, TTL 300, one address.
            flags = 0x8500 | (opcode & 0x0100)
            answer = wanted + struct.pack("!HHIHH", 0x20, 1, 300, 6, 0) + socket.inet_aton(address)
            sock.sendto(data[:2] + struct.pack("!HHHHH", flags, 0, 1, 0, 0) + answer, peer)
            out.write(f"answered {peer[0]}:{peer[1]}\n")


if __name__ == "__main__":
    main()

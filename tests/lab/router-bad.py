#!/usr/bin/python3
"""Bad input for the router lab (tests/lab/e2e-router.sh), with scapy (Debian's python3-scapy), bounded.

  router-bad.py --src4 A --dst4 B --src6 C --dst6 D [--natport-dst4 R] [--flood N] [--seed S]

Sends, from the namespace it runs in, to the given addresses:
  - ICMP errors quoting garbage, a truncated IP header, a header whose length runs past the quote, a flow nobody
    knows (B's address and a port of the daemon's range), a foreign flow (addresses neither end owns), and an error
    quoting an error;
  - the same for ICMPv6;
  - IPv6 TCP SYNs behind an AH header, behind a Mobility header, and behind broken extension-header chains
    (a hop-by-hop header longer than the packet, a truncated destination-options header);
  - then a short flood: N packets drawn from all of the above with random fields.
Prints how many packets it sent. Nothing else: the lab checks what leaves the router and what the daemon counts.
"""
import argparse
import os
import random
import struct

os.environ.setdefault("SCAPY_USE_LIBPCAP", "no")
from scapy.config import conf  # noqa: E402

conf.verb = 0
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror  # noqa: E402
from scapy.layers.inet6 import (  # noqa: E402
    ICMPv6DestUnreach,
    ICMPv6PacketTooBig,
    ICMPv6TimeExceeded,
    IPv6,
    IPerror6,
    TCPerror as TCPerror6,
)
from scapy.packet import Raw  # noqa: E402
from scapy.sendrecv import send  # noqa: E402


def tcp6_bytes(src, dst, sport, dport):
    """A TCP SYN's bytes with the checksum for src/dst (as if it followed the IPv6 header directly)."""
    return bytes((IPv6(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S", seq=1))[TCP])


def v4_errors(src, dst, natport_dst):
    """ICMP errors from src to dst whose quotes are wrong in every way we know."""
    rnd = random.Random(4)
    garbage = bytes(rnd.randrange(256) for _ in range(28))
    hdr = bytes(IPerror(src=dst, dst=src) / UDPerror(sport=53, dport=4444))
    quoted_long = bytearray(hdr)
    quoted_long[0] = 0x4F  # IHL 15: 60 bytes of header claimed, 28 bytes quoted
    return [
        IP(src=src, dst=dst) / ICMP(type=3, code=3) / Raw(garbage),
        IP(src=src, dst=dst) / ICMP(type=3, code=3) / Raw(hdr[:10]),  # truncated IP header
        IP(src=src, dst=dst) / ICMP(type=11, code=0) / Raw(bytes(quoted_long)),
        IP(src=src, dst=dst) / ICMP(type=3, code=4, nexthopmtu=576) / Raw(hdr[:20]),  # no L4 bytes at all
        # A flow nobody has: from the destination to a port of the daemon's range at natport_dst.
        IP(src=src, dst=dst) / ICMP(type=3, code=3) / IPerror(src=natport_dst, dst=dst) / UDPerror(sport=61999, dport=9999),
        IP(src=src, dst=dst) / ICMP(type=3, code=1) / IPerror(src=dst, dst=natport_dst) / TCPerror(sport=80, dport=62000, flags="SA"),
        # Foreign: neither address is the sender's or the receiver's.
        IP(src=src, dst=dst) / ICMP(type=3, code=3) / IPerror(src="198.51.100.77", dst="203.0.113.77") / UDPerror(sport=1, dport=2),
        # An error quoting an error (never answered, never translated).
        IP(src=src, dst=dst) / ICMP(type=11, code=0) / IPerror(src=dst, dst=src) / ICMP(type=3, code=3) / Raw(garbage[:8]),
        # An error with no quote at all.
        IP(src=src, dst=dst) / ICMP(type=3, code=3),
    ]


def v6_errors(src, dst):
    rnd = random.Random(6)
    garbage = bytes(rnd.randrange(256) for _ in range(48))
    quote = bytes(IPerror6(src=dst, dst=src) / UDPerror(sport=53, dport=4444))
    return [
        IPv6(src=src, dst=dst) / ICMPv6DestUnreach(code=4) / Raw(garbage),
        IPv6(src=src, dst=dst) / ICMPv6DestUnreach(code=4) / Raw(quote[:20]),  # truncated IPv6 header
        IPv6(src=src, dst=dst) / ICMPv6PacketTooBig(mtu=1280) / Raw(quote[:40]),  # no L4 bytes
        IPv6(src=src, dst=dst) / ICMPv6TimeExceeded() / IPerror6(src="2001:db8:77::1", dst="2001:db8:77::2") / TCPerror6(sport=1, dport=2),
        IPv6(src=src, dst=dst) / ICMPv6DestUnreach(code=4) / IPerror6(src=dst, dst=src, nh=0) / Raw(b"\x06\xff" + garbage[:6]),
    ]


def v6_headers(src, dst):
    """IPv6 TCP that iptables' -p tcp does not match: behind AH, behind Mobility, broken chains."""
    syn = tcp6_bytes(src, dst, 40001, 80)
    ah = bytes([6, 4, 0, 0]) + struct.pack("!II", 0x1000, 1) + bytes(12)  # next TCP, 24 bytes, SPI, seq, ICV
    mh = bytes([6, 0, 0, 0, 0, 0, 0, 0])  # Mobility header claiming TCP as its payload protocol
    return [
        IPv6(src=src, dst=dst, nh=51) / Raw(ah + syn),
        IPv6(src=src, dst=dst, nh=135) / Raw(mh + syn),
        IPv6(src=src, dst=dst, nh=0) / Raw(bytes([6, 200]) + bytes(6) + syn),  # hop-by-hop longer than the packet
        IPv6(src=src, dst=dst, nh=60) / Raw(bytes([6])),  # truncated destination options
        IPv6(src=src, dst=dst, nh=0) / Raw(bytes([60, 0, 1, 4, 0, 0, 0, 0]) + bytes([6, 0, 1, 4, 0, 0, 0, 0])[:5]),
        IPv6(src=src, dst=dst, nh=51) / Raw(ah[:10]),  # truncated AH
    ]


def mutate(rnd, pkt):
    """A copy of pkt with a few random bytes after the first header changed."""
    raw = bytearray(bytes(pkt))
    start = 20 if raw[0] >> 4 == 4 else 40
    for _ in range(rnd.randrange(1, 4)):
        if len(raw) > start:
            raw[rnd.randrange(start, len(raw))] = rnd.randrange(256)
    return (IP if raw[0] >> 4 == 4 else IPv6)(bytes(raw))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src4", required=True)
    p.add_argument("--dst4", required=True)
    p.add_argument("--src6", required=True)
    p.add_argument("--dst6", required=True)
    p.add_argument("--natport-dst4", help="the address a flow of the daemon's port range would have (default: dst4)")
    p.add_argument("--flood", type=int, default=400)
    p.add_argument("--seed", type=int, default=9)
    a = p.parse_args()
    natport = a.natport_dst4 or a.dst4
    base4 = v4_errors(a.src4, a.dst4, natport)
    base6 = v6_errors(a.src6, a.dst6) + v6_headers(a.src6, a.dst6)
    rnd = random.Random(a.seed)
    flood = [mutate(rnd, rnd.choice(base4 + base6)) for _ in range(min(a.flood, 5000))]
    pkts = base4 + base6 + flood
    send([x for x in pkts if bytes(x)[0] >> 4 == 4])
    send([x for x in pkts if bytes(x)[0] >> 4 == 6])
    print(f"sent {len(pkts)} packets ({len(base4)} IPv4 and {len(base6)} IPv6 kinds, {len(flood)} mutated)")


if __name__ == "__main__":
    main()

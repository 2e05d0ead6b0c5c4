#!/usr/bin/env python3
"""Scripted H.323 endpoints for the lab (no H.323 endpoint is packaged in Debian): real messages, encoded in aligned
PER after the ITU-T ASN.1 (H.225.0 v4, H.245 v7) by a small encoder of our own, over TPKT/Q.931 on TCP 1720 and H.245
on the address the Setup announced, RAS on UDP 1719, and RTP both ways.

  h323-peer.py callee --ip IP --out FILE.json       (the far endpoint and gatekeeper, outside)
  h323-peer.py caller --ip IP --callee IP --out FILE.json   (behind the NAT)

The caller registers with the callee acting as gatekeeper (RRQ/RCF), then calls it: Setup with its h245Address,
sourceCallSignalAddress and fastStart (its RTP/RTCP receive addresses), Connect back, the callee opens H.245 to the
announced h245Address, the caller sends an OpenLogicalChannel (its RTCP address), the callee answers with an Ack, and
RTP flows both ways on the addresses each side read in the other's messages. Each side writes what it received
(hex) and counts to FILE.json; the lab compares them across the kernel's helper and offloadd's.
"""
import argparse
import json
import socket
import struct
import sys
import threading
import time

H225_OID = bytes([0x00, 0x08, 0x91, 0x4A, 0x00, 0x04])
CONFERENCE = bytes(range(0x10, 0x20))
CALLER_H245, CALLER_RTP, CALLER_OLC_RTCP = 5000, 6000, 6011
CALLEE_RTP, CALLEE_OLC_RTP = 7000, 7010


class Per:
    """Aligned PER bits; remembers where each address was written (byte offsets)."""

    def __init__(self):
        self.buf = bytearray()
        self.bit = 0
        self.addresses = []

    def bits(self, value, count):
        for i in range(count - 1, -1, -1):
            if self.bit == 0:
                self.buf.append(0)
            if (value >> i) & 1:
                self.buf[-1] |= 0x80 >> self.bit
            self.bit = (self.bit + 1) & 7
        return self

    def b(self, flag):
        return self.bits(1 if flag else 0, 1)

    def align(self):
        self.bit = 0
        return self

    def raw(self, data):
        self.align()
        self.buf += data
        return self

    def byte(self, v):
        return self.raw(bytes([v & 0xFF]))

    def word(self, v):
        return self.raw(struct.pack(">H", v))

    def length(self, n):
        return self.byte(n) if n < 128 else self.raw(struct.pack(">H", 0x8000 | n))

    def open(self, inner):
        data = bytes(inner.buf) or b"\0"
        self.length(len(data))
        start = len(self.buf)
        self.raw(data)
        self.addresses += [start + o for o in inner.addresses]
        return self

    def address(self, ip, port):
        self.align()
        self.addresses.append(len(self.buf))
        return self.raw(socket.inet_aton(ip)).word(port)

    def extensions(self, *present):
        self.bits(len(present) - 1, 7)
        for p in present:
            self.b(p)
        return self.align()


def transport(w, ip, port):  # H.225.0 TransportAddress: ipAddress
    return w.b(0).bits(0, 3).address(ip, port)


def h245_transport(w, ip, port):  # H.245 TransportAddress: unicastAddress iPAddress
    return w.b(0).bits(0, 1).b(0).bits(0, 3).b(0).address(ip, port)


def endpoint_type(w):  # a terminal
    return w.b(0).bits(1, 6).b(0).bits(0, 1).b(0).b(0)


def g711(w):
    return w.b(0).bits(3, 3).b(0).bits(3, 4).byte(19)


def h2250(media=None, control=None):
    w = Per().b(0).bits((0x80 if media else 0) | (0x20 if control else 0), 10).byte(1)
    if media:
        h245_transport(w, *media)
    if control:
        h245_transport(w, *control)
    return w


def olc(w, number, forward_control=None, reverse=None):
    """OpenLogicalChannel: G.711 forward (with its RTCP address), and a reverse channel (media, control)."""
    w.b(0).b(reverse is not None).word(number - 1)
    w.b(0).b(0)
    g711(w)
    w.b(1).bits(0, 7).open(h2250(None, forward_control))
    if reverse is not None:
        w.b(0).b(1)
        g711(w)
        w.b(1).bits(0, 7).open(h2250(*reverse))
    return w


def user_information(body_index):
    return Per().b(0).b(0).b(1).b(0).b(0).bits(body_index, 3)


def uu_tail(w):
    w.extensions(False, True)
    return w.open(Per().b(0))  # h245Tunneling false


def setup(h245, dest, source, fast_start):
    w = user_information(0).b(1).bits((1 << 6) | (1 << 3), 7)
    w.length(len(H225_OID)).raw(H225_OID)
    transport(w, *h245)
    endpoint_type(w)
    transport(w, *dest)
    w.b(0).raw(CONFERENCE).b(0).bits(0, 2).b(0).bits(0, 2)
    w.extensions(True, False, True, False, False, False, True, True, True)
    w.open(transport(Per(), *source))
    w.open(Per().b(0).raw(CONFERENCE))
    fs = Per().length(len(fast_start))
    for item in fast_start:
        fs.open(item)
    w.open(fs)
    w.open(Per().b(0)).open(Per().b(0))
    return uu_tail(w)


def connect(fast_start):
    w = user_information(2).b(1).bits(0, 1)
    w.length(len(H225_OID)).raw(H225_OID)
    endpoint_type(w)
    w.raw(CONFERENCE)
    w.extensions(True, False, False, False, True, True, True)
    w.open(Per().b(0).raw(CONFERENCE))
    fs = Per().length(len(fast_start))
    for item in fast_start:
        fs.open(item)
    w.open(fs)
    w.open(Per().b(0)).open(Per().b(0))
    return uu_tail(w)


def olc_request(number, control):
    return olc(Per().b(0).bits(0, 2).b(0).bits(3, 4), number, forward_control=control)


def olc_ack(number, media, control):
    ack = Per().b(0).b(0).bits(0b00110, 5)
    h245_transport(ack, *media)
    h245_transport(ack, *control)
    return Per().b(0).bits(1, 2).b(0).bits(5, 5).b(1).b(0).word(number - 1).extensions(False, True).open(ack)


def rrq(call_signal, ras):
    w = Per().b(0).bits(3, 5).b(1).bits(0b010, 3).word(0)
    w.length(len(H225_OID)).raw(H225_OID).b(0)
    transport(w.length(1), *call_signal)
    transport(w.length(1), *ras)
    endpoint_type(w)
    w.length(1).b(0).bits(1, 1).byte(4).raw("alice".encode("utf-16-be"))
    w.b(0).bits(0, 2).b(0).byte(0xB5).byte(0).word(0x1234)
    w.extensions(False, True, False, False, False, True, False, True, True)
    w.open(Per().bits(1, 2).word(299))
    w.open(Per().b(0)).open(Per().b(0)).open(Per().b(0))
    return w


def rcf(call_signal):
    w = Per().b(0).bits(4, 5).b(0).bits(0, 3).word(0)
    w.length(len(H225_OID)).raw(H225_OID)
    transport(w.length(1), *call_signal)
    return w.bits(3, 7).align().raw("ep01".encode("utf-16-be"))


def q931(message_type, uu):
    data = bytes(uu.buf)
    msg = bytes([0x08, 0x02, 0x12, 0x34, message_type, 0x04, 0x03, 0x88, 0x93, 0xA5, 0x7E]) + struct.pack(">H", len(data) + 1) + b"\x05"
    start = 4 + len(msg)
    return tpkt(msg + data), [start + o for o in uu.addresses]


def tpkt(data):
    return struct.pack(">BBH", 3, 0, len(data) + 4) + data


def read_tpkt(sock, timeout=20):
    sock.settimeout(timeout)
    head = recv_exact(sock, 4)
    length = struct.unpack(">H", head[2:])[0]
    return head + recv_exact(sock, length - 4)


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def at(data, offset):
    return socket.inet_ntoa(data[offset:offset + 4]), struct.unpack(">H", data[offset + 4:offset + 6])[0]


# The offsets of the addresses in each message do not depend on the addresses' values: the receiver finds them by
# encoding the same message with placeholders.
def setup_message(ip, h245_port, dest, source, rtp_port):
    fast = [olc(Per(), 1, forward_control=(ip, rtp_port + 1)), olc(Per(), 2, reverse=((ip, rtp_port), (ip, rtp_port + 1)))]
    return q931(0x05, setup((ip, h245_port), dest, source, fast))


def connect_message(ip, rtp_port):
    return q931(0x07, connect([olc(Per(), 1, forward_control=(ip, rtp_port + 1), reverse=((ip, rtp_port), (ip, rtp_port + 1)))]))


def h245_message(per):
    return tpkt(bytes(per.buf)), [4 + o for o in per.addresses]


def udp(ip, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    return s


def count_datagrams(sock, seconds, until=40):
    n = 0
    deadline = time.time() + seconds
    while n < until and time.time() < deadline:
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            sock.recvfrom(2048)
            n += 1
        except socket.timeout:
            break
    return n


def send_rtp(sock, to, count=40, interval=0.05):
    for i in range(count):
        sock.sendto(struct.pack(">BBHII", 0x80, 0, i, i * 160, 0x1234) + bytes(160), to)
        time.sleep(interval)


def callee(args):
    out = {}
    ras = udp(args.ip, 1719)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.ip, 1720))
    listener.listen(4)
    rtp = udp(args.ip, CALLEE_RTP)
    print("ready", flush=True)

    # RAS: the registration as received, confirmed with the call signal address it named.
    ras.settimeout(30)
    data, peer = ras.recvfrom(2048)
    template = rrq(("0.0.0.0", 0), ("0.0.0.0", 0))
    out["rrq"] = data.hex()
    out["rrq_offsets"] = template.addresses
    registered = at(data, template.addresses[0])
    out["rrq_call_signal"], out["rrq_ras"] = registered, at(data, template.addresses[1])
    ras.sendto(bytes(rcf(registered).buf), peer)

    # The gatekeeper calls the registered address back: the registration's expectation lets it in.
    try:
        back = socket.create_connection(tuple(registered), timeout=10)
        back.sendall(b"gatekeeper")
        out["registered_reached"] = True
        back.close()
    except OSError as e:
        out["registered_reached"] = "failed: %s" % e

    call, _ = listener.accept()
    setup_bytes = read_tpkt(call)
    _, offsets = setup_message("0.0.0.0", 0, ("0.0.0.0", 0), ("0.0.0.0", 0), 0)
    out["setup"] = setup_bytes.hex()
    out["setup_offsets"] = offsets
    h245_address = at(setup_bytes, offsets[0])
    caller_rtp = at(setup_bytes, offsets[4])  # the reverse channel's mediaChannel: where the caller receives RTP
    out["setup_addresses"] = [at(setup_bytes, o) for o in offsets]
    call.sendall(connect_message(args.ip, CALLEE_RTP)[0])

    h245 = socket.create_connection(tuple(h245_address), timeout=15)
    olc_bytes = read_tpkt(h245)
    olc_offsets = h245_message(olc_request(3, ("0.0.0.0", 0)))[1]
    out["olc"] = olc_bytes.hex()
    out["olc_offsets"] = olc_offsets
    caller_rtcp = at(olc_bytes, olc_offsets[0])
    out["olc_addresses"] = [caller_rtcp]
    h245.sendall(h245_message(olc_ack(3, (args.ip, CALLEE_OLC_RTP), (args.ip, CALLEE_OLC_RTP + 1)))[0])

    heard = []
    listener_thread = threading.Thread(target=lambda: heard.append(count_datagrams(rtp, 25)))
    listener_thread.start()
    send_rtp(rtp, tuple(caller_rtp))
    rtcp = udp(args.ip, CALLEE_OLC_RTP + 1)
    for _ in range(5):
        rtcp.sendto(b"\x81\xc8" + bytes(26), tuple(caller_rtcp))
        time.sleep(0.1)
    listener_thread.join()
    out["rtp_heard"] = heard[0]
    h245.close()
    call.close()
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


def caller(args):
    out = {}
    h245_listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    h245_listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    h245_listener.bind((args.ip, CALLER_H245))
    h245_listener.listen(2)
    signal_listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    signal_listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    signal_listener.bind((args.ip, 1720))
    signal_listener.listen(2)
    rtp = udp(args.ip, CALLER_RTP)
    rtcp = udp(args.ip, CALLER_OLC_RTCP)
    ras = udp(args.ip, 1719)

    # Register: the confirmation must name the caller's own call signal address (translated back).
    ras.settimeout(10)
    confirmed = None
    for _ in range(5):
        ras.sendto(bytes(rrq((args.ip, 1720), (args.ip, 1719)).buf), (args.callee, 1719))
        try:
            data, _ = ras.recvfrom(2048)
            confirmed = at(data, rcf(("0.0.0.0", 0)).addresses[0])
            break
        except socket.timeout:
            continue
    out["rcf_call_signal"] = confirmed
    signal_listener.settimeout(15)
    try:
        back, peer = signal_listener.accept()
        out["gatekeeper_call"] = back.recv(64).decode()
        back.close()
    except OSError as e:
        out["gatekeeper_call"] = "none: %s" % e

    call = socket.create_connection((args.callee, 1720), timeout=15)
    local_port = call.getsockname()[1]
    setup_bytes, _ = setup_message(args.ip, CALLER_H245, (args.callee, 1720), (args.ip, local_port), CALLER_RTP)
    call.sendall(setup_bytes)
    connect_bytes = read_tpkt(call)
    _, offsets = connect_message("0.0.0.0", 0)
    out["connect_addresses"] = [at(connect_bytes, o) for o in offsets]
    callee_rtp = at(connect_bytes, offsets[1])  # the reverse channel's mediaChannel

    h245_listener.settimeout(20)
    h245, _ = h245_listener.accept()
    h245.sendall(h245_message(olc_request(3, (args.ip, CALLER_OLC_RTCP)))[0])
    ack = read_tpkt(h245)
    out["olc_ack_addresses"] = [at(ack, o) for o in h245_message(olc_ack(3, ("0.0.0.0", 0), ("0.0.0.0", 0)))[1]]

    heard, heard_rtcp = [], []
    threads = [threading.Thread(target=lambda: heard.append(count_datagrams(rtp, 25))),
               threading.Thread(target=lambda: heard_rtcp.append(count_datagrams(rtcp, 25, until=5)))]
    for t in threads:
        t.start()
    send_rtp(rtp, tuple(callee_rtp))
    for t in threads:
        t.join()
    out["rtp_heard"], out["rtcp_heard"] = heard[0], heard_rtcp[0]
    time.sleep(1)
    h245.close()
    call.close()
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["caller", "callee"])
    p.add_argument("--ip", required=True)
    p.add_argument("--callee")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    (caller if args.role == "caller" else callee)(args)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
# Records what the ipset tool (Debian's ipset 7.17) sends to the kernel, and some of the kernel's answers, into
# Data/ipset-*.bin: the reference IpsetMessageTests compares our encoder with. Run as root:
#   ip netns add ipset-rec && python3 record-ipset-data.py ipset-rec ../Data; ip netns del ipset-rec
# It runs each ipset command under `strace -e write=3 -e read=3` (the tool's netlink socket is fd 3; it uses
# sendto and recvmsg) and keeps the last datagram of the kind asked for.
import subprocess
import sys

NS, OUT = sys.argv[1], sys.argv[2]


def run(cmd):
    p = subprocess.run(["ip", "netns", "exec", NS, "strace", "-e", "trace=sendto,recvmsg", "-e", "write=3",
                        "-e", "read=3", "-xx", "-s", "0"] + cmd, capture_output=True, text=True)
    events, current = [], None
    for line in p.stderr.splitlines():
        if line.startswith("sendto(") or line.startswith("recvmsg("):
            current = ["send" if line.startswith("sendto(") else "recv", bytearray()]
            events.append(current)
        elif line.startswith(" | ") and current is not None:
            current[1].extend(bytes.fromhex(line[10:59].replace(" ", "")))
    return [(kind, bytes(data)) for kind, data in events]


def save(name, data):
    with open(f"{OUT}/{name}", "wb") as f:
        f.write(data)
    print(name, len(data), data.hex())


SPEC = [
    ("ipset-create-ipportip-inet-timeout.bin", "send", "create offl hash:ip,port,ip family inet timeout 60 maxelem 1024 -exist"),
    ("ipset-create-ipportip-inet6-timeout.bin", "send", "create offl6 hash:ip,port,ip family inet6 timeout 60 maxelem 1024 -exist"),
    ("ipset-create-ipport-inet.bin", "send", "create offlp hash:ip,port family inet maxelem 65536 -exist"),
    ("ipset-add-ipportip-ipv4-timeout.bin", "send", "add offl 192.0.2.1,udp:5000,192.0.2.2 timeout 30 -exist"),
    ("ipset-add-ipportip-ipv6-timeout.bin", "send", "add offl6 2001:db8::1,udp:5000,2001:db8::2 timeout 30 -exist"),
    ("ipset-add-ipport-ipv4.bin", "send", "add offlp 192.0.2.9,tcp:21 -exist"),
    ("ipset-test-ipportip-ipv4.bin", "send", "test offl 192.0.2.1,udp:5000,192.0.2.2"),
    ("ipset-del-ipportip-ipv4.bin", "send", "del offl 192.0.2.1,udp:5000,192.0.2.2 -exist"),
    ("ipset-reply-test-not-in-set.bin", "recv", "test offl 192.0.2.1,udp:5000,192.0.2.2"),
    ("ipset-flush.bin", "send", "flush offl"),
    ("ipset-destroy.bin", "send", "destroy offl -exist"),
]

for name, kind, command in SPEC:
    events = run(["ipset"] + command.split())
    save(name, [data for k, data in events if k == kind][-1])
    if name == "ipset-create-ipportip-inet-timeout.bin":
        requests = [data for k, data in events if k == "send"]
        save("ipset-request-protocol.bin", requests[0])
        save("ipset-request-type-ipportip.bin", requests[1])
        answers = [data for k, data in events if k == "recv"]
        save("ipset-reply-protocol.bin", answers[0])
        save("ipset-reply-type-ipportip.bin", answers[1])
subprocess.run(["ip", "netns", "exec", NS, "ipset", "destroy"])

#!/usr/bin/python3
"""UDP probes for the lab (tests/lab/e2e-rtsp.sh).

  udp-probe.py listen FILE PORT...          counts datagrams per port: appends "PORT" to FILE for each (until killed);
                                            prints "ready" once bound
  udp-probe.py send ADDRESS SPORT DPORT...  one datagram of 20 bytes from SPORT to each DPORT of ADDRESS
"""
import select
import socket
import sys

if sys.argv[1] == "listen":
    out = open(sys.argv[2], "a", buffering=1)
    socks = []
    for port in sys.argv[3:]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(port)))
        socks.append(s)
    print("ready", flush=True)
    while True:
        for s in select.select(socks, [], [])[0]:
            s.recvfrom(2048)
            out.write(f"{s.getsockname()[1]}\n")
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(sys.argv[3])))
    for port in sys.argv[4:]:
        s.sendto(b"probe-not-media-0123", (sys.argv[2], int(port)))

#!/usr/bin/env python3
"""A long, rate-limited TCP stream for the labs, checked end to end by a SHA-256 of what went and what came.

  stream.py serve ADDRESS PORT RESULT [PROGRESS]   accept one connection, hash what arrives until the sender closes,
                                                   write "BYTES SHA256" to RESULT (and the byte count so far to PROGRESS)
  stream.py send ADDRESS PORT RESULT BYTES RATE    send BYTES pseudo-random bytes at RATE bytes/s, close, wait for the
                                                   server to close, write "BYTES SHA256" to RESULT

The two RESULT files are equal when every byte arrived, in order.
"""
import hashlib
import random
import socket
import sys
import time


def serve(address, port, result, progress=None):
    server = socket.create_server((address, int(port)))
    conn, _ = server.accept()
    digest, total = hashlib.sha256(), 0
    while data := conn.recv(65536):
        digest.update(data)
        total += len(data)
        if progress:
            with open(progress, "w") as out:
                out.write(f"{total}\n")
    with open(result, "w") as out:
        out.write(f"{total} {digest.hexdigest()}\n")
    conn.close()


def send(address, port, result, size, rate):
    conn = socket.create_connection((address, int(port)), timeout=90)
    source, digest, sent, start = random.Random(11), hashlib.sha256(), 0, time.monotonic()
    while sent < int(size):
        chunk = source.randbytes(4096)
        conn.sendall(chunk)
        digest.update(chunk)
        sent += len(chunk)
        time.sleep(max(0.0, sent / int(rate) - (time.monotonic() - start)))
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)
    with open(result, "w") as out:
        out.write(f"{sent} {digest.hexdigest()}\n")


if __name__ == "__main__":
    {"serve": serve, "send": send}[sys.argv[1]](*sys.argv[2:])

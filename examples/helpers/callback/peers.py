#!/usr/bin/env python3
"""The example protocol's two peers, for the lab (docs/helpers.md).

  peers.py server            listen on TCP port 111; on "CALLBACK port", connect back to the
                             caller's address on that port and send a greeting, then answer "OK".
  peers.py client HOST PORT  listen on PORT, ask HOST:111 to call back, print what the callback brings.
"""
import select
import socket
import sys

TIMEOUT = 10


def server():
    listener = socket.create_server(("::", 111), family=socket.AF_INET6, dualstack_ipv6=True)
    while True:
        control, (peer, *_) = listener.accept()
        with control:
            control.settimeout(TIMEOUT)
            line = control.makefile("rb").readline().decode("ascii", "replace").strip()
            verb, _, port = line.partition(" ")
            if verb != "CALLBACK" or not port.isdigit():
                control.sendall(b"ERR\n")
                continue
            # The caller as this server sees it: behind NAT, the router's address.
            peer = peer.removeprefix("::ffff:")
            try:
                with socket.create_connection((peer, int(port)), timeout=TIMEOUT) as back:
                    back.sendall(f"hello {peer} port {port} from the server\n".encode())
                control.sendall(b"OK\n")
            except OSError as error:
                control.sendall(f"FAILED {error}\n".encode())


def client(host, port):
    """Exit status 0 when the call-back arrived, 1 when the server could not call back."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server(("", port), family=family) as listener:
        with socket.create_connection((host, 111), timeout=TIMEOUT) as control:
            control.sendall(f"CALLBACK {port}\n".encode())
            # Either the call-back arrives, or the server says on the control connection why it could not call.
            ready, _, _ = select.select([listener, control], [], [], TIMEOUT)
            if listener in ready:
                back, _ = listener.accept()
                with back:
                    back.settimeout(TIMEOUT)
                    print(back.makefile("rb").readline().decode().strip())
                print("control:", control.makefile("rb").readline().decode().strip())
                return 0
            answer = control.makefile("rb").readline().decode().strip() if control in ready else "no answer"
            print("no call-back; server says:", answer)
            return 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["server"]:
        server()
    elif len(sys.argv) == 4 and sys.argv[1] == "client":
        sys.exit(client(sys.argv[2], int(sys.argv[3])))
    else:
        sys.exit(__doc__)

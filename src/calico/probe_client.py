"""The TCP/UDP probe client the lab and the tests share, so tests probe exactly as the lab does.

One connection attempt to an echo listener (calico.lab.echo, calico.testing.workloads.serve),
run as `python3 -c` inside the source namespace: exit 0 when the listener answers "ok". It
lives below both calico.lab and calico.testing, neither of which may import the other.
"""

from __future__ import annotations

import sys

# argv: proto address port timeout
SCRIPT = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
kind = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
s = socket.socket(family, kind); s.settimeout(float(sys.argv[4]))
try:
    if kind == socket.SOCK_STREAM:
        s.connect((sys.argv[2], int(sys.argv[3]))); ok = s.recv(2) == b"ok"
    else:
        s.sendto(b"hi", (sys.argv[2], int(sys.argv[3]))); ok = s.recvfrom(2)[0] == b"ok"
except OSError:
    ok = False
sys.exit(0 if ok else 1)
"""


def client_argv(proto: str, address: str, port: int, timeout: float) -> list[str]:
    """The command that makes one `proto` ("tcp" or "udp") attempt on address:port."""
    return [sys.executable, "-c", SCRIPT, proto, address, str(port), str(timeout)]

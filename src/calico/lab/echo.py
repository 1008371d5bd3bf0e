"""A workload's listener: `python -m calico.lab.echo tcp/80 udp/53 ...`.

Answers "ok" on every TCP connection and to every UDP datagram, on IPv4 and IPv6 (one
dual-stack socket per port), so probes can tell an open path from a blocked one.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading

REPLY = b"ok"


def _socket(kind: int, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    return sock


def serve_tcp(port: int) -> None:
    sock = _socket(socket.SOCK_STREAM, port)
    sock.listen(128)
    while True:
        conn, _ = sock.accept()
        try:
            conn.sendall(REPLY)
        except OSError:
            pass
        finally:
            conn.close()


def serve_udp(port: int) -> None:
    sock = _socket(socket.SOCK_DGRAM, port)
    while True:
        _, peer = sock.recvfrom(512)
        with contextlib.suppress(OSError):
            sock.sendto(REPLY, peer)


def main(args: list[str]) -> None:
    threads = []
    for arg in args:
        proto, _, port = arg.partition("/")
        target = serve_tcp if proto == "tcp" else serve_udp
        threads.append(threading.Thread(target=target, args=(int(port),), daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main(sys.argv[1:])

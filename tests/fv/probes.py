"""Long-running traffic programs for FV tests, run inside test namespaces.

Each program writes its counters as JSON to a status file (atomically, after every probe),
so a test can wait on progress and read the final tally without stopping the program:

- `EchoServer`: a threaded TCP line echo server.
- `Stream`: ONE TCP connection that sends a line every `interval` and waits for its echo;
  counts successes, failures (timeouts, errors: the flow is then reopened) and the longest
  gap between two successful echoes.
- `Prober`: every `interval`, a NEW TCP connection to a `serve()` server (expects "ok") and
  an ICMP echo (ping socket); counts successes and failures of each.
- `UdpRecorder`: records the source address of every UDP datagram it receives.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from calico.testing.netns import Namespaces

_COMMON = r"""
import json, os, socket, sys, time
def family(addr): return socket.AF_INET6 if ":" in addr else socket.AF_INET
def dump(path, stats):
    tmp = path + ".tmp"
    with open(tmp, "w") as f: json.dump(stats, f)
    os.replace(tmp, path)
"""

_ECHO = (
    _COMMON
    + r"""
import threading
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(family(addr), socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port)); s.listen(16)
def handle(c):
    with c, c.makefile("rwb", buffering=0) as f:
        for line in f: f.write(line)
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"""
)

_STREAM = (
    _COMMON
    + r"""
addr, port, interval, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
stats = {"ok": 0, "fail": 0, "reconnects": 0, "max_gap": 0.0}
def connect():
    c = socket.create_connection((addr, port), timeout=1.0)
    return c, c.makefile("rb")
conn = None
last_ok = None
n = 0
while True:
    start = time.monotonic()
    try:
        if conn is None:
            conn = connect(); stats["reconnects"] += 1
        n += 1
        line = b"%d\n" % n
        conn[0].sendall(line)
        if conn[1].readline() != line: raise OSError("bad echo")
        now = time.monotonic()
        if last_ok is not None: stats["max_gap"] = max(stats["max_gap"], now - last_ok)
        last_ok = now
        stats["ok"] += 1
    except OSError:
        stats["fail"] += 1
        if conn is not None: conn[0].close()
        conn = None
    dump(out, stats)
    time.sleep(max(0.0, interval - (time.monotonic() - start)))
"""
)

_PROBER = (
    _COMMON
    + r"""
import struct
addr, port, interval, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
fam = family(addr)
with open("/proc/sys/net/ipv4/ping_group_range", "w") as f: f.write("0 2147483647")
stats = {"tcp_ok": 0, "tcp_fail": 0, "icmp_ok": 0, "icmp_fail": 0}
proto = socket.IPPROTO_ICMPV6 if fam == socket.AF_INET6 else socket.IPPROTO_ICMP
echo = 128 if fam == socket.AF_INET6 else 8
seq = 0
while True:
    start = time.monotonic()
    try:
        with socket.socket(fam, socket.SOCK_STREAM) as c:
            c.settimeout(1.0); c.connect((addr, port))
            if c.recv(2) != b"ok": raise OSError("bad reply")
        stats["tcp_ok"] += 1
    except OSError:
        stats["tcp_fail"] += 1
    seq = (seq + 1) & 0xFFFF
    try:
        with socket.socket(fam, socket.SOCK_DGRAM, proto) as p:
            p.settimeout(1.0)
            p.sendto(struct.pack("!BBHHH", echo, 0, 0, 0, seq) + b"probe", (addr, 0))
            while True:
                data = p.recv(64)
                if struct.unpack("!H", data[6:8])[0] == seq: break
        stats["icmp_ok"] += 1
    except OSError:
        stats["icmp_fail"] += 1
    dump(out, stats)
    time.sleep(max(0.0, interval - (time.monotonic() - start)))
"""
)

_RECORDER = (
    _COMMON
    + r"""
addr, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(family(addr), socket.SOCK_DGRAM)
s.bind((addr, port))
seen = {}
while True:
    data, peer = s.recvfrom(256)
    key = "%s %s" % (peer[0], data.decode(errors="replace"))
    seen[key] = seen.get(key, 0) + 1
    dump(out, seen)
"""
)

_SEND_FROM = r"""
import socket, sys
src, dst, port, payload = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
for _ in range(3):
    s.sendto(payload.encode(), (dst, port))
"""


class _Program:
    def __init__(self, ns: Namespaces, where: str, status: Path, code: str, *args: str) -> None:
        self.status = status
        status.unlink(missing_ok=True)
        self.proc = ns.popen(where, [sys.executable, "-c", code, *args])

    def read(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.status.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.read()):
            if self.proc.poll() is not None:
                raise AssertionError(f"probe exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError(f"probe condition not reached in {timeout}s: {self.read()}")
            time.sleep(0.05)


def echo_server(ns: Namespaces, where: str, addr: str, port: int) -> None:
    ns.popen(where, [sys.executable, "-c", _ECHO, addr, str(port)])


class Stream(_Program):
    def __init__(
        self, ns: Namespaces, where: str, addr: str, port: int, status: Path, interval: float
    ) -> None:
        super().__init__(ns, where, status, _STREAM, addr, str(port), str(interval), str(status))

    def progress(self, n: int = 10, timeout: float = 10.0) -> None:
        """Wait until `n` more echoes have succeeded."""
        target = self.read().get("ok", 0) + n
        self.wait_for(lambda s: s.get("ok", 0) >= target, timeout)


class Prober(_Program):
    def __init__(
        self, ns: Namespaces, where: str, addr: str, port: int, status: Path, interval: float
    ) -> None:
        super().__init__(ns, where, status, _PROBER, addr, str(port), str(interval), str(status))

    def progress(self, n: int = 3, timeout: float = 10.0) -> None:
        """Wait until `n` more rounds of probes have completed (successfully or not)."""
        current = self.read()
        target = current.get("tcp_ok", 0) + current.get("tcp_fail", 0) + n
        self.wait_for(lambda s: s.get("tcp_ok", 0) + s.get("tcp_fail", 0) >= target, timeout)


class UdpRecorder(_Program):
    def __init__(self, ns: Namespaces, where: str, addr: str, port: int, status: Path) -> None:
        super().__init__(ns, where, status, _RECORDER, addr, str(port), str(status))

    def sources(self, payload: str) -> set[str]:
        """Source addresses seen with `payload`."""
        return {key.split(" ", 1)[0] for key in self.read() if key.split(" ", 1)[1] == payload}


def send_udp_from(ns: Namespaces, where: str, src: str, dst: str, port: int, payload: str) -> None:
    """Three UDP datagrams from `src` (an address in `where`) to dst:port."""
    ns.exec(where, [sys.executable, "-c", _SEND_FROM, src, dst, str(port), payload])

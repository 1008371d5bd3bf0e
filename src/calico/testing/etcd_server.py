"""A throwaway single-member etcd for tests and demos, started and stopped by PID.

`EtcdServer()` picks free loopback ports, runs `etcd` quietly (zap logger writing to a file in
its temp dir, whose tail is quoted if start-up fails), and waits for `/health` with a deadline.
`stop()`/`kill()`/`restart()` act only on the process it started; `close()` (or leaving the
`with` block) also removes the temp dir. Ports and data dir survive `restart()`, so clients
keep their endpoint and the data (revisions included) is still there. `EtcdCluster(3)` runs
several members on loopback with etcd's default raft timings.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import ssl
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from calico import programs

_START_ATTEMPTS = 3  # a "free" port can be taken by someone else before etcd binds it
# A single member has no peers to lose, so fast raft timings are safe: start-up and restart
# take ~0.1 s instead of ~1 s, and the minimum lease TTL drops from 2 s to 1 s.
_FAST_RAFT = ("--heartbeat-interval", "10", "--election-timeout", "100")


class EtcdServerError(RuntimeError):
    """etcd did not start or did not become healthy in time."""


@dataclass(frozen=True, slots=True)
class EtcdTls:
    """Server certificate and key, and the CA that client certificates must chain to."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    client_cert_file: Path
    client_key_file: Path


class EtcdServer:
    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        binary: str = "etcd",
        tls: EtcdTls | None = None,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 20.0,
        name: str = "default",
    ) -> None:
        self.name = name
        self._initial_cluster: str | None = None  # set by EtcdCluster; None: a single member
        self._tmp = Path(tempfile.mkdtemp(prefix="calico-etcd-"))
        self.data_dir = Path(data_dir) if data_dir is not None else self._tmp / "data"
        self.log_file = self._tmp / "etcd.log"
        self._binary = shutil.which(binary) or binary
        self._tls = tls
        self._extra_args = extra_args
        self._startup_timeout = startup_timeout
        self._process: programs.Popen[bytes] | None = None
        self._own_data = data_dir is None
        self._started = False
        self.client_port, self.peer_port = _free_port(), _free_port()

    @property
    def endpoint(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def unix_endpoint(self) -> str:
        """The same server on a unix socket: reachable from any network namespace, which is
        how processes inside test host namespaces reach this loopback-bound etcd."""
        return f"unix://{self._tmp}/localhost:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Start etcd and wait until it is healthy.

        A first start that dies early (most likely a lost race for a "free" port) is retried
        on new ports with a fresh data dir; later starts keep their ports for the clients.
        """
        for attempt in range(_START_ATTEMPTS):
            self._spawn()
            try:
                self._wait_healthy()
            except EtcdServerError:
                exited = self._process is not None and self._process.poll() is not None
                self.kill()
                retry = exited and not self._started and self._own_data
                if not retry or attempt == _START_ATTEMPTS - 1:
                    raise
                shutil.rmtree(self.data_dir, ignore_errors=True)
                self.client_port, self.peer_port = _free_port(), _free_port()
                continue
            self._started = True
            return

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if etcd has not exited after timeout seconds."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout)
        except programs.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def kill(self) -> None:
        """SIGKILL: the crash case, no graceful shutdown."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        self._process.wait()
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _spawn(self) -> None:
        client = self.endpoint
        listen = f"{client},unix://localhost:{self.client_port}" if not self._tls else client
        peer = self.peer_url
        args = [
            self._binary,
            *("--name", self.name, "--data-dir", str(self.data_dir)),
            *("--listen-client-urls", listen, "--advertise-client-urls", client),
            *("--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer),
            *("--initial-cluster", self._initial_cluster or f"{self.name}={peer}"),
            *("--logger", "zap", "--log-outputs", str(self.log_file), "--log-level", "warn"),
            *(() if self._initial_cluster else _FAST_RAFT),
            *self._tls_args(),
            *self._extra_args,
        ]
        # etcd creates a unix listener relative to its working directory; a killed etcd
        # leaves the socket file behind, which would make the next bind fail.
        (self._tmp / f"localhost:{self.client_port}").unlink(missing_ok=True)
        self._process = programs.start(
            args, cwd=self._tmp, stdout=programs.DEVNULL, stderr=programs.DEVNULL
        )

    def _tls_args(self) -> tuple[str, ...]:
        if self._tls is None:
            return ()
        return (
            *("--cert-file", str(self._tls.cert_file), "--key-file", str(self._tls.key_file)),
            *("--trusted-ca-file", str(self._tls.ca_file), "--client-cert-auth"),
        )

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise EtcdServerError(f"etcd exited with {self._process.returncode}{self._tail()}")
            if self._healthy():
                return
            time.sleep(0.05)
        raise EtcdServerError(f"etcd not healthy after {self._startup_timeout}s{self._tail()}")

    def _healthy(self) -> bool:
        # No proxies: a test runner's HTTP_PROXY must not intercept loopback health checks.
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if self._tls is not None:
            context = ssl.create_default_context(cafile=str(self._tls.ca_file))
            context.load_cert_chain(self._tls.client_cert_file, self._tls.client_key_file)
            handlers.append(urllib.request.HTTPSHandler(context=context))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(f"{self.endpoint}/health", timeout=1.0) as response:
                return bool(json.load(response).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()[-10:]
        except OSError:
            return ""
        return "; log tail:\n" + "\n".join(lines)


class EtcdCluster:
    """`members` EtcdServers forming one cluster on loopback. A member is healthy only once a
    quorum is up, so all are spawned before any is waited for; no retry on a lost port race
    (the whole cluster would have to move)."""

    def __init__(self, members: int = 3, *, extra_args: tuple[str, ...] = ()) -> None:
        self.members = [EtcdServer(name=f"m{i}", extra_args=extra_args) for i in range(members)]
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for member in self.members:
            member._initial_cluster = cluster

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(m.endpoint for m in self.members)

    def start(self) -> None:
        for member in self.members:
            member._spawn()
        for member in self.members:
            member._wait_healthy()
            member._started = True

    def close(self) -> None:
        for member in self.members:
            member.close()

    def __enter__(self) -> EtcdCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port

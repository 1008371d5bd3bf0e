"""Network namespaces for kernel tests: per-run names, veth wiring, processes by PID.

Nothing here touches the root namespace's interfaces, routes or firewall: namespaces are
created with `ip netns add`, veth pairs are created inside a test namespace and moved
straight into another, and every command runs under `ip netns exec`. `close()` kills the
processes it started (by PID) and deletes its namespaces, also after a failed test.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
from collections.abc import Sequence
from types import TracebackType

from calico import programs


def run_prefix() -> str:
    """A short per-run prefix, unique enough that parallel runs never collide."""
    return f"cpy{secrets.token_hex(3)}"


class Namespaces:
    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or run_prefix()
        self.names: list[str] = []
        self._procs: list[programs.Popen[bytes]] = []

    def add(self, suffix: str) -> str:
        """Create `<prefix>-<suffix>` with loopback up; returns its name."""
        name = f"{self.prefix}-{suffix}"
        programs.run(["ip", "netns", "add", name], check=True)
        self.names.append(name)
        self.exec(name, ["ip", "link", "set", "lo", "up"])
        return name

    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
        """A veth pair from `if_a` in ns_a to `if_b` in ns_b, both set up."""
        programs.run(
            [
                "ip",
                "-n",
                ns_a,
                "link",
                "add",
                if_a,
                "type",
                "veth",
                "peer",
                "name",
                if_b,
                "netns",
                ns_b,
            ],
            check=True,
        )
        self.exec(ns_a, ["ip", "link", "set", if_a, "up"])
        self.exec(ns_b, ["ip", "link", "set", if_b, "up"])

    def exec(
        self,
        ns: str,
        args: Sequence[str],
        *,
        check: bool = True,
        stdin: str | None = None,
        timeout: float = 60.0,
    ) -> programs.CompletedProcess[str]:
        """Run `args` inside `ns`; programs.CommandFailed on a non-zero exit under `check`."""
        return programs.run(
            ["ip", "netns", "exec", ns, *args], stdin=stdin, timeout=timeout, check=check
        )

    def popen(
        self,
        ns: str,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        log: str | None = None,
    ) -> programs.Popen[bytes]:
        """Start a long-running process in `ns` (output to `log`); killed by PID on close()."""
        out = open(log, "ab") if log else programs.DEVNULL  # noqa: SIM115 - the child owns it
        try:
            proc = programs.start(
                ["ip", "netns", "exec", ns, *args],
                env=env,
                stdout=out,
                stderr=programs.STDOUT,
                new_session=True,
            )
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self._procs.clear()
        for name in reversed(self.names):
            programs.run(["ip", "netns", "del", name])
        self.names.clear()

    def __enter__(self) -> Namespaces:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

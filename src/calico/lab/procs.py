"""Lab processes, recorded by PID and start time so a later invocation can stop exactly them.

A `Proc` is a PID plus the process's start time (from /proc/PID/stat): a PID that was reused
by an unrelated process never matches, so `stop` cannot hit anything the lab did not start.
Processes are started in their own session (process group = PID), so stopping one also
stops the children it left in its group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from calico import programs


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    start: int  # /proc/PID/stat field 22 (clock ticks since boot)

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, data: Mapping[str, int]) -> Proc:
        return cls(int(data["pid"]), int(data["start"]))


_children: dict[int, programs.Popen[bytes]] = {}  # started by this process: reaped here


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a process, or None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


def identify(pid: int) -> Proc | None:
    stat = _stat(pid)
    return Proc(pid, stat[1]) if stat else None


def from_pid_file(path: Path) -> Proc | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return identify(int(text)) if text.isdigit() else None


def alive(proc: Proc | None) -> bool:
    if proc is None:
        return False
    child = _children.get(proc.pid)
    if child is not None and child.poll() is not None:
        return False
    stat = _stat(proc.pid)
    return stat is not None and stat[1] == proc.start and stat[0] not in ("Z", "X")


def spawn(
    argv: Sequence[str],
    log_file: Path,
    *,
    netns: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Proc:
    """Start a daemon (inside `netns`, in its own session); output appended to `log_file`.
    `ip netns exec` execs the command, so the PID is the daemon's own."""
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    with log_file.open("ab") as out:
        popen = programs.start(
            full, stdout=out, stderr=programs.STDOUT, env=env, cwd=cwd, new_session=True
        )
    _children[popen.pid] = popen
    for _ in range(100):  # the start time is readable as soon as the process exists
        found = identify(popen.pid)
        if found is not None:
            return found
        time.sleep(0.001)
    raise RuntimeError(f"{argv[0]} exited at once (see {log_file})")


def signal_proc(proc: Proc, sig: int, group: bool = False) -> bool:
    """Send `sig` if `proc` is still that process (to its whole group if `group`)."""
    if not alive(proc):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group and os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
    return True


def wait_gone(procs: Sequence[Proc], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in procs):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    for proc in procs:
        child = _children.pop(proc.pid, None)
        if child is not None:
            child.wait()
    return True


def stop(procs: Sequence[Proc], timeout: float = 10.0) -> None:
    """SIGTERM each process, then SIGKILL its group if it is still there after `timeout`."""
    live = [p for p in procs if signal_proc(p, signal.SIGTERM)]
    if not wait_gone(live, timeout):
        for proc in live:
            signal_proc(proc, signal.SIGKILL, group=True)
        wait_gone(live, 5.0)


def kill(procs: Sequence[Proc]) -> None:
    """SIGKILL each process and its group: the crash case."""
    for proc in procs:
        signal_proc(proc, signal.SIGKILL, group=True)
    wait_gone(procs, 5.0)

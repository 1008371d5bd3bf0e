"""Child processes of calico/node (Felix, BIRD), restarted with backoff when they exit.

A child that exits is restarted after a delay that doubles after each quick exit, up to a
ceiling, and starts over once it has stayed up for a minute (`restart_backoff`). `Child` owns
one process: its log file, an optional pid file the node writes for it, and an optional
`prepare` step run before every start (BIRD's config is rendered then; a failing step counts
as a crash) and optional `args` appended to its command line, decided at each start.
`Supervisor` polls its children and stops them in reverse start order.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from calico import programs
from calico.backoff import Backoff

log = logging.getLogger(__name__)


def restart_backoff() -> Backoff:
    """Between restarts of a child: 0.5 s doubling to 30 s, fresh after a minute up."""
    return Backoff(initial=0.5, maximum=30.0, stable_after=60.0)


@dataclass(frozen=True, slots=True)
class ChildSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_file: Path
    pid_file: Path | None = None  # written by the node (None: the child writes its own)
    prepare: Callable[[], None] | None = None
    args: Callable[[], Sequence[str]] | None = None  # more arguments, decided at each start
    cleanup: Sequence[Path] = ()  # files removed after the child is stopped


class Child:
    def __init__(
        self,
        spec: ChildSpec,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.backoff = backoff or restart_backoff()
        self.proc: programs.Popen[bytes] | None = None
        self.restarts = 0
        self._clock = clock
        self._started_at = 0.0
        self._restart_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> None:
        """Start now; a failure (prepare or exec) schedules a retry with backoff."""
        self._started_at = self._clock()
        self._restart_at = None
        try:
            if self.spec.prepare is not None:
                self.spec.prepare()
            self.proc = self._spawn()
        except Exception as exc:
            self._schedule(f"could not start: {exc}")
            return
        if self.spec.pid_file is not None:
            self.spec.pid_file.write_text(f"{self.proc.pid}\n")
        log.info("started %s (pid %d)", self.spec.name, self.proc.pid)

    def poll(self) -> None:
        """Notice an exit (and schedule a restart), or restart when the delay has passed."""
        if self.proc is not None and (code := self.proc.poll()) is not None:
            self.proc = None
            self._schedule(f"exited with code {code}")
        if self._restart_at is not None and self._clock() >= self._restart_at:
            self.restarts += 1
            self.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._restart_at = None
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except programs.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", self.spec.name, timeout)
                proc.kill()
                proc.wait()
        for path in (self.spec.pid_file, *self.spec.cleanup):
            if path is not None:
                path.unlink(missing_ok=True)

    def _schedule(self, why: str) -> None:
        delay = self.backoff.delay(self._clock() - self._started_at)
        log.warning("%s %s; restarting in %.1fs", self.spec.name, why, delay)
        self._restart_at = self._clock() + delay

    def _spawn(self) -> programs.Popen[bytes]:
        argv = [*self.spec.argv, *(self.spec.args() if self.spec.args else ())]
        with self.spec.log_file.open("ab") as out:
            return programs.start(argv, env=self.spec.env, stdout=out, stderr=programs.STDOUT)


class Supervisor:
    def __init__(self, children: Sequence[Child], interval: float = 0.2) -> None:
        self.children = list(children)
        self._interval = interval

    def run(self, stop: threading.Event, check: Callable[[], None] | None = None) -> None:
        """Start every child, then keep them running until `stop` is set (or `check` raises)."""
        for child in self.children:
            child.start()
        while not stop.wait(self._interval):
            for child in self.children:
                child.poll()
            if check is not None:
                check()

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()

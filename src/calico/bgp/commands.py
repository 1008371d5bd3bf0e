"""Running `bird -p` and `birdc`: a tiny command-runner seam for the BGP agent.

`CommandRunner` is structurally the same as `calico.dataplane.kernel.CommandRunner` (so a
Felix runner or a test fake fits), but lives here because the BGP agent is a datastore
client and must not import the dataplane (or pyroute2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from calico import programs


class CommandOutput(Protocol):
    @property
    def returncode(self) -> int: ...

    @property
    def stdout(self) -> str: ...

    @property
    def stderr(self) -> str: ...


class CommandRunner(Protocol):
    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandOutput: ...


@dataclass(frozen=True, slots=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


class Subprocess:
    """Runs a command in this process's namespaces through calico.programs. A command that
    cannot run (missing, timed out) gives rc -1 with the reason in stderr; any rc other than
    0 raises programs.CommandFailed when `check` is set."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout

    def run(self, args: Sequence[str], *, stdin: str | None = None, check: bool = True) -> Result:
        try:
            proc = programs.run(args, stdin=stdin, timeout=self.timeout)
            result = Result(proc.returncode, proc.stdout, proc.stderr)
        except programs.TimeoutExpired:
            result = Result(-1, "", f"{args[0]}: timed out after {self.timeout}s")
        except OSError as exc:
            result = Result(-1, "", f"{args[0]}: {exc.strerror or exc}")
        if check and result.returncode != 0:
            raise programs.CommandFailed(args, result.returncode, result.stdout, result.stderr)
        return result

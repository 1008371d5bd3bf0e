"""Running `bird -p` and `birdc`: a tiny command-runner seam for the BGP agent.

`CommandRunner` is structurally the same as `calico.dataplane.kernel.CommandRunner` (so a
Felix runner or a test fake fits), but lives here because the BGP agent is a datastore
client and must not import the dataplane (or pyroute2).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


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
    """Runs a command in this process's namespaces; never raises for a failing command."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout

    def run(self, args: Sequence[str], *, stdin: str | None = None, check: bool = True) -> Result:
        try:
            proc = subprocess.run(
                list(args),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Result(-1, "", f"{args[0]}: timed out after {self.timeout}s")
        except OSError as exc:
            return Result(-1, "", f"{args[0]}: {exc.strerror or exc}")
        return Result(proc.returncode, proc.stdout, proc.stderr)

"""The one place calico-py starts other programs, and the list of those it may start.

`programs.txt` (next to this module) names every program the code runs with the Debian
package that provides it; scripts/install-deps.sh installs those packages. `run` (blocking,
output captured), `start` (long-lived) and `replace_process` (exec) refuse a program that is
not on the list, so a program the install cannot know about fails on its first use, on any
machine, instead of only on a machine that lacks it. Nothing else imports `subprocess`.

`CommandRunner` is the seam Felix's kernel drivers and the BGP agent run their commands
through (tests hand them a fake); `Runner` is the real one.

A program is matched by the last component of its path. Wrappers are looked through:
`ip netns exec NS PROG...` and `nsenter --opt=... PROG...` check PROG as well.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import IO, Any, Literal, NoReturn, Protocol, overload

LIST_FILE = "programs.txt"
OWN_PACKAGE = "@calico-py"  # this project's own commands: pip installs them, not apt

# Re-exported so callers need no `subprocess` import of their own.
Popen = subprocess.Popen
CompletedProcess = subprocess.CompletedProcess
TimeoutExpired = subprocess.TimeoutExpired
SubprocessError = subprocess.SubprocessError
DEVNULL = subprocess.DEVNULL
PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT

_PYTHON = re.compile(r"python(3(\.\d+)?)?")

_Stream = int | IO[Any] | None


@dataclass(frozen=True, slots=True)
class Program:
    name: str
    package: str
    users: str


class NotListed(Exception):
    """The code tried to run a program that programs.txt does not name."""

    def __init__(self, name: str, argv: Sequence[str]) -> None:
        self.name = name
        super().__init__(
            f"{name!r} (in `{' '.join(argv[:6])}`) is not in calico/{LIST_FILE}: add it with "
            "the Debian package that provides it, so scripts/install-deps.sh installs it"
        )


class CommandFailed(Exception):
    """A command run with check=True exited non-zero."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr or stdout).strip()
        super().__init__(f"{' '.join(argv)} exited {returncode}: {detail or 'no output'}")


@dataclass(frozen=True, slots=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class CommandRunner(Protocol):
    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult: ...


def parse(text: str) -> list[Program]:
    """The entries of a programs.txt text (comments and blank lines skipped)."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split(None, 2)
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 3:
            raise ValueError(f"{LIST_FILE}:{number}: want `program package users`: {line!r}")
        entries.append(Program(*fields))
    return entries


@cache
def entries() -> tuple[Program, ...]:
    text = resources.files("calico").joinpath(LIST_FILE).read_text(encoding="utf-8")
    return tuple(parse(text))


@cache
def listed() -> Mapping[str, Program]:
    """Program name -> its entry."""
    return {p.name: p for p in entries() if p.name != "-"}


def packages() -> list[str]:
    """Every Debian package the list names (what install-deps.sh installs), sorted."""
    return sorted({p.package for p in entries() if p.package != OWN_PACKAGE})


def name_of(path: str) -> str:
    """The list's name for an argv[0]: its last path component; any Python is python3."""
    name = Path(path).name
    return "python3" if path == sys.executable or _PYTHON.fullmatch(name) else name


def programs_in(argv: Sequence[str]) -> list[str]:
    """The programs `argv` runs: argv[0], and the program behind a wrapper it names."""
    if not argv:
        raise ValueError("empty command")
    name = name_of(argv[0])
    rest: Sequence[str] = ()
    if name == "ip" and list(argv[1:3]) == ["netns", "exec"]:
        rest = argv[4:]
    elif name == "nsenter":  # options are spelt --opt=value: the first non-option runs
        rest = next((argv[i:] for i in range(1, len(argv)) if not argv[i].startswith("-")), ())
    return [name, *(programs_in(rest) if rest else [])]


def ensure_listed(argv: Sequence[str]) -> None:
    """Raise NotListed unless every program `argv` runs is on the list."""
    known = listed()
    for name in programs_in(argv):
        if name not in known:
            raise NotListed(name, argv)


def run(
    argv: Sequence[str],
    *,
    stdin: str | None = None,
    timeout: float | None = 60.0,
    check: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run to completion with text output captured. `check`: CommandFailed on a non-zero
    exit. TimeoutExpired after `timeout` seconds (the command is killed); OSError if the
    program cannot be executed. `stdin` reaches the command whole, as an unlinked file, not
    a pipe: were its writer killed mid-write, a restore reading a pipe would act on the
    truncated last line (`ipset restore` adds "10.0.0.0/2" for "10.0.0.0/24")."""
    ensure_listed(argv)
    with contextlib.ExitStack() as stack:
        given = None
        if stdin is not None:
            given = stack.enter_context(tempfile.TemporaryFile())
            given.write(stdin.encode())
            given.seek(0)
        proc = subprocess.run(
            list(argv),
            stdin=given,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    if check and proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


@overload
def start(
    argv: Sequence[str],
    *,
    stdin: _Stream = ...,
    stdout: _Stream = ...,
    stderr: _Stream = ...,
    env: Mapping[str, str] | None = ...,
    cwd: str | Path | None = ...,
    new_session: bool = ...,
    text: Literal[False] = ...,
) -> subprocess.Popen[bytes]: ...


@overload
def start(
    argv: Sequence[str],
    *,
    stdin: _Stream = ...,
    stdout: _Stream = ...,
    stderr: _Stream = ...,
    env: Mapping[str, str] | None = ...,
    cwd: str | Path | None = ...,
    new_session: bool = ...,
    text: Literal[True],
) -> subprocess.Popen[str]: ...


def start(
    argv: Sequence[str],
    *,
    stdin: _Stream = DEVNULL,
    stdout: _Stream = None,
    stderr: _Stream = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    new_session: bool = False,
    text: bool = False,
) -> subprocess.Popen[bytes] | subprocess.Popen[str]:
    """Start a long-lived process (a daemon, a server, a pinger); stdin defaults to
    /dev/null. `new_session`: its own session and process group, so it and its children
    can be signalled together."""
    ensure_listed(argv)
    return subprocess.Popen(
        list(argv),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=new_session,
        text=text,
    )


def replace_process(
    argv: Sequence[str], env: Mapping[str, str] | None = None, *, user_command: Sequence[str] = ()
) -> NoReturn:
    """exec: this process becomes `argv` + `user_command` (PATH is searched). Only `argv` is
    checked: `user_command` is one a user typed (`calico lab exec HOST -- CMD`), which the
    project does not choose."""
    ensure_listed(argv)
    full = [*argv, *user_command]
    os.execvpe(full[0], full, dict(os.environ if env is None else env))


class Runner:
    """A CommandRunner: runs commands directly, or inside `netns` via `ip netns exec`. A
    command that cannot run (missing, timed out) raises CommandFailed with returncode -1,
    whatever `check` says; one that exits non-zero raises it only when `check` is set."""

    def __init__(self, netns: str | None = None, timeout: float = 60.0) -> None:
        self.netns = netns
        self.timeout = timeout

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        full = ["ip", "netns", "exec", self.netns, *args] if self.netns else list(args)
        try:
            proc = run(full, stdin=stdin, timeout=self.timeout, check=check)
        except TimeoutExpired:
            raise CommandFailed(
                full, -1, "", f"{args[0]}: timed out after {self.timeout}s"
            ) from None
        except FileNotFoundError as exc:
            raise CommandFailed(full, -1, "", f"{exc.filename}: command not found") from None
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

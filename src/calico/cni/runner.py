"""One CNI plugin process: environment and stdin in, one JSON document and an exit code out.

Both executables (`calico`, `calico-ipam`) run through `run()`, which owns the protocol's
edges: VERSION, validation of the CNI_* variables and the config, logging, and the rule that
stdout carries exactly the result (or the error JSON, with exit code 1) because runtimes parse
it. Logs go to stderr at warning and above (runtimes show a plugin's stderr to users) and, at
`log_level`, to `log_file_path` when one is configured.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import logging
import os
import signal
import sys
import traceback
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

from calico import version_line
from calico.cni.config import LOG_LEVELS, NetConf, determine_nodename, parse_netconf
from calico.cni.identity import WorkloadIdentity, identify
from calico.cni.services import DefaultServices, Services
from calico.cni.spec import (
    CURRENT_VERSION,
    CniError,
    Code,
    Invocation,
    document,
    parse_environment,
)
from calico.cni.spec import version_info as _version_info

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Call:
    """Everything a command handler needs."""

    inv: Invocation
    conf: NetConf
    services: Services
    node: str

    @functools.cached_property
    def ident(self) -> WorkloadIdentity:
        return identify(self.inv, self.node, self.conf.namespace)


Handler = Callable[[Call], dict[str, Any] | None]
Handlers = Mapping[str, Handler]
ServicesFactory = Callable[[NetConf, Mapping[str, str]], Services]
# Where one call's logs go, for the call's duration: the process's own (`process_logging`) or,
# in calico node's CNI service, handlers that see only the serving thread's records.
LogSetup = Callable[[NetConf, TextIO], contextlib.AbstractContextManager[object]]


def run(
    handlers: Handlers | Callable[[], Handlers],
    *,
    environ: Mapping[str, str],
    stdin: bytes,
    stdout: TextIO,
    stderr: TextIO,
    services_factory: ServicesFactory = DefaultServices,
    node_of: Callable[[NetConf, Mapping[str, str]], str] = determine_nodename,
    logs: LogSetup | None = None,
) -> int:
    """Run one command; returns the exit code (0, or 1 with the error JSON on stdout).
    `handlers` may be a function returning them, called only for a valid ADD, DEL or CHECK."""
    version = CURRENT_VERSION
    try:
        inv = parse_environment(environ)
        if inv.command == "VERSION":
            output: Mapping[str, Any] | None = _version_info()
        else:
            conf = parse_netconf(stdin)
            version = conf.cni_version
            with (logs or process_logging)(conf, stderr):
                table = handlers() if callable(handlers) else handlers
                call = Call(inv, conf, services_factory(conf, environ), node_of(conf, environ))
                output = _dispatch(table, call)
    except CniError as exc:
        log.error("CNI %s failed (code %d): %s %s", _command(environ), exc.code, exc, exc.details)
        emit(stdout, exc.to_json(version))
        return 1
    except Exception as exc:
        log.exception("CNI %s failed unexpectedly", _command(environ))
        detail = traceback.format_exception_only(exc)[-1].strip()
        emit(stdout, CniError(Code.INTERNAL, str(exc) or type(exc).__name__, detail).to_json())
        return 1
    if output is not None:
        emit(stdout, output)
    return 0


def _dispatch(handlers: Handlers, call: Call) -> dict[str, Any] | None:
    log.info("CNI %s on node %s: %s", call.inv.command, call.node, call.inv)
    try:
        return handlers[call.inv.command](call)
    finally:
        close = getattr(call.services, "close", None)
        if callable(close):
            close()


USAGE = """Usage: {prog} [-v | --version] [-h | --help]

{prog}: a Calico CNI plugin (calico-py). A container runtime runs it with CNI_COMMAND
(ADD, DEL, CHECK, VERSION), the other CNI_* variables and the network configuration on
stdin, as the CNI spec says.
"""


def command_line(argv: Sequence[str], prog: str) -> tuple[int, str, str] | None:
    """Calico's plugin flags, looked at before the CNI protocol (runtimes pass none):
    None to run the protocol, else (exit code, stdout, stderr). As Go's flag package: one or
    two dashes; an unknown flag or any other argument is a usage error (exit 2)."""
    if not argv:
        return None
    arg = argv[0]
    if len(argv) == 1 and arg in ("-v", "--v", "-version", "--version"):
        return 0, version_line(prog) + "\n", ""
    if len(argv) == 1 and arg in ("-h", "--h", "-help", "--help"):
        return 0, USAGE.format(prog=prog), ""
    return 2, "", f"{prog}: unexpected argument {' '.join(argv)!r}\n" + USAGE.format(prog=prog)


def main(module: str, stdin: bytes | None = None) -> NoReturn:
    """Process entry point of the plugin whose `HANDLERS` are in `module`: the real
    environment, stdin (unless `node_socket.main` read it already), stdout. The module (and
    with it pydantic and the etcd client) is imported only for a command that needs it, so
    VERSION costs little more than Python's start-up. SIGTERM (a runtime giving up on us)
    becomes an error, so a half-done ADD still runs its undo steps before exiting."""
    # The process lives for a fraction of a second and allocates mostly while importing (pydantic
    # building its validators): cyclic garbage collection would only cost time (~15% of a run).
    gc.disable()
    _skip_unused_startup_work()
    flags = command_line(sys.argv[1:], Path(sys.argv[0]).name)
    if flags is not None:  # before stdin is read: `calico --help` must not wait for input
        code, out, err = flags
        sys.stdout.write(out)
        sys.stderr.write(err)
        sys.exit(code)
    signal.signal(signal.SIGTERM, _terminated)
    if stdin is None:
        stdin = sys.stdin.buffer.read()  # always, as libcni's skel does: runtimes always write it
    code = run(
        lambda: importlib.import_module(module).HANDLERS,
        environ=os.environ,
        stdin=stdin,
        stdout=sys.stdout,
        stderr=sys.stderr,
    )
    sys.stdout.flush()
    sys.exit(code)


def _skip_unused_startup_work() -> None:
    """pydantic looks for pydantic plugins on a model's first validation, which the plugin never
    uses: it scans every installed distribution's entry points (48 ms of an 833 ms ADD, cProfile,
    2026-12-07, at load ~11 on 2 cores) unless PYDANTIC_DISABLE_PLUGINS says not to, and even
    then imports its loader, and with it importlib.metadata (~10 ms). An empty loader in its
    place answers "no plugins"; should pydantic move it, the variable still skips the scan."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    loader = types.ModuleType("pydantic.plugin._loader")
    loader.get_plugins = tuple  # type: ignore[attr-defined]  # get_plugins() == ()
    sys.modules.setdefault("pydantic.plugin._loader", loader)


def _terminated(signum: int, _frame: object) -> None:
    raise CniError(Code.INTERNAL, f"interrupted by signal {signum}")


def emit(stdout: TextIO, doc: Mapping[str, Any]) -> None:
    stdout.write(document(doc))


def _command(environ: Mapping[str, str]) -> str:
    return environ.get("CNI_COMMAND", "?")


@contextlib.contextmanager
def process_logging(conf: NetConf, stderr: TextIO) -> Iterator[None]:
    """A plugin process's logging: it owns the root logger for its short life."""
    root = logging.getLogger()
    root.handlers = call_log_handlers(conf, stderr)
    root.setLevel(logging.WARNING)  # libraries only when something is wrong
    logging.getLogger("calico").setLevel(min(LOG_LEVELS[conf.log_level], logging.WARNING))
    yield


def call_log_handlers(conf: NetConf, stderr: TextIO) -> list[logging.Handler]:
    """Warnings and above to stderr (runtimes show it to users); `log_level` and above to
    `log_file_path`, if set. Each line carries the pid of the process that ran the call."""
    fmt = logging.Formatter(
        f"%(asctime)s [%(levelname)s] calico-cni {os.getpid()} %(name)s: %(message)s"
    )
    console = logging.StreamHandler(stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(fmt)
    handlers: list[logging.Handler] = [console]
    if conf.log_file_path:
        try:
            Path(conf.log_file_path).parent.mkdir(parents=True, exist_ok=True)
            file_handler = logging.FileHandler(conf.log_file_path)
        except OSError as exc:
            log.warning("cannot open log file %s: %s", conf.log_file_path, exc)
        else:
            file_handler.setLevel(LOG_LEVELS[conf.log_level])
            file_handler.setFormatter(fmt)
            handlers.append(file_handler)
    return handlers

"""calico node's CNI service: runs plugin calls handed over by plugin processes on this host.

A plugin process (`node_socket.main`) sends its environment and stdin; the service runs them
through the same `runner.run` and handlers as a plugin process would, on a thread of its own,
and sends back the exit code, stdout and stderr. Nothing differs but where the code runs: the
same config parsing, IPAM, kernel work (the node runs in the host's namespace, as a plugin
does; container-side work already runs on a thread that joins the container's namespace) and
undo on failure. Calls run concurrently, as plugin processes would.

Only root's calls are served (the peer's credentials, SO_PEERCRED): root in a user namespace
or any other user gets an error, as it could not have run the plugin's kernel work itself.
Logs: each call's handlers (stderr at warning, `log_file_path` at `log_level`) see only the
records of the call's thread, on top of the node's own log; records below the node's log level
are not made, so `log_level: debug` needs the node at debug too.
On stop the socket closes first (new calls fall back to running in their own process) and
calls in flight get `DRAIN_SECONDS` to finish, so an ADD is not cut between its steps.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import socket
import struct
import threading
from collections.abc import Iterator
from typing import TextIO

from calico.cni.config import NetConf
from calico.cni.install import PLUGINS
from calico.cni.node_socket import SOCKET_NAME, decode_request, encode_reply
from calico.cni.runner import call_log_handlers, run
from calico.cni.spec import CniError, Code, document

log = logging.getLogger(__name__)
DRAIN_SECONDS = 30.0
MAX_REQUEST = 1 << 20  # a config and an environment; a runtime's are a few KiB
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class CniService:
    def __init__(self, name: str = SOCKET_NAME) -> None:
        self._name = name
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._calls: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def start(self) -> bool:
        """Listen; False (logged) when the name is taken: another calico node serves this
        namespace, and plugins reach that one."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self._name)
        except OSError as exc:
            listener.close()
            log.warning("CNI service not started: %s", exc)
            return False
        listener.listen(64)
        self._listener = listener
        self._accepting = threading.Thread(target=self._accept, name="cni-service", daemon=True)
        self._accepting.start()
        log.info("CNI service listening")
        return True

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        listener.close()
        if self._accepting is not None:
            self._accepting.join(DRAIN_SECONDS)
        with self._lock:
            calls = list(self._calls)
        for call in calls:
            call.join(DRAIN_SECONDS)

    def _accept(self) -> None:
        listener = self._listener
        if listener is None:
            return
        try:  # before the first call, so no call pays for the handlers' imports
            for module in PLUGINS.values():
                importlib.import_module(module)
        except Exception:
            # Unbound, the name refuses connections and plugins run their calls themselves;
            # bound but never accepting, it would leave every plugin waiting.
            log.exception("CNI service stopped: the plugins do not load")
            self._listener = None
            listener.close()
            return
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # stopped
            thread = threading.Thread(target=self._serve, args=(conn,), name="cni-call")
            with self._lock:
                self._calls.add(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.sendall(serve_one(conn))
        except OSError as exc:  # the plugin process went away (a runtime's timeout)
            log.warning("CNI call's plugin process went away: %s", exc)
        finally:
            with self._lock:
                self._calls.discard(threading.current_thread())


def serve_one(conn: socket.socket) -> bytes:
    """The reply to the one call on `conn`."""
    pid, uid, _ = _PEERCRED.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    )
    log.info("CNI call from pid %d", pid)
    request = _read_request(conn)  # first, so a refusal reaches the peer rather than a reset
    if uid != 0:
        log.warning("refused a CNI call from pid %d: uid %d is not root", pid, uid)
        return _error(Code.INTERNAL, f"calico node's CNI service serves root only, not uid {uid}")
    try:
        if request is None:
            raise ValueError(f"larger than {MAX_REQUEST} bytes")
        module, environ, stdin = decode_request(request)
    except (ValueError, KeyError, TypeError) as exc:
        return _error(Code.INTERNAL, f"malformed request to calico node's CNI service: {exc}")
    if module not in PLUGINS.values():
        return _error(Code.INTERNAL, f"calico node's CNI service runs no plugin {module!r}")
    stdout, stderr = io.StringIO(), io.StringIO()

    @contextlib.contextmanager
    def thread_logging(conf: NetConf, err: TextIO) -> Iterator[None]:
        thread = threading.get_ident()
        handlers = call_log_handlers(conf, err)
        root = logging.getLogger()
        for handler in handlers:
            handler.addFilter(lambda record: record.thread == thread)
            root.addHandler(handler)
        try:
            log.info("running pid %d's CNI call in calico node (pid %d)", pid, os.getpid())
            yield
        finally:
            for handler in handlers:
                root.removeHandler(handler)
                handler.close()

    code = run(
        lambda: importlib.import_module(module).HANDLERS,
        environ=environ,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        logs=thread_logging,
    )
    return encode_reply(code, stdout.getvalue(), stderr.getvalue())


def _read_request(conn: socket.socket) -> bytes | None:
    """The request, or None past MAX_REQUEST bytes (the rest is not read)."""
    chunks, size = [], 0
    while chunk := conn.recv(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REQUEST:
            return None
    return b"".join(chunks)


def _error(code: Code, msg: str) -> bytes:
    return encode_reply(1, document(CniError(code, msg).to_json()), "")

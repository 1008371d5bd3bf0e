"""The plugins' entry point, and their fast path: hand the call to calico node on this host.

Why: a plugin process spends most of an ADD starting up (182 ms median, of which ~120 ms is
importing pydantic, the models and the etcd client; `bench/cni_exec.py`, 2026-12-07), while
the host's `calico node run` has all of that loaded. So the plugin first offers the call to
the node's CNI service (`node_service`) and only runs it in-process when no service listens.
This module therefore imports nothing but the standard library's socket and json.

The socket is abstract (`SOCKET_NAME`): abstract names belong to a network namespace, so each
host (and each lab host) has its own, reached by a plugin that a runtime runs in the host's
namespace, and the name is gone with the process that bound it (no stale file to trust). The
service serves root only (it checks the peer's credentials).

One call per connection: the request (`encode_request`), then the client shuts its side; the
reply `{"code", "stdout", "stderr"}`, then the service closes. A reply that never arrives
complete (the node died mid-call) is a CNI error 11 "try again later": the call may have been
half done, and a runtime follows a failed ADD with a DEL.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

SOCKET_NAME = "\0calico-py/cni"
COMMANDS = ("ADD", "DEL", "CHECK")  # VERSION and flags never leave the process


class ServiceLost(Exception):
    """The service accepted the call but no complete reply came back."""


def encode_request(module: str, environ: Mapping[str, str], stdin: bytes) -> bytes:
    # surrogateescape: stdin's bytes survive the round trip even if they are not UTF-8.
    text = stdin.decode("utf-8", "surrogateescape")
    return json.dumps({"module": module, "environ": dict(environ), "stdin": text}).encode()


def decode_request(data: bytes) -> tuple[str, dict[str, str], bytes]:
    """ValueError when `data` is not a request."""
    doc = json.loads(data)
    module, environ, text = doc["module"], doc["environ"], doc["stdin"]
    if not (isinstance(module, str) and isinstance(environ, dict) and isinstance(text, str)):
        raise ValueError("malformed request")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in environ.items()):
        raise ValueError("malformed environment")
    return module, environ, text.encode("utf-8", "surrogateescape")


def encode_reply(code: int, stdout: str, stderr: str) -> bytes:
    return json.dumps({"code": code, "stdout": stdout, "stderr": stderr}).encode()


def relay(
    module: str, environ: Mapping[str, str], stdin: bytes, name: str = SOCKET_NAME
) -> tuple[int, str, str] | None:
    """(exit code, stdout, stderr) of the call run by the node's service; None when no
    service listens. ServiceLost when one took the call but did not answer it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect(name)
        except OSError:  # nobody bound the name in this namespace: no calico node here
            return None
        try:
            sock.sendall(encode_request(module, environ, stdin))
            sock.shutdown(socket.SHUT_WR)
            data = _read_all(sock)
            doc: Any = json.loads(data)
            code, out, err = doc["code"], doc["stdout"], doc["stderr"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ServiceLost(f"{type(exc).__name__}: {exc}") from None
        if not (isinstance(code, int) and isinstance(out, str) and isinstance(err, str)):
            raise ServiceLost("malformed reply")
        return code, out, err
    finally:
        sock.close()


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def main(module: str) -> None:
    """What an installed plugin script runs: ADD, DEL and CHECK through the node's service
    when there is one, everything else (and everything when there is none) in this process
    through `runner.main`."""
    if sys.argv[1:] or os.environ.get("CNI_COMMAND") not in COMMANDS:
        _run_here(module, None)
    stdin = sys.stdin.buffer.read()
    try:
        reply = relay(module, os.environ, stdin)
    except ServiceLost as exc:
        _service_lost(str(exc))
    if reply is None:
        _run_here(module, stdin)
    else:
        code, out, err = reply
        sys.stdout.write(out)
        sys.stderr.write(err)
        sys.stdout.flush()
        sys.exit(code)


def _run_here(module: str, stdin: bytes | None) -> NoReturn:
    from calico.cni.runner import main as run_main

    run_main(module, stdin)


def _service_lost(detail: str) -> NoReturn:
    from calico.cni.spec import CniError, Code, document

    error = CniError(Code.TRY_AGAIN_LATER, "calico node's CNI service did not answer", detail)
    sys.stdout.write(document(error.to_json()))
    sys.stdout.flush()
    sys.exit(1)

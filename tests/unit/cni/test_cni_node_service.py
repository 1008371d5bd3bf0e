"""calico node's CNI service and the plugins' side of its socket: a call handed over gets the
answer the plugin process would have given, root only; no service means None (the plugin runs
the call itself); a service that takes a call and dies is "try again later". The full calls
(etcd, kernel) through the service run in tests/cni (every FV test in both modes)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import socket
import sys
import threading
from collections.abc import Iterator

import pytest

from calico import programs
from calico.cni.install import PLUGINS
from calico.cni.node_service import MAX_REQUEST, CniService
from calico.cni.node_socket import (
    ServiceLost,
    decode_request,
    encode_request,
    relay,
)
from calico.cni.runner import run

PLUGIN = "calico.cni.plugin"
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}  # fmt: skip
# Rejected while parsing, before any datastore or kernel work: no etcd needed here.
BAD_CONF = json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "calico"})  # no ipam


def unique_name() -> str:
    return f"\0calico-py-test/{secrets.token_hex(8)}"


@pytest.fixture
def service() -> Iterator[str]:
    name = unique_name()
    served = CniService(name)
    assert served.start()
    try:
        yield name
    finally:
        served.stop()


def in_process(stdin: bytes) -> tuple[int, str]:
    out = io.StringIO()
    code = run(lambda: {}, environ=ENV, stdin=stdin, stdout=out, stderr=io.StringIO())
    return code, out.getvalue()


def test_request_round_trip_keeps_bytes_that_are_not_utf8() -> None:
    stdin = b'{"a": "\xff\xfe"}'
    assert decode_request(encode_request(PLUGIN, ENV, stdin)) == (PLUGIN, ENV, stdin)


def test_no_service_is_none() -> None:
    assert relay(PLUGIN, ENV, BAD_CONF.encode(), unique_name()) is None


def test_service_answers_as_the_plugin_process_would(service: str) -> None:
    reply = relay(PLUGIN, ENV, BAD_CONF.encode(), service)
    assert reply is not None
    code, out, _ = reply
    assert (code, out) == in_process(BAD_CONF.encode())
    assert code == 1 and "ipam.type" in json.loads(out)["msg"]


def test_calls_run_concurrently(service: str) -> None:
    replies: list[tuple[int, str, str] | None] = []
    threads = [
        threading.Thread(target=lambda: replies.append(relay(PLUGIN, ENV, b"{", service)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(replies) == 8 and all(r is not None and r[0] == 1 for r in replies)


def test_unknown_module_and_malformed_request_are_refused(service: str) -> None:
    reply = relay("os", ENV, b"{}", service)
    assert reply is not None and "runs no plugin 'os'" in json.loads(reply[1])["msg"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(service)
        sock.sendall(b"not json")
        sock.shutdown(socket.SHUT_WR)
        doc = json.loads(sock.makefile("rb").read())
    assert doc["code"] == 1 and "malformed request" in json.loads(doc["stdout"])["msg"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(service)
        with contextlib.suppress(OSError):  # the service may stop reading and reset
            sock.sendall(b" " * (MAX_REQUEST + 1))
            sock.shutdown(socket.SHUT_WR)
        doc = json.loads(sock.makefile("rb").read())
    assert "larger than" in json.loads(doc["stdout"])["msg"]


def test_other_users_are_refused(service: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the caller switches to another uid")
    caller = (
        "import json, os, sys\n"
        "from calico.cni.node_socket import relay\n"
        "os.setuid(65534)\n"
        f"print(json.dumps(relay({PLUGIN!r}, {ENV!r}, {BAD_CONF.encode()!r}, {service!r})))"
    )
    out = programs.run([sys.executable, "-I", "-c", caller], check=True)
    reply = json.loads(out.stdout)
    assert reply[0] == 1 and "serves root only, not uid 65534" in json.loads(reply[1])["msg"]


def test_a_service_that_dies_mid_call_is_service_lost() -> None:
    name = unique_name()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(name)
    listener.listen(1)

    def take_and_drop() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    thread = threading.Thread(target=take_and_drop)
    thread.start()
    try:
        with pytest.raises(ServiceLost):
            relay(PLUGIN, ENV, BAD_CONF.encode(), name)
    finally:
        thread.join(10)
        listener.close()


def test_a_second_service_in_the_namespace_does_not_start(service: str) -> None:
    assert not CniService(service).start()


def test_a_service_whose_plugins_do_not_load_unbinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bound but never accepting, the name would leave every plugin waiting for a reply."""
    monkeypatch.setitem(PLUGINS, "broken", "calico.cni.no_such_module")
    name = unique_name()
    served = CniService(name)
    assert served.start()
    try:
        assert served._accepting is not None
        served._accepting.join(30)
        assert relay(PLUGIN, ENV, BAD_CONF.encode(), name) is None
    finally:
        served.stop()

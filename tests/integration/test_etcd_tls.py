"""EtcdBackend over https with a CA and a client certificate (etcd --client-cert-auth)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.datastore.api import DatastoreUnavailable, EventType
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.lab.pki import Pki
from calico.testing.etcd_server import EtcdServer, EtcdTls

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    """ca.crt signed server.crt and client.crt; other-ca.crt signed nothing etcd trusts."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl binary not found")
    pki = Pki(tmp_path)
    pki.make_ca()
    pki.make_server("server", ["127.0.0.1"])
    pki.make_client("client")
    Pki(tmp_path, ca="other-ca").make_ca()
    return tmp_path


@pytest.fixture
def tls_server(certs: Path) -> Iterator[EtcdServer]:
    if shutil.which("etcd") is None:
        pytest.skip("etcd binary not found (install etcd-server)")
    tls = EtcdTls(
        ca_file=certs / "ca.crt",
        cert_file=certs / "server.crt",
        key_file=certs / "server.key",
        client_cert_file=certs / "client.crt",
        client_key_file=certs / "client.key",
    )
    with EtcdServer(tls=tls) as server:
        yield server


def _backend(server: EtcdServer, certs: Path, ca: str = "ca", client: bool = True) -> EtcdBackend:
    return EtcdBackend(
        EtcdConfig(
            endpoints=(server.endpoint,),
            ca_cert_file=str(certs / f"{ca}.crt"),
            cert_file=str(certs / "client.crt") if client else None,
            key_file=str(certs / "client.key") if client else None,
            request_timeout=2,
        )
    )


def test_mutual_tls_crud_and_watch(tls_server: EtcdServer, certs: Path) -> None:
    assert tls_server.endpoint.startswith("https://")
    backend = _backend(tls_server, certs)
    try:
        rev = backend.create("/tls/k", b"v")
        assert backend.get("/tls/k").value == b"v"  # type: ignore[union-attr]
        for batch in backend.watch("/tls/", rev):
            assert [(e.type, e.key) for e in batch] == [(EventType.PUT, "/tls/k")]
            break
        idle = backend.watch("/tls/", rev + 1)
        reader = threading.Thread(target=lambda: list(idle))
        reader.start()
        threading.Timer(0.2, idle.close).start()
        reader.join(5)  # close() from another thread also ends a TLS stream promptly
        assert not reader.is_alive()
    finally:
        backend.close()


@pytest.mark.parametrize(("ca", "client"), [("other-ca", True), ("ca", False)])
def test_tls_failures_are_unavailable(
    tls_server: EtcdServer, certs: Path, ca: str, client: bool
) -> None:
    """An untrusted server, or a server refusing us, is a clear DatastoreUnavailable."""
    backend = _backend(tls_server, certs, ca=ca, client=client)
    try:
        with pytest.raises(DatastoreUnavailable, match=tls_server.endpoint):
            backend.get("/tls/k")
    finally:
        backend.close()


def test_missing_tls_file_fails_at_start(tls_server: EtcdServer, certs: Path) -> None:
    config = EtcdConfig(endpoints=(tls_server.endpoint,), ca_cert_file=str(certs / "nope.crt"))
    with pytest.raises(ValueError, match="TLS"):
        EtcdBackend(config)

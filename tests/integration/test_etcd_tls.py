"""EtcdBackend over https with a CA and a client certificate (etcd --client-cert-auth)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico import programs
from calico.datastore.api import DatastoreUnavailable, EventType
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.testing.etcd_server import EtcdServer, EtcdTls

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _openssl(*args: str, cwd: Path) -> None:
    programs.run(["openssl", *args], cwd=cwd, check=True)


def _make_ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-days", "1", "-subj", f"/CN={name}", cwd=directory)  # fmt: skip


def _make_leaf(directory: Path, name: str, ca: str) -> None:
    _openssl("req", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
             cwd=directory)  # fmt: skip
    (directory / f"{name}.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.crt",
             cwd=directory)  # fmt: skip


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl binary not found")
    _make_ca(tmp_path, "ca")
    _make_ca(tmp_path, "other-ca")
    _make_leaf(tmp_path, "server", "ca")
    _make_leaf(tmp_path, "client", "ca")
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

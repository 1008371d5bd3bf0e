"""A small certificate authority for etcd with TLS: a CA, a server certificate, client ones.

Made with the `openssl` program (EC P-256 keys, valid a few days: a lab's or a test's life).
`Pki(directory)` names every file; `make_ca`, `make_server` and `make_client` write them.
Key files are 0600 in a 0700 directory (no one else can reach them even before the chmod).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from calico import programs

ETCD_SERVER = "etcd"  # the etcd server's certificate and key
_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
_DAYS = "7"


@dataclass(frozen=True, slots=True)
class Pki:
    """Where a CA and the certificates it signed live: `<name>.crt` and `<name>.key`."""

    directory: Path
    ca: str = "ca"

    @property
    def ca_file(self) -> Path:
        return self.cert(self.ca)

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def make_ca(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        key, out = self.key(self.ca).name, self.ca_file.name
        self._openssl("req", "-x509", *_EC, "-keyout", key, "-out", out,
                      "-days", _DAYS, "-subj", f"/CN={self.ca}")  # fmt: skip
        self.key(self.ca).chmod(0o600)
        return self.ca_file

    def make_server(self, name: str, addresses: Iterable[str]) -> Path:
        """A certificate for `name` valid for these IP addresses (and usable as a client's)."""
        sans = ",".join(f"IP:{address}" for address in addresses)
        return self._make_leaf(
            name, f"subjectAltName={sans}\nextendedKeyUsage=serverAuth,clientAuth\n"
        )

    def make_client(self, name: str) -> Path:
        return self._make_leaf(name, "extendedKeyUsage=clientAuth\n")

    def _make_leaf(self, name: str, extensions: str) -> Path:
        csr, ext = self.directory / f"{name}.csr", self.directory / f"{name}.ext"
        self._openssl("req", *_EC, "-keyout", self.key(name).name, "-out", csr.name,
                      "-subj", f"/CN={name}")  # fmt: skip
        self.key(name).chmod(0o600)
        ext.write_text(extensions)
        self._openssl("x509", "-req", "-in", csr.name, "-CA", self.ca_file.name,
                      "-CAkey", self.key(self.ca).name, "-CAcreateserial", "-days", _DAYS,
                      "-extfile", ext.name, "-out", self.cert(name).name)  # fmt: skip
        csr.unlink()
        ext.unlink()
        return self.cert(name)

    def _openssl(self, *args: str) -> None:
        programs.run(["openssl", *args], cwd=self.directory, check=True)


def etcd_tls_args(pki: Pki) -> tuple[str, ...]:
    """etcd's flags for TLS on its client URLs, requiring a certificate signed by the CA."""
    return (
        *("--cert-file", str(pki.cert(ETCD_SERVER)), "--key-file", str(pki.key(ETCD_SERVER))),
        *("--trusted-ca-file", str(pki.ca_file), "--client-cert-auth"),
    )


def host_client(host: str) -> str:
    """The name of a lab host's client certificate (prefixed: a host may be called "etcd")."""
    return f"host-{host}"


def client_env(pki: Pki, name: str) -> dict[str, str]:
    """Calico's variables handing `name`'s client certificate to calicoctl, node, Felix."""
    return {
        "ETCD_CA_CERT_FILE": str(pki.ca_file),
        "ETCD_CERT_FILE": str(pki.cert(name)),
        "ETCD_KEY_FILE": str(pki.key(name)),
    }


def local_pair(work: Path, client: str = "client") -> tuple[Pki, Pki]:
    """For TLS checks against an etcd on 127.0.0.1: etcd's CA (with its server certificate
    and a `client` certificate) and an unrelated CA with a `client` certificate of its own."""
    ours, other = Pki(work / "pki"), Pki(work / "other-ca")
    ours.make_ca()
    ours.make_server(ETCD_SERVER, ["127.0.0.1"])
    ours.make_client(client)
    other.make_ca()
    other.make_client(client)
    return ours, other

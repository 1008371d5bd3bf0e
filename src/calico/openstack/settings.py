"""The `[calico]` options of neutron's config files, and the etcd they point at (pure).

Option names are networking-calico's: `etcd_host`, `etcd_port`, `etcd_cert_file`,
`etcd_key_file`, `etcd_ca_cert_file`, `openstack_region`. The neutron-server driver gets them
through oslo.config; the DHCP agent and `calico-neutron-resync` read the same INI files with
`read_config_files` (no oslo needed on a compute host). `ETCD_ENDPOINTS` in the environment,
when set, overrides host and port, as it does for every other calico-py component.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from calico.datastore.config import EtcdConfig, parse_endpoints
from calico.openstack import keys

SECTION = "calico"


@dataclass(frozen=True, slots=True)
class CalicoOptions:
    etcd_host: str = "127.0.0.1"
    etcd_port: int = 2379
    etcd_cert_file: str | None = None
    etcd_key_file: str | None = None
    etcd_ca_cert_file: str | None = None
    openstack_region: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.etcd_port < 65536:
            raise ValueError(f"[calico] etcd_port {self.etcd_port}: not a TCP port number")
        if self.openstack_region:
            keys.validate_region(self.openstack_region)

    @property
    def region_string(self) -> str:
        return keys.region_string(self.openstack_region)

    @property
    def namespace(self) -> str:
        return keys.endpoint_namespace(self.openstack_region)

    def etcd_config(self, environ: Mapping[str, str]) -> EtcdConfig:
        """Where etcd is: ETCD_ENDPOINTS if set, else etcd_host:etcd_port (https with TLS)."""
        tls = bool(self.etcd_cert_file or self.etcd_ca_cert_file)
        override = environ.get("ETCD_ENDPOINTS", "").strip()
        if override:
            endpoints = parse_endpoints(override)
        else:
            host = f"[{self.etcd_host}]" if ":" in self.etcd_host else self.etcd_host
            endpoints = (f"{'https' if tls else 'http'}://{host}:{self.etcd_port}",)
        try:
            return EtcdConfig(
                endpoints=endpoints,
                ca_cert_file=self.etcd_ca_cert_file,
                cert_file=self.etcd_cert_file,
                key_file=self.etcd_key_file,
            )
        except ValueError as exc:
            raise ValueError(f"[calico] etcd options: {exc}") from None


def read_config_files(paths: Sequence[str]) -> CalicoOptions:
    """The `[calico]` section of INI files, later files overriding earlier ones, as oslo does.

    Unknown options in the section are ignored (neutron's files carry others); a missing file
    or a malformed value raises ValueError naming it.
    """
    parser = configparser.ConfigParser(interpolation=None)
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                parser.read_file(handle, source=path)
        except OSError as exc:
            raise ValueError(f"cannot read config file {path}: {exc.strerror}") from None
        except configparser.Error as exc:
            raise ValueError(f"config file {path}: {exc}") from None
    if not parser.has_section(SECTION):
        return CalicoOptions()
    values: dict[str, object] = {}
    for field in fields(CalicoOptions):
        raw = parser.get(SECTION, field.name, fallback="").strip()
        if not raw:
            continue
        if field.name == "etcd_port":
            try:
                values[field.name] = int(raw)
            except ValueError:
                raise ValueError(f"[calico] etcd_port {raw!r}: not an integer") from None
        else:
            values[field.name] = raw
    return CalicoOptions(**values)  # type: ignore[arg-type]

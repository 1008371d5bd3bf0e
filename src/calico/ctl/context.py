"""What every calicoctl command needs: configuration, a datastore client, error reporting.

Connection settings come from the calicoctl config file (`-c/--config`, default
/etc/calico/calicoctl.cfg when present, `kind: CalicoAPIConfig`) and Calico's ETCD_*
environment variables, which win over the file so one-off overrides need no editing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click
import yaml

from calico.datastore.api import DatastoreError
from calico.datastore.client import ResourceClient
from calico.datastore.config import EtcdConfig, check_environment, parse_endpoints
from calico.datastore.etcd import EtcdBackend
from calico.model.base import Resource
from calico.model.errors import ResourceError
from calico.model.keys import ResourceKey
from calico.model.network import ClusterInformation
from calico.model.registry import kind_for

DEFAULT_CONFIG = "/etc/calico/calicoctl.cfg"
_ENV_KEYS = ("ETCD_ENDPOINTS", "ETCD_CA_CERT_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE")


class CtlError(click.ClickException):
    """A one-line failure: printed to stderr, exit code 1."""

    def show(self, file: object = None) -> None:
        click.echo(self.message, err=True)


def load_etcd_config(config_path: str | None, environ: Mapping[str, str]) -> EtcdConfig:
    path = Path(config_path or DEFAULT_CONFIG)
    spec: dict[str, object] = {}
    if config_path is not None and not path.exists():
        raise CtlError(f"config file {path} does not exist")
    if path.exists():
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise CtlError(f"cannot read config file {path}: {exc}") from None
        if not isinstance(doc, dict) or doc.get("kind") != "CalicoAPIConfig":
            raise CtlError(f"config file {path}: expected kind CalicoAPIConfig")
        spec = dict(doc.get("spec") or {})
    try:
        check_environment(environ)
        base = EtcdConfig.from_mapping(spec)
        if not any(environ.get(k) for k in _ENV_KEYS):
            return base
        env = EtcdConfig.from_env(environ)
        return EtcdConfig(
            endpoints=parse_endpoints(environ["ETCD_ENDPOINTS"])
            if environ.get("ETCD_ENDPOINTS")
            else base.endpoints,
            ca_cert_file=env.ca_cert_file or base.ca_cert_file,
            cert_file=env.cert_file or base.cert_file,
            key_file=env.key_file or base.key_file,
        )
    except ValueError as exc:
        raise CtlError(str(exc)) from None


@dataclass
class CtlContext:
    config_path: str | None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _client: ResourceClient | None = None

    def client(self) -> ResourceClient:
        """A connected client; the datastore is initialised on first contact."""
        if self._client is None:
            backend = EtcdBackend(load_etcd_config(self.config_path, self.environ))
            client = ResourceClient(backend)
            try:
                with reported():
                    if backend.get(_cluster_info_key()) is None:
                        client.ensure_initialized()
            except CtlError:
                backend.close()
                raise
            self._client = client
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.backend.close()


def _cluster_info_key() -> str:
    return ResourceKey(ClusterInformation, "default").path


@contextmanager
def reported() -> Iterator[None]:
    """Turn datastore and validation failures into one-line CLI errors."""
    try:
        yield
    except (DatastoreError, ResourceError) as exc:
        raise CtlError(str(exc)) from None


def resolve_kind(text: str) -> type[Resource]:
    """A kind name, plural or alias -> its class; CtlError for unknown kinds."""
    try:
        return kind_for(text)
    except ValueError as exc:
        raise CtlError(str(exc)) from None


def warn(message: str) -> None:
    print(message, file=sys.stderr)

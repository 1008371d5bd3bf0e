"""What a CNI call talks to: the datastore, Calico IPAM and the kernel, each built on first use.

VERSION and a config rejected at parse time never open a connection, nor import what they
would need (the etcd client, the pydantic models): a plugin process pays for those only when
a command uses them. Tests substitute any
object with `client`, `ipam` and `net` attributes (a memory Backend, a fake IPAM, a fake
NetSetup). `datastore_errors` maps datastore and IPAM failures to CNI codes in one place:
an unreachable etcd is "try again later" (11), pool exhaustion and other IPAM refusals 101,
any other datastore failure 103.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from calico.cni.config import NetConf, determine_nodename, etcd_config
from calico.cni.spec import CniError, Code
from calico.datastore.api import DatastoreError, DatastoreUnavailable
from calico.ipam.api import IPAM, IPAMError
from calico.model.errors import ResourceError

if TYPE_CHECKING:
    from calico.cni.netsetup import NetSetup
    from calico.datastore.client import ResourceClient
    from calico.datastore.etcd import EtcdBackend


class Services(Protocol):
    @property
    def client(self) -> ResourceClient: ...

    @property
    def ipam(self) -> IPAM: ...

    @property
    def net(self) -> NetSetup: ...


class DefaultServices:
    """etcd (config keys over ETCD_* variables), Calico IPAM over it, the real kernel."""

    def __init__(self, conf: NetConf, environ: Mapping[str, str]) -> None:
        self._conf = conf
        self._environ = environ

    @functools.cached_property
    def backend(self) -> EtcdBackend:
        from calico.datastore.etcd import EtcdBackend
        from calico.datastore.etcd_stdlib import StdlibTransport

        node = determine_nodename(self._conf, self._environ)
        config = etcd_config(self._conf, self._environ).for_host(node)
        # http.client, not httpx: a plugin makes a few calls and never watches (etcd_stdlib).
        return EtcdBackend(config, transport=StdlibTransport(config))

    @functools.cached_property
    def client(self) -> ResourceClient:
        from calico.datastore.client import ResourceClient

        return ResourceClient(self.backend)

    @functools.cached_property
    def ipam(self) -> IPAM:
        from calico.ipam.allocator import IPAMClient

        return IPAMClient(self.backend)

    @functools.cached_property
    def net(self) -> NetSetup:
        from calico.cni.netsetup import KernelNetSetup

        return KernelNetSetup()

    def close(self) -> None:
        if "backend" in self.__dict__:
            self.backend.close()


@contextlib.contextmanager
def datastore_errors(step: str) -> Iterator[None]:
    """Report datastore/IPAM failures during `step` as CNI errors with the right code."""
    try:
        yield
    except IPAMError as exc:
        raise CniError(Code.IPAM_FAILURE, f"{step}: {exc}") from None
    except DatastoreUnavailable as exc:
        raise CniError(Code.TRY_AGAIN_LATER, f"{step}: datastore unavailable", str(exc)) from None
    except (DatastoreError, ResourceError) as exc:
        raise CniError(Code.DATASTORE_FAILURE, f"{step}: {exc}") from None

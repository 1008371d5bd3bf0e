"""A fake for the CNI plugins' NetSetup seam (IPAM's is calico.testing.cni.FakeIPAM) and a
harness that runs a plugin exactly as its process would, minus the process: CNI_* environment
and stdin in, stdout JSON out."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from calico.cni import ipam_plugin, plugin
from calico.cni.config import NetConf
from calico.cni.netsetup import NetnsNotFound, NetSetupError, VethInfo, VethSpec
from calico.cni.runner import Handler, run
from calico.datastore.client import ResourceClient
from calico.datastore.memory import MemoryBackend
from calico.testing.cni import FakeIPAM

CONTAINER_ID = "0123456789abcdef0123"
NETNS = "/run/netns/test-container"
CONTAINER_MAC = "0a:58:0a:00:00:05"


@dataclass
class FakeNetSetup:
    """Records the wiring; `fail` makes the next add raise it."""

    wired: dict[tuple[str, str], VethSpec] = field(default_factory=dict)
    fail: Exception | None = None
    removals: list[tuple[str, str]] = field(default_factory=list)

    def add(self, spec: VethSpec) -> VethInfo:
        if self.fail is not None:
            raise self.fail
        if not spec.netns.startswith("/run/netns/"):
            raise NetnsNotFound(f"network namespace {spec.netns} does not exist")
        if (spec.netns, spec.ifname) in self.wired:
            raise NetSetupError(f"{spec.ifname} already exists in {spec.netns}")
        self.wired[(spec.netns, spec.ifname)] = spec
        gateway6 = "fe80::ecee:eeff:feee:eeee" if spec.family(6) else None
        return VethInfo(spec.host_ifname, "ee:ee:ee:ee:ee:ee", CONTAINER_MAC, gateway6)

    def remove(self, netns: str, ifname: str) -> bool:
        self.removals.append((netns, ifname))
        return self.wired.pop((netns, ifname), None) is not None

    def check(self, spec: VethSpec) -> list[str]:
        wired = self.wired.get((spec.netns, spec.ifname))
        if wired is None:
            return [f"{spec.ifname} does not exist in {spec.netns}"]
        return [f"{a} is not on {spec.ifname}" for a in spec.addresses if a not in wired.addresses]


@dataclass
class FakeServices:
    client: ResourceClient
    ipam: FakeIPAM
    net: FakeNetSetup


@dataclass
class Outcome:
    code: int
    doc: dict[str, Any] | None
    stderr: str


class Harness:
    def __init__(self) -> None:
        self.backend = MemoryBackend()
        self.client = ResourceClient(self.backend)
        self.client.ensure_initialized()
        self.services = FakeServices(self.client, FakeIPAM(), FakeNetSetup())
        self.node = "node-1"

    def invoke(
        self,
        handlers: Mapping[str, Handler],
        command: str,
        conf: Mapping[str, Any] | bytes,
        **env: str | None,
    ) -> Outcome:
        environ: dict[str, str | None] = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": CONTAINER_ID,
            "CNI_NETNS": NETNS,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": "/opt/cni/bin",
            **env,
        }
        present = {k: v for k, v in environ.items() if v is not None}
        stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        out, err = io.StringIO(), io.StringIO()
        code = run(
            handlers,
            environ=present,
            stdin=stdin,
            stdout=out,
            stderr=err,
            services_factory=self._services,
            node_of=lambda _conf, _env: self.node,
        )
        text = out.getvalue()
        return Outcome(code, json.loads(text) if text.strip() else None, err.getvalue())

    def _services(self, _conf: NetConf, _environ: Mapping[str, str]) -> FakeServices:
        return self.services

    def calico(self, command: str, conf: Mapping[str, Any] | bytes, **env: str | None) -> Outcome:
        return self.invoke(plugin.HANDLERS, command, conf, **env)

    def ipam(self, command: str, conf: Mapping[str, Any] | bytes, **env: str | None) -> Outcome:
        return self.invoke(ipam_plugin.HANDLERS, command, conf, **env)


def netconf(version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": version,
        "name": "net1",
        "type": "calico",
        "etcd_endpoints": "http://127.0.0.1:2379",
        "ipam": {"type": "calico-ipam"},
    }
    conf.update(extra)
    return conf

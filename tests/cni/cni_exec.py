"""A tiny CNI runtime for tests: runs the installed plugin executables exactly as a runtime does
(CNI_* environment, config on stdin, inside the host's network namespace), parses stdout, and
inspects what a call left behind in the kernel, etcd and IPAM."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calico import programs
from calico.cni.node_socket import COMMANDS
from calico.ipam.allocator import IPAMClient
from calico.model.endpoints import WorkloadEndpoint
from fv.conftest import Cluster, FelixHost

NETWORK = "fvnet"


@dataclass
class Outcome:
    exit_code: int
    doc: dict[str, Any] | None
    stderr: str

    @property
    def error_code(self) -> int | None:
        return None if self.exit_code == 0 or self.doc is None else int(self.doc["code"])

    def addresses(self) -> list[str]:
        assert self.exit_code == 0 and self.doc is not None, self
        return [ip["address"].split("/")[0] for ip in self.doc["ips"]]


@dataclass
class Container:
    """A container as a runtime sees it: an ID and a network namespace the test created."""

    id: str
    netns: str  # name under /run/netns
    args: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"


class CniRunner:
    def __init__(self, cluster: Cluster, host: FelixHost, bin_dir: Path, log_path: Path) -> None:
        self.cluster = cluster
        self.host = host
        self.bin_dir = bin_dir
        self.log_path = log_path
        self.mtu_file = log_path.with_name("mtu")  # what Felix would write; absent at first
        self.handed_over = 0  # calls a plugin offers to calico node's CNI service
        self.ipam = IPAMClient(cluster.backend)

    def container(self, suffix: str, args: str = "", **labels: str) -> Container:
        netns = self.cluster.ns.add(suffix)
        return Container(secrets.token_hex(32), netns, args, labels)

    def conf(self, container: Container | None = None, **overrides: Any) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "calico",
            "etcd_endpoints": self.cluster.etcd.unix_endpoint,
            "nodename": self.host.node,
            "log_level": "debug",
            "log_file_path": str(self.log_path),
            "mtu_file_path": str(self.mtu_file),  # never the machine's /var/lib/calico/mtu
            "ipam": {"type": "calico-ipam", "assign_ipv6": "true"},
        }
        if container is not None and container.labels:
            labels = [{"key": k, "value": v} for k, v in container.labels.items()]
            conf["args"] = {"cni": {"labels": labels}}
        conf.update(overrides)
        return conf

    def exec(
        self,
        command: str,
        container: Container,
        conf: dict[str, Any] | bytes | None = None,
        plugin: str = "calico",
        **env: str | None,
    ) -> Outcome:
        environ: dict[str, str | None] = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container.id,
            "CNI_NETNS": container.netns_path,
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": container.args,
            "CNI_PATH": str(self.bin_dir),
            **env,
        }
        stdin = conf if isinstance(conf, bytes) else json.dumps(conf or self.conf(container))
        self.handed_over += environ["CNI_COMMAND"] in COMMANDS
        proc = programs.run(
            ["nsenter", f"--net=/run/netns/{self.host.netns}", str(self.bin_dir / plugin)],
            stdin=stdin.decode() if isinstance(stdin, bytes) else stdin,
            env={k: v for k, v in environ.items() if v is not None},
            timeout=120,
        )
        doc = json.loads(proc.stdout) if proc.stdout.strip() else None
        return Outcome(proc.returncode, doc, proc.stderr)

    # -- what is left behind ----------------------------------------------------------------

    def host_links(self) -> set[str]:
        links = json.loads(self.host.exec(["ip", "-j", "link", "show"]).stdout)
        return {link["ifname"] for link in links}

    def container_links(self, container: Container) -> set[str]:
        proc = self.cluster.ns.exec(container.netns, ["ip", "-j", "link", "show"], check=False)
        return (
            {link["ifname"] for link in json.loads(proc.stdout)} if proc.returncode == 0 else set()
        )

    def endpoints(self) -> list[WorkloadEndpoint]:
        return [
            w
            for w in self.cluster.client.list(WorkloadEndpoint).items
            if isinstance(w, WorkloadEndpoint)
        ]

    def endpoint_of(self, container: Container) -> WorkloadEndpoint | None:
        return next((w for w in self.endpoints() if w.spec.containerID == container.id), None)

    def handle_ips(self, container: Container) -> list[str]:
        return self.ipam.ips_by_handle(f"{NETWORK}.{container.id}")

    def assert_nothing_left(self, container: Container, addresses: Sequence[str] = ()) -> None:
        host_veth = "cali" + container.id[:11]
        assert host_veth not in self.host_links()
        assert "eth0" not in self.container_links(container)
        assert self.endpoint_of(container) is None
        assert self.handle_ips(container) == []
        for address in addresses:
            assert self.ipam.allocation_of(address) is None, address
        routes = self.host.exec(["ip", "-d", "-4", "route", "show"]).stdout
        assert host_veth not in routes

"""Attaching workloads exactly as a container runtime does: the installed `calico` CNI plugin,
executed inside the host's namespace with the CNI_* environment and the config on stdin.

Calls are Kubernetes-style (K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS, `policy: {type:
k8s}`), so each workload's endpoint uses its namespace's `kns.<namespace>` profile and its
labels come from `args.cni.labels`. The ADD result is kept for DEL's `prevResult`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calico.cni.install import install_plugins
from calico.lab.netns import run

NETWORK = "lab-net"
CNI_VERSION = "1.0.0"


class CniFailure(RuntimeError):
    """The plugin reported an error (its CNI error JSON is in the message)."""


@dataclass(frozen=True, slots=True)
class CniCall:
    bin_dir: Path
    host_netns: str
    netns: str
    container_id: str
    pod: str
    namespace: str


def install(bin_dir: Path) -> None:
    install_plugins(bin_dir)


def net_conf(
    etcd: Mapping[str, str],
    node: str,
    labels: dict[str, str],
    families: tuple[bool, bool],
    log_file: Path,
    mtu_file: Path,
    pools: tuple[list[str], list[str]] = ([], []),
) -> dict[str, Any]:
    """The network config for one call; `etcd`: the host's ETCD_* variables (the CNI keys are
    their lower-case names, etcd_ca_cert_file...); `pools`: IPv4 and IPv6 pool names to use
    (if any); `mtu_file`: the host's Felix's MTUFilePath."""
    ipam: dict[str, Any] = {
        "type": "calico-ipam",
        "assign_ipv4": "true" if families[0] else "false",
        "assign_ipv6": "true" if families[1] else "false",
    }
    if pools[0]:
        ipam["ipv4_pools"] = pools[0]
    if pools[1]:
        ipam["ipv6_pools"] = pools[1]
    return {
        "cniVersion": CNI_VERSION,
        "name": NETWORK,
        "type": "calico",
        "etcd_endpoints": etcd["ETCD_ENDPOINTS"],
        **{name.lower(): value for name, value in etcd.items() if name != "ETCD_ENDPOINTS"},
        "nodename": node,
        "log_level": "info",
        "log_file_path": str(log_file),
        "mtu_file_path": str(mtu_file),
        "ipam": ipam,
        "policy": {"type": "k8s"},
        "args": {"cni": {"labels": [{"key": k, "value": v} for k, v in labels.items()]}},
    }


def invoke(call: CniCall, command: str, conf: dict[str, Any]) -> dict[str, Any]:
    """Run the plugin; returns its JSON result (empty for DEL). CniFailure on error."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": call.container_id,
        "CNI_NETNS": f"/run/netns/{call.netns}",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": (
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE={call.namespace};K8S_POD_NAME={call.pod};"
            f"K8S_POD_INFRA_CONTAINER_ID={call.container_id}"
        ),
        "CNI_PATH": str(call.bin_dir),
    }
    argv = ["nsenter", f"--net=/run/netns/{call.host_netns}", str(call.bin_dir / "calico")]
    proc = run(argv, check=False, stdin=json.dumps(conf), env=env, timeout=120)
    out = proc.stdout.strip()
    if proc.returncode != 0:
        raise CniFailure(f"CNI {command} failed (exit {proc.returncode}): {out or proc.stderr}")
    doc = json.loads(out) if out else {}
    assert isinstance(doc, dict)
    return doc


def addresses(result: dict[str, Any]) -> tuple[str | None, str | None]:
    """(IPv4, IPv6) of the container interface in an ADD result."""
    ipv4 = ipv6 = None
    for item in result.get("ips", []):
        address = str(item["address"]).split("/")[0]
        if ":" in address:
            ipv6 = ipv6 or address
        else:
            ipv4 = ipv4 or address
    return ipv4, ipv6

"""`calicoctl policy trace` as the FV tests call it: in-process, against the cluster's etcd,
JSON out."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner, Result

from calico.ctl.main import cli

from .conftest import Cluster


def _invoke_trace(cluster: Cluster, flags: list[str]) -> Result:
    runner = CliRunner(env={"ETCD_ENDPOINTS": cluster.etcd.endpoint, "ETCD_CA_CERT_FILE": ""})
    return runner.invoke(cli, ["policy", "trace", *flags, "-o", "json"])


def cli_trace(cluster: Cluster, flags: list[str]) -> dict[str, Any]:
    result = _invoke_trace(cluster, flags)
    assert result.exit_code == 0, (flags, result.output)
    out: dict[str, Any] = json.loads(result.output)
    return out


def traced(cluster: Cluster, src: str, dst: str, protocol: str, port: int = 0) -> bool:
    """Whether the trace allows `protocol` from address `src` to `dst` (ICMP: an echo)."""
    if protocol == "icmp":
        protocol = "ICMPv6" if ":" in src else "ICMP"
    flags = ["--from-ip", src, "--to-ip", dst, "--protocol", protocol.upper()]
    verdict = cli_trace(cluster, flags + (["--port", str(port)] if port else []))["verdict"]
    return bool(verdict == "allow")


def cli_trace_refused(cluster: Cluster, flags: list[str]) -> str:
    """The error of a trace that must be refused (exit 1)."""
    result = _invoke_trace(cluster, flags)
    assert result.exit_code == 1, (flags, result.output)
    return result.stderr

"""The ipam check report and calicoctl ipam's table rendering, on the in-memory datastore."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from calico.ctl.commands.ipam import USAGE_HEADER, render_box_table, usage_rows
from calico.datastore.client import ResourceClient
from calico.ipam.allocator import IPAMClient
from calico.ipam.api import AutoAssignRequest
from calico.ipam.check import IPAMChecker
from calico.ipam.store import IPAMStore
from calico.ipam.usage import BlockUsage, PoolUsage
from calico.model.endpoints import WorkloadEndpoint
from calico.model.network import Node


def wep(container: str, ip: str | None, pod: str) -> WorkloadEndpoint:
    return WorkloadEndpoint.model_validate(
        {
            "metadata": {"namespace": "ns"},
            "spec": {
                "orchestrator": "k8s",
                "node": "host-a",
                "pod": pod,
                "endpoint": "eth0",
                "containerID": container,
                "ipNetworks": [f"{ip}/32"] if ip else None,
            },
        }
    )


def test_check_finds_leaks_by_address_container_and_tunnel_handle(
    ipam: IPAMClient, resources: ResourceClient, make_pool: Callable[..., Any]
) -> None:
    make_pool("p", "10.0.0.0/24", block_size=29)
    resources.create(Node.model_validate({"metadata": {"name": "host-a"}}))

    def assign(handle: str) -> str:
        req = AutoAssignRequest(handle, "host-a", attrs={"pod": handle, "namespace": "ns"})
        return ipam.auto_assign(req).ipv4[0].split("/")[0]

    by_ip = assign("net.c1")  # WEP lists the address
    by_container = assign("net.c2")  # WEP with the container ID, no address (yet)
    tunnel = assign("ipip-tunnel-addr-host-a")
    leaked = assign("net.gone")
    resources.create(wep("c1", by_ip, "p1"))
    resources.create(wep("c2", None, "p2"))
    IPAMStore(ipam.store.backend).adjust_handle("orphan-handle", "10.0.0.0/29", 1)

    lines: list[str] = []
    report = IPAMChecker(ipam.store, resources, lines.append, show_problems=True).run("v1")
    text = "\n".join(lines)
    assert (
        f"  {leaked} leaked; attrs Main:net.gone Extra:namespace=ns,node=host-a,pod=net.gone"
        in text
    )
    assert "Found 1 IPs that are allocated in IPAM but not actually in use." in text
    assert "Found 1 handles with no matching IPs (and 4 handles with matches)." in text
    assert text.endswith("Check complete; found 2 problems.")
    allocations = report["allocations"]
    assert allocations[by_ip][0]["owners"] == ["Workload(ns/host--a-k8s-p1-eth0)"]
    assert allocations[by_container][0]["inUse"] is True
    assert allocations[tunnel][0]["owners"] == ["Node(host-a)"]
    assert allocations[leaked][0] == {
        "ip": leaked,
        "handle": "net.gone",
        "sequenceNumber": allocations[leaked][0]["sequenceNumber"],
        "pod": "net.gone",
        "namespace": "ns",
        "node": "host-a",
        "inUse": False,
        "owners": None,
    }
    assert [h["ID"] for h in report["leakedHandles"]] == ["orphan-handle"]
    assert report["version"] == "v1" and "clusterGUID" in report


def test_check_reports_in_use_addresses_without_allocation(
    ipam: IPAMClient, resources: ResourceClient, make_pool: Callable[..., Any]
) -> None:
    make_pool("p", "10.0.0.0/24")
    resources.create(wep("c9", "10.0.0.9", "p9"))
    resources.create(wep("c8", "192.0.2.8", "p8"))
    lines: list[str] = []
    report = IPAMChecker(ipam.store, resources, lines.append).run("v1")
    assert "Found 1 in-use IPs that are not in active IP pools." in lines
    assert report["allocations"] == {} and "leakedHandles" not in report


def test_usage_table_looks_like_calicoctl() -> None:
    usage = [
        PoolUsage(
            "p",
            "10.0.0.0/24",
            256,
            [BlockUsage("10.0.0.0/29", 8, 3, "host:a"), BlockUsage("10.0.0.8/29", 8, 8, None)],
        ),
        PoolUsage("v6", "fd00::/64", 2**64, []),
        PoolUsage("orphaned allocation blocks", None, 4, [BlockUsage("10.9.0.0/30", 4, 1, None)]),
    ]
    assert render_box_table(USAGE_HEADER, usage_rows(usage, show_blocks=False)) == (
        "+----------+-------------+------------+------------+-------------------+\n"
        "| GROUPING |    CIDR     | IPS TOTAL  | IPS IN USE |     IPS FREE      |\n"
        "+----------+-------------+------------+------------+-------------------+\n"
        "| IP Pool  | 10.0.0.0/24 |        256 | 11 (4%)    | 245 (96%)         |\n"
        "| IP Pool  | fd00::/64   | 1.8447e+19 | 0 (0%)     | 1.8447e+19 (100%) |\n"
        "+----------+-------------+------------+------------+-------------------+\n"
    )
    rows = usage_rows(usage, show_blocks=True)
    assert rows[1] == ["Block", "10.0.0.0/29", "8", "3 (38%)", "5 (62%)"]
    assert rows[-1] == ["Block", "10.9.0.0/30", "4", "1 (25%)", "3 (75%)"]

"""`apply --preview` reads each host's Felix reports once for both of its sides: a get per
report key, and one listing of every region only when some key is not in no-region."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from calico.ctl.preview import Change, PreviewError, preview
from calico.datastore.api import KeyValue, Listing
from calico.datastore.client import ResourceClient
from calico.datastore.memory import MemoryBackend
from calico.model import parse_manifest
from calico.model.status_keys import (
    FELIX_STATUS_ROOT,
    host_endpoint_interfaces_key,
    rules_settings_key,
)
from calico.rules.config import RulesConfig
from calico.testing.shop import DENY_DB, SHOP

BASE = (
    SHOP
    + """---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: host-3}
spec: {bgp: {ipv4Address: 198.19.3.3/24}}
"""
)
BY_IP = """
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: host-3-by-ip}
spec: {node: host-3, expectedIPs: [198.19.3.3]}
"""
HOSTS = ("host-1", "host-2", "host-3")
DENIED = [
    Change("newly denied", src, "shop/db-0", "TCP 5432")
    for src in ("external 192.0.2.1", "host host-3", "shop/web-0")
]
SETTINGS = json.dumps(RulesConfig().to_json()).encode()


class CountingBackend(MemoryBackend):
    """The memory datastore, counting each get by key and each listing by prefix."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: Counter[tuple[str, str]] = Counter()

    def get(self, key: str) -> KeyValue | None:
        self.reads["get", key] += 1
        return super().get(key)

    def list(self, prefix: str) -> Listing:
        self.reads["list", prefix] += 1
        return super().list(prefix)


def store(manifest: str) -> tuple[CountingBackend, ResourceClient]:
    backend = CountingBackend()
    client = ResourceClient(backend)
    client.ensure_initialized()
    for resource in parse_manifest(manifest):
        client.apply(resource)
    return backend, client


def previewed(backend: CountingBackend, client: ResourceClient) -> list[Change]:
    backend.reads.clear()
    return preview(client, parse_manifest(DENY_DB), delete=False).changes


def report_reads(backend: CountingBackend) -> Counter[tuple[str, str]]:
    return Counter({r: n for r, n in backend.reads.items() if r[1].startswith(FELIX_STATUS_ROOT)})


def test_every_host_reported_in_no_region_is_one_get_per_key() -> None:
    backend, client = store(BASE)
    for host in HOSTS:
        backend.put(rules_settings_key(host), SETTINGS)
        backend.put(host_endpoint_interfaces_key(host), b"{}")
    assert previewed(backend, client) == DENIED
    keys = [k for h in HOSTS for k in (rules_settings_key(h), host_endpoint_interfaces_key(h))]
    assert report_reads(backend) == Counter({("get", k): 1 for k in keys})
    assert max(backend.reads.values()) == 1  # no key or prefix read twice


def test_hosts_reported_elsewhere_or_never_share_one_listing() -> None:
    """host-1 reported in no-region, host-2 in a region, host-3 never (its settings come
    from the FelixConfigurations, read once too)."""
    backend, client = store(BASE)
    backend.put(rules_settings_key("host-1"), SETTINGS)
    backend.put(host_endpoint_interfaces_key("host-1"), b"{}")
    backend.put(rules_settings_key("host-2", "region-r1"), SETTINGS)
    backend.put(host_endpoint_interfaces_key("host-2", "region-r1"), b"{}")
    assert previewed(backend, client) == DENIED
    keys = [k for h in HOSTS for k in (rules_settings_key(h), host_endpoint_interfaces_key(h))]
    expected = Counter({("get", k): 1 for k in keys})
    expected["list", FELIX_STATUS_ROOT + "/"] = 1
    assert report_reads(backend) == expected
    assert max(backend.reads.values()) == 1


def test_a_host_endpoint_felix_never_resolved_is_still_refused() -> None:
    backend, client = store(BASE + "---" + BY_IP)
    with pytest.raises(PreviewError, match="host-3-by-ip has no interfaceName"):
        previewed(backend, client)
    assert report_reads(backend)["list", FELIX_STATUS_ROOT + "/"] == 1
    backend.put(host_endpoint_interfaces_key("host-3", "region-r1"), b'{"host-3-by-ip": "eth0"}')
    assert previewed(backend, client) == DENIED

"""Felix's status reporting against the in-memory backend (lease expiry with a fake clock)."""

from __future__ import annotations

import json
import time

import pytest

from calico.datastore.memory import MemoryBackend
from calico.felix.status import StatusReporter
from calico.model.status_keys import host_endpoint_status_key, workload_status_key
from calico.testing.clock import ManualClock
from calico.testing.waiting import wait_until


def test_heartbeat_is_leased_and_mirrored() -> None:
    clock = ManualClock(1000.0)
    backend = MemoryBackend(now=clock)
    reporter = StatusReporter(
        backend, "host-1", interval=30, ttl=90, wallclock=lambda: "2026-01-01T00:00:00Z"
    )
    assert reporter.report()
    status = backend.get("/calico/felix/v2/no-region/host/host-1/status")
    assert status is not None and status.lease != 0
    body = json.loads(status.value)
    assert body["first_update"] is True and body["time"] == "2026-01-01T00:00:00Z"
    assert reporter.report()
    again = backend.get("/calico/felix/v2/no-region/host/host-1/status")
    assert again is not None and json.loads(again.value)["first_update"] is False
    clock.now += 91  # Felix stopped reporting: the key expires, the mirror stays
    backend.expire_leases()
    assert backend.get("/calico/felix/v2/no-region/host/host-1/status") is None
    assert backend.get("/calico/felix/v2/no-region/host/host-1/last_reported_status") is not None
    assert reporter.report()  # a fresh lease after expiry
    assert backend.get("/calico/felix/v2/no-region/host/host-1/status") is not None


def test_endpoint_status_written_deduplicated_and_removed() -> None:
    backend = MemoryBackend()
    reporter = StatusReporter(backend, "h", interval=30, ttl=90)
    wep = workload_status_key("h", "openstack", "vm1", "port1")
    hep = host_endpoint_status_key("h", "eth0")
    assert wep == "/calico/felix/v2/no-region/host/h/workload/openstack/vm1/endpoint/port1"
    reporter.set_endpoint_status(wep, "up")
    reporter.set_endpoint_status(hep, "down")
    reporter.flush_endpoints()
    kv = backend.get(wep)
    assert kv is not None and json.loads(kv.value) == {"status": "up"}
    revision = kv.mod_revision
    reporter.set_endpoint_status(wep, "up")
    reporter.flush_endpoints()
    kv = backend.get(wep)
    assert kv is not None and kv.mod_revision == revision  # unchanged status is not rewritten
    reporter.set_endpoint_status(wep, None)
    reporter.flush_endpoints()
    assert backend.get(wep) is None


def test_stale_endpoint_status_is_swept_on_resync() -> None:
    backend = MemoryBackend()
    stale = workload_status_key("h", "k8s", "old-pod", "eth0")
    keep = workload_status_key("h", "k8s", "pod", "eth0")
    other_host = workload_status_key("h2", "k8s", "pod", "eth0")
    for key in (stale, keep, other_host):
        backend.put(key, b'{"status": "up"}')
    reporter = StatusReporter(backend, "h", interval=30, ttl=90)
    reporter.report()
    reporter.remove_stale_endpoint_status({keep})
    assert backend.get(stale) is None
    assert backend.get(keep) is not None and backend.get(other_host) is not None
    assert backend.get("/calico/felix/v2/no-region/host/h/status") is not None


def test_workload_ids_with_namespace_are_escaped_as_calico_does() -> None:
    key = workload_status_key("h", "k8s", "default/nginx", "eth0")
    assert key == "/calico/felix/v2/no-region/host/h/workload/k8s/default%2fnginx/endpoint/eth0"
    assert host_endpoint_status_key("h", "a/b").endswith("/endpoint/a%2fb")


def test_endpoints_resynced_sweeps_keys_of_a_previous_run_after_the_flush() -> None:
    backend = MemoryBackend()
    gone = workload_status_key("h", "k8s", "default/gone", "eth0")
    current = workload_status_key("h", "k8s", "default/pod", "eth0")
    for key in (gone, current):
        backend.put(key, b'{"status": "up"}')
    reporter = StatusReporter(backend, "h", interval=30, ttl=90)
    reporter.set_endpoint_status(current, "down")
    reporter.flush_endpoints()
    assert backend.get(gone) is not None  # no sweep before the dataplane has reported all
    reporter.endpoints_resynced()
    reporter.flush_endpoints()
    assert backend.get(gone) is None
    kv = backend.get(current)
    assert kv is not None and json.loads(kv.value) == {"status": "down"}
    backend.put(gone, b'{"status": "up"}')
    reporter.flush_endpoints()
    assert backend.get(gone) is not None  # swept once, not on every flush


@pytest.mark.parametrize("interval", [0.0, 30.0])
def test_endpoint_status_goes_out_every_delay_and_heartbeats_only_with_an_interval(
    interval: float,
) -> None:
    """reportingInterval 0 turns the heartbeat off (upstream's operator sets 0s); endpoint
    status still goes out within endpointReportingDelay, not at the next heartbeat."""
    backend = MemoryBackend()
    writes: list[str] = []
    put = backend.put

    def counting_put(key: str, value: bytes, lease: int = 0) -> int:
        writes.append(key)
        return put(key, value, lease)

    backend.put = counting_put  # type: ignore[method-assign]
    reporter = StatusReporter(backend, "h", interval=interval, ttl=90, endpoint_delay=0.05)
    reporter.start()
    try:
        key = workload_status_key("h", "openstack", "vm1", "port1")
        reporter.set_endpoint_status(key, "up")
        wait_until(lambda: backend.get(key) is not None, 3.0, "endpoint status written", 0.01)
        time.sleep(0.3)
    finally:
        reporter.stop()
    heartbeats = [k for k in writes if k.endswith("/status")]
    assert len(heartbeats) == (0 if interval == 0 else 1)
    assert writes.count(key) == 1


def test_rules_settings_written_once_under_the_hosts_region() -> None:
    backend = MemoryBackend()
    reporter = StatusReporter(backend, "h", interval=30, ttl=90, region="region-r1")
    reporter.set_rules_settings({"endpoint_to_host_action": "ACCEPT"})
    reporter.flush_endpoints()
    kv = backend.get("/calico/felix/v2/region-r1/host/h/rules_settings")
    assert kv is not None and json.loads(kv.value) == {"endpoint_to_host_action": "ACCEPT"}
    reporter.flush_endpoints()
    again = backend.get("/calico/felix/v2/region-r1/host/h/rules_settings")
    assert again is not None and again.mod_revision == kv.mod_revision  # once per start
    reporter.endpoints_resynced()
    reporter.flush_endpoints()  # the sweep of stale endpoint keys leaves it alone
    assert backend.get("/calico/felix/v2/region-r1/host/h/rules_settings") is not None


def test_host_endpoint_interfaces_rewritten_when_they_change() -> None:
    backend = MemoryBackend()
    reporter = StatusReporter(backend, "h", interval=30, ttl=90)
    key = "/calico/felix/v2/no-region/host/h/host_endpoint_interfaces"
    reporter.set_host_endpoint_interfaces({})
    reporter.flush_endpoints()
    kv = backend.get(key)
    assert kv is not None and json.loads(kv.value) == {}
    reporter.set_host_endpoint_interfaces({"uplink": "eth1"})
    reporter.flush_endpoints()
    kv = backend.get(key)
    assert kv is not None and json.loads(kv.value) == {"uplink": "eth1"}

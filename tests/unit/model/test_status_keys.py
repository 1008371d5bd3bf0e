"""Felix status keys: what Felix builds is what the OpenStack driver parses, region included."""

from __future__ import annotations

import pytest

from calico.model.status_keys import (
    HeartbeatKey,
    WorkloadStatusKey,
    host_endpoint_status_key,
    host_prefix,
    parse_status_key,
    region_string,
    status_prefix,
    workload_status_key,
)


def test_keys_have_calicos_layout() -> None:
    assert status_prefix() == "/calico/felix/v2/no-region/host/"
    assert host_prefix("h1", "region-r1") == "/calico/felix/v2/region-r1/host/h1/"
    assert (
        workload_status_key("h1", "k8s", "default/nginx", "eth0")
        == "/calico/felix/v2/no-region/host/h1/workload/k8s/default%2fnginx/endpoint/eth0"
    )
    assert (
        host_endpoint_status_key("h1", "a/b") == "/calico/felix/v2/no-region/host/h1/endpoint/a%2fb"
    )


@pytest.mark.parametrize("region", ["no-region", "region-r1"])
def test_built_keys_parse_back(region: str) -> None:
    key = workload_status_key("h1", "openstack", "openstack/vm-1", "port/1", region)
    assert parse_status_key(region, key) == WorkloadStatusKey(
        "h1", "openstack", "openstack/vm-1", "port/1"
    )
    assert parse_status_key(region, host_prefix("h1", region) + "status") == HeartbeatKey("h1")


def test_other_keys_are_not_parsed() -> None:
    assert parse_status_key("no-region", host_prefix("h1", "region-r1") + "status") is None
    assert parse_status_key("no-region", host_prefix("h1") + "last_reported_status") is None
    assert parse_status_key("no-region", host_endpoint_status_key("h1", "eth0")) is None
    assert parse_status_key("no-region", status_prefix() + "/status") is None  # no host
    assert parse_status_key("no-region", host_prefix("h1") + "workload/o/w/endpoint/") is None
    upper = host_prefix("h1") + "workload/o/w/endpoint/a%2Fb"
    assert parse_status_key("no-region", upper) == WorkloadStatusKey("h1", "o", "w", "a/b")


@pytest.mark.parametrize(
    ("region", "expected"), [(None, "no-region"), ("", "no-region"), ("east", "region-east")]
)
def test_region_string(region: str | None, expected: str) -> None:
    assert region_string(region) == expected


@pytest.mark.parametrize("region", ["East", "-east", "a_b", "x" * 47])
def test_bad_regions_are_refused_naming_the_option(region: str) -> None:
    with pytest.raises(ValueError, match="openstack_region"):
        region_string(region)

"""Felix's OpenstackRegion: config layering, validation, and the status keys it selects."""

from __future__ import annotations

from pathlib import Path

import pytest

from calico.calc.messages import (
    HostEndpointID,
    WorkloadEndpoint,
    WorkloadEndpointID,
)
from calico.datastore.memory import MemoryBackend
from calico.felix import daemon
from calico.felix.config import ConfigError, build_config, file_layer, parse_region
from calico.felix.status import StatusReporter


def test_default_is_no_region() -> None:
    cfg = build_config({"NODENAME": "h"})
    assert cfg.openstack_region == ""
    assert cfg.region_string == "no-region"


@pytest.mark.parametrize(
    ("environ", "file_text", "global_spec", "node_spec", "expected"),
    [
        ({"FELIX_OPENSTACKREGION": "east"}, None, None, None, "region-east"),
        ({"felix_openstackregion": " west-2 "}, None, None, None, "region-west-2"),
        ({}, "[global]\nOpenstackRegion = file-region\n", None, None, "region-file-region"),
        ({}, None, {"openstackRegion": "ds"}, None, "region-ds"),
        ({}, None, {"openstackRegion": "ds"}, {"openstackRegion": "node"}, "region-node"),
        ({"FELIX_OPENSTACKREGION": "env"}, None, {"openstackRegion": "ds"}, None, "region-env"),
        ({"FELIX_OPENSTACKREGION": ""}, None, None, None, "no-region"),
    ],
)
def test_region_layers(
    tmp_path: Path,
    environ: dict[str, str],
    file_text: str | None,
    global_spec: dict[str, str] | None,
    node_spec: dict[str, str] | None,
    expected: str,
) -> None:
    file_values = {}
    if file_text is not None:
        ini = tmp_path / "felix.cfg"
        ini.write_text(file_text)
        file_values = file_layer(str(ini))
    cfg = build_config({"NODENAME": "h", **environ}, file_values, global_spec, node_spec)
    assert cfg.region_string == expected


@pytest.mark.parametrize("bad", ["East", "re gion", "-east", "east-", "r_1", "x" * 47])
def test_invalid_region_from_env_or_file_stops_felix(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match=r"environment: OpenstackRegion: .*not a valid region"):
        build_config({"FELIX_OPENSTACKREGION": bad})
    ini = tmp_path / "felix.cfg"
    ini.write_text(f"[global]\nOpenstackRegion = {bad}\n")
    with pytest.raises(ConfigError, match="config file: OpenstackRegion"):
        build_config({}, file_layer(str(ini)))


def test_region_length_limit_matches_namespace_limit() -> None:
    longest = "x" * 46  # "openstack-region-" + 46 = 63, a DNS label's maximum
    assert parse_region(longest) == longest
    with pytest.raises(ValueError, match="at most 46"):
        parse_region(longest + "x")


def test_invalid_datastore_region_is_ignored() -> None:
    cfg = build_config({}, None, {"openstackRegion": "east"}, {"openstackRegion": "Bad!"})
    assert cfg.region_string == "region-east"  # the bad node value falls back to global


def test_main_exits_with_config_error(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        daemon.main({"NODENAME": "h", "FELIX_OPENSTACKREGION": "Not Valid"})
    assert exc.value.code == 2
    assert "OpenstackRegion" in caplog.text


def test_status_reporter_uses_region() -> None:
    backend = MemoryBackend()
    cfg = build_config({"NODENAME": "h", "FELIX_OPENSTACKREGION": "east"})
    reporter = StatusReporter(backend, "h", 30, 90, region=cfg.region_string)
    assert reporter.report()
    assert backend.get("/calico/felix/v2/region-east/host/h/status") is not None
    assert backend.get("/calico/felix/v2/no-region/host/h/status") is None


def _felix_without_io(environ: dict[str, str]) -> tuple[daemon.Felix, MemoryBackend]:
    """A Felix object whose status path can be driven without etcd or a dataplane."""
    felix = daemon.Felix.__new__(daemon.Felix)
    felix.config = build_config(environ)
    backend = MemoryBackend()
    felix.reporter = StatusReporter(backend, "h", 30, 90, region=felix.config.region_string)
    return felix, backend


@pytest.mark.parametrize(("region", "segment"), [("", "no-region"), ("east", "region-east")])
def test_endpoint_status_keys_carry_region(region: str, segment: str) -> None:
    felix, backend = _felix_without_io({"NODENAME": "h", "FELIX_OPENSTACKREGION": region})
    wep_id = WorkloadEndpointID("openstack", "h-openstack-vm1-port1")
    endpoint = WorkloadEndpoint(
        "tapport1", None, ("198.18.0.2/32",), (), (), (), orchestrator="openstack",
        workload="vm1", endpoint="port1",
    )  # fmt: skip
    felix._endpoint_status(wep_id, endpoint, "up")
    felix._endpoint_status(HostEndpointID("eth0"), None, "down")
    felix.reporter.flush_endpoints()
    base = f"/calico/felix/v2/{segment}/host/h/"
    assert backend.get(base + "workload/openstack/openstack%2fvm1/endpoint/port1") is not None
    assert backend.get(base + "endpoint/eth0") is not None

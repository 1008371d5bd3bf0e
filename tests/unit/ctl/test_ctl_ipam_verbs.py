"""calicoctl ipam configure and ipam release --from-report, on the in-memory datastore."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from calico.ctl.commands.ipam import check, configure, release
from calico.datastore.client import ResourceClient
from calico.datastore.memory import MemoryBackend
from calico.ipam.allocator import IPAMClient
from calico.ipam.api import AutoAssignRequest
from calico.ipam.blocks import ReleaseSpec
from calico.model.endpoints import WorkloadEndpoint
from calico.model.network import ClusterInformation, IPAMConfiguration, IPPool

Run = Callable[..., Result]


@pytest.mark.parametrize(
    ("args", "strict", "max_blocks", "printed"),
    [
        (["--strictaffinity=true"], True, None, "Successfully set StrictAffinity to: true\n"),
        (["--strictaffinity", "F"], False, None, "Successfully set StrictAffinity to: false\n"),
        (
            ["--strictaffinity=1", "--max-blocks-per-host=4"],
            True,
            4,
            "Successfully set StrictAffinity to: true\nSuccessfully set MaxBlocksPerHost to: 4\n",
        ),
    ],
)
def test_configure_stores_ipam_configuration_default(
    run: Run,
    resources: ResourceClient,
    args: list[str],
    strict: bool,
    max_blocks: int | None,
    printed: str,
) -> None:
    assert run(configure, *args).output == printed
    spec = resources.get(IPAMConfiguration, "default").spec
    assert (spec.strictAffinity, spec.maxBlocksPerHost) == (strict, max_blocks)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "at least one configuration option must be specified"),
        (["--strictaffinity=yes"], "invalid value. Use true or false to set strictaffinity"),
        (["--max-blocks-per-host=2"], "MaxBlocksPerHost requires StrictAffinity to be enabled"),
        (["--strictaffinity=true", "--max-blocks-per-host=-1"], "--max-blocks-per-host"),
    ],
)
def test_configure_refuses_what_calico_refuses(
    run: Run, resources: ResourceClient, args: list[str], message: str
) -> None:
    assert message in run(configure, *args, ok=False).output
    assert not resources.list(IPAMConfiguration).items


def test_configure_keeps_the_other_settings(run: Run, resources: ResourceClient) -> None:
    run(configure, "--strictaffinity=true", "--max-blocks-per-host=3")
    run(configure, "--strictaffinity=true")
    assert resources.get(IPAMConfiguration, "default").spec.maxBlocksPerHost == 3
    assert "requires StrictAffinity" in run(configure, "--strictaffinity=false", ok=False).output


# -- release --from-report ----------------------------------------------------------------------


@pytest.fixture
def ipam(backend: MemoryBackend, resources: ResourceClient) -> IPAMClient:
    resources.create(
        IPPool.model_validate(
            {"metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/24", "blockSize": 29}}
        )
    )
    return IPAMClient(backend, sleep=lambda _: None, cleanup_timeout=1.0)


def assign(ipam: IPAMClient, container: str) -> str:
    request = AutoAssignRequest(f"net.{container}", "host-a", attrs={"pod": container})
    return ipam.auto_assign(request).ipv4[0].split("/")[0]


def add_wep(resources: ResourceClient, container: str, ip: str) -> None:
    resources.create(
        WorkloadEndpoint.model_validate(
            {
                "metadata": {"namespace": "ns"},
                "spec": {
                    "orchestrator": "k8s",
                    "node": "host-a",
                    "pod": container,
                    "endpoint": "eth0",
                    "containerID": container,
                    "ipNetworks": [f"{ip}/32"],
                },
            }
        )
    )


def lock(resources: ResourceClient, locked: bool = True) -> None:
    def edit(info: ClusterInformation) -> ClusterInformation:
        info.spec.datastoreReady = not locked
        return info

    resources.update(ClusterInformation, "default", None, edit)


@pytest.fixture
def leaks(ipam: IPAMClient, resources: ResourceClient) -> dict[str, str]:
    """Three allocations: `kept` in use by a workload, `gone` and `late` leaked."""
    ips = {name: assign(ipam, name) for name in ("kept", "gone", "late")}
    add_wep(resources, "kept", ips["kept"])
    ipam.store.adjust_handle("orphan", "10.0.0.0/29", 1)  # a handle with no addresses
    return ips


def make_report(run: Run, path: Path) -> dict[str, Any]:
    run(check, "-o", str(path))
    report: dict[str, Any] = json.loads(path.read_text())
    return report


def test_release_from_report_frees_only_what_is_still_leaked(
    run: Run, ipam: IPAMClient, resources: ResourceClient, leaks: dict[str, str], tmp_path: Path
) -> None:
    lock(resources)
    report = tmp_path / "report.json"
    make_report(run, report)
    add_wep(resources, "late", leaks["late"])  # its CNI ADD finished after the check
    out = run(release, "--from-report", str(report)).output
    assert out.splitlines() == [
        "1 addresses marked as leaked in the report are no longer leaked; not released.",
        "Releasing 1 old IPs...",
        "Released 1 IPs successfully",
        "Released 1 handles; 0 skipped (missing, changed or in use again).",
        "You may now unlock the data store.",
    ]
    assert ipam.allocation_of(leaks["gone"]) is None
    assert ipam.allocation_of(leaks["kept"]) is not None
    assert ipam.allocation_of(leaks["late"]) is not None
    assert ipam.store.get_handle("orphan") is None
    assert ipam.store.get_handle("net.gone") is None  # its count fell to zero


def test_an_address_reassigned_since_the_report_is_not_released(
    run: Run, ipam: IPAMClient, resources: ResourceClient, leaks: dict[str, str], tmp_path: Path
) -> None:
    lock(resources)
    path = tmp_path / "report.json"
    report = make_report(run, path)
    gone = leaks["gone"]
    seen = report["allocations"][gone][0]
    # Released and handed out again, to a workload that is gone too: leaked anew, but it is
    # not the allocation the report saw (new handle, new sequence number).
    ipam.release_ips([gone])
    ipam.assign_ip(gone, "net.again", "host-a")
    out = run(release, "--from-report", str(path)).output
    assert "1 addresses marked as leaked in the report are no longer leaked" in out
    attribute = ipam.allocation_of(gone)
    assert attribute is not None and attribute.handle_id == "net.again"
    # The same guard at the moment of release: the block write is conditional on the
    # handle and sequence number the report recorded.
    spec = ReleaseSpec(gone, seen["handle"], seen["sequenceNumber"])
    assert ipam.release_matching([spec]).mismatched == [gone]
    assert ipam.allocation_of(gone) is not None


@pytest.mark.parametrize(
    ("edit", "locked", "flags", "message"),
    [
        ({"clusterGUID": "other"}, True, ["--force"], "mismatched cluster GUID. Refusing"),
        ({"version": "v3.29.0"}, True, [], "different version (v3.29.0) of calicoctl"),
        ({"clusterInformationRevision": "1"}, True, ["--force"], "reports are all stale"),
        ({}, False, [], "data store is not locked. Either lock the data store, or re-run"),
    ],
)
def test_release_from_report_refusals_release_nothing(
    run: Run,
    ipam: IPAMClient,
    resources: ResourceClient,
    leaks: dict[str, str],
    tmp_path: Path,
    edit: dict[str, str],
    locked: bool,
    flags: list[str],
    message: str,
) -> None:
    lock(resources, locked)
    path = tmp_path / "report.json"
    report = make_report(run, path)
    path.write_text(json.dumps({**report, **edit}))
    assert message in run(release, "--from-report", str(path), *flags, ok=False).output
    assert ipam.allocation_of(leaks["gone"]) is not None
    assert ipam.store.get_handle("orphan") is not None


@pytest.mark.parametrize(
    ("edit", "locked", "warning"),
    [
        ({"version": "v3.29.0"}, True, "WARNING: Report was produced using a different version"),
        ({}, False, "WARNING: Data store is not locked. Ignoring due to --force option"),
    ],
)
def test_force_overrides_version_and_lock_with_a_warning(
    run: Run,
    ipam: IPAMClient,
    resources: ResourceClient,
    leaks: dict[str, str],
    tmp_path: Path,
    edit: dict[str, str],
    locked: bool,
    warning: str,
) -> None:
    lock(resources, locked)
    path = tmp_path / "report.json"
    path.write_text(json.dumps({**make_report(run, path), **edit}))
    assert warning in run(release, "--from-report", str(path), "--force").output
    assert ipam.allocation_of(leaks["gone"]) is None


def test_several_reports_release_only_what_all_call_leaked(
    run: Run, ipam: IPAMClient, resources: ResourceClient, leaks: dict[str, str], tmp_path: Path
) -> None:
    lock(resources)
    first = make_report(run, tmp_path / "first.json")
    for alloc in first["allocations"][leaks["late"]]:
        alloc["inUse"] = True  # the earlier check saw it in use
    (tmp_path / "first.json").write_text(json.dumps(first))
    make_report(run, tmp_path / "second.json")
    run(release, "--from-report", str(tmp_path / "first.json"),
        "--from-report", str(tmp_path / "second.json"))  # fmt: skip
    assert ipam.allocation_of(leaks["gone"]) is None
    assert ipam.allocation_of(leaks["late"]) is not None


def test_unreadable_reports_and_missing_arguments(run: Run, tmp_path: Path) -> None:
    assert "cannot read report" in run(release, "--from-report", "/nonexistent", ok=False).output
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert "is not valid JSON" in run(release, "--from-report", str(bad), ok=False).output
    assert "give --ip=IP or --from-report=FILE" in run(release, ok=False).output

"""`calicoctl ipam release --from-report=FILE...`: free what `ipam check -o FILE` found leaked.

As calicoctl (release.go) does, the reports must come from this cluster (clusterGUID; never
overridable) and this calicoctl version (else --force), at least one must carry the current
ClusterInformation revision (a lock or unlock since makes a report stale), and the datastore
must be locked -- ClusterInformation `datastoreReady: false`, which stops CNI ADDs -- unless
--force. With several reports only what all of them call leaked is released.

Before releasing, the check runs again and only what it still finds leaked counts, as if a
fresh report were one more of those given. Each address is then released only if its
allocation still has the report's handle and sequence number (a reassigned address has a new
one), and each leaked handle is deleted only at the revision the report saw (compare-and-swap),
so whatever changed since the check is left alone and counted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calico.ctl.context import CtlError
from calico.datastore.api import KeyNotFound, RevisionConflict
from calico.datastore.client import ResourceNotFound
from calico.ipam.allocator import IPAMClient
from calico.ipam.blocks import ReleaseSpec
from calico.ipam.check import IPAMChecker
from calico.model.network import ClusterInformation


@dataclass(frozen=True, slots=True)
class Leaks:
    """What a report (or the intersection of several) calls leaked."""

    ips: dict[str, ReleaseSpec]
    handles: dict[str, int]  # handle ID -> revision the report saw

    @staticmethod
    def of(report: dict[str, Any], source: str) -> Leaks:
        try:
            ips = {
                a["ip"]: ReleaseSpec(a["ip"], a.get("handle"), a.get("sequenceNumber"))
                for allocations in (report.get("allocations") or {}).values()
                for a in allocations
                if not a["inUse"]
            }
            handles = {h["ID"]: int(h["Revision"]) for h in report.get("leakedHandles") or []}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CtlError(f"{source} is not an ipam check report: {exc!r}") from None
        return Leaks(ips, handles)

    def __and__(self, other: Leaks) -> Leaks:
        return Leaks(
            {ip: spec for ip, spec in self.ips.items() if other.ips.get(ip) == spec},
            {h: rev for h, rev in self.handles.items() if other.handles.get(h) == rev},
        )


def load_report(path: str) -> dict[str, Any]:
    try:
        report = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CtlError(f"cannot read report {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise CtlError(f"report {path} is not valid JSON: {exc}") from None
    if not isinstance(report, dict):
        raise CtlError(f"{path} is not an ipam check report")
    return report


def vet_reports(
    info: ClusterInformation,
    reports: Sequence[tuple[str, dict[str, Any]]],
    version: str,
    force: bool,
    out: Callable[[str], None],
) -> None:
    """Refuse reports from another cluster or version, stale ones, or an unlocked datastore."""
    current = False
    for path, report in reports:
        if report.get("clusterGUID") != info.spec.clusterGUID:
            raise CtlError(
                f"cluster does not match the provided report ({path}): mismatched cluster GUID."
                " Refusing to release"
            )
        if report.get("version") != version:
            if not force:
                raise CtlError(
                    f"the provided report ({path}) was produced using a different version"
                    f" ({report.get('version')}) of calicoctl. Refusing to release"
                )
            out("WARNING: Report was produced using a different version of calicoctl."
                " Ignoring due to --force option")  # fmt: skip
        current |= report.get("clusterInformationRevision") == info.metadata.resourceVersion
    if not current:
        raise CtlError(
            "the provided reports are all stale - at least one should be up-to-date. Please"
            " generate a new report while the data store is locked and try again"
        )
    if info.spec.datastoreReady is not False:
        if not force:
            raise CtlError(
                "data store is not locked. Either lock the data store, or re-run with --force"
            )
        out("WARNING: Data store is not locked. Ignoring due to --force option")


def release_from_reports(
    client: IPAMClient, paths: Sequence[str], version: str, force: bool, out: Callable[[str], None]
) -> None:
    try:
        info = client.resources.get(ClusterInformation, "default")
    except ResourceNotFound:
        raise CtlError(
            "the datastore has no ClusterInformation: nothing can match a report"
        ) from None
    reports = [(path, load_report(path)) for path in paths]
    vet_reports(info, reports, version, force, out)
    reported = Leaks.of(reports[0][1], paths[0])
    for path, report in reports[1:]:
        reported &= Leaks.of(report, path)
    fresh = IPAMChecker(client.store, client.resources, lambda _: None).run(version)
    leaks = reported & Leaks.of(fresh, "the re-check")
    _release_ips(client, reported, leaks, out)
    _release_handles(client, reported, leaks, out)


def _release_ips(
    client: IPAMClient, reported: Leaks, leaks: Leaks, out: Callable[[str], None]
) -> None:
    if not reported.ips:
        out("Report didn't contain any leaked IPs to clean up.")
        return
    if gone := len(reported.ips) - len(leaks.ips):
        out(f"{gone} addresses marked as leaked in the report are no longer leaked; not released.")
    out(f"Releasing {len(leaks.ips)} old IPs...")
    result = client.release_matching(list(leaks.ips.values()))
    out(f"Released {len(result.released)} IPs successfully")
    if result.unallocated:
        out(f"{len(result.unallocated)} addresses marked as leaked in the report had already"
            " been cleaned up.")  # fmt: skip
    if result.mismatched:
        out(f"{len(result.mismatched)} addresses were reassigned since the report; not released.")


def _release_handles(
    client: IPAMClient, reported: Leaks, leaks: Leaks, out: Callable[[str], None]
) -> None:
    if not reported.handles:
        out("Report didn't contain any handles to clean up.")
        return
    released = 0
    for handle_id, revision in sorted(leaks.handles.items()):
        try:
            client.store.delete_handle(handle_id, revision)
            released += 1
        except (KeyNotFound, RevisionConflict):
            pass
    skipped = len(reported.handles) - released
    out(f"Released {released} handles; {skipped} skipped (missing, changed or in use again).")

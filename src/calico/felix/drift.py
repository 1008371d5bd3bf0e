"""The drift check: what this host's kernel holds versus what Felix would program from the
datastore, computed by Felix itself.

A `Felix` is built from the running Felix's own environment (read from /proc through the
felix.pid `calico node` keeps in its run dir), so its configuration layers are the running
one's; its syncers and calculation graph run as usual and its dataplane applies once in dry
run (dataplane.dry_run): every kernel read is real, every write is recorded. The recorded
writes are the drift. Nothing is written to the kernel or the datastore: no status
reporter, no health or metrics server, no MTU file.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Mapping
from pathlib import Path

from calico import programs
from calico.dataplane.dry_run import DryRunRunner, dry_run_netlink
from calico.dataplane.kernel import open_netlink
from calico.dataplane.loop import ApplyStats, InternalDataplane
from calico.datastore.api import DatastoreError
from calico.datastore.client import ResourceNotFound
from calico.felix.daemon import Felix, dataplane_settings
from calico.model.network import ClusterInformation

FELIX_PID_FILE = "felix.pid"


class DriftError(RuntimeError):
    """The check could not run (message says why)."""


def felix_environment(run_dir: Path) -> dict[str, str]:
    """The environment of the Felix `calico node` runs with this run dir."""
    pid_file = run_dir / FELIX_PID_FILE
    try:
        pid = int(pid_file.read_text().strip())
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except (OSError, ValueError) as exc:
        raise DriftError(
            f"{pid_file}: no running Felix to take the configuration from ({exc}); "
            "give --nodename to check against the current environment instead"
        ) from None
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def dry_apply(environ: Mapping[str, str], timeout: float = 30.0) -> DryRunRunner:
    """One Felix apply from the datastore, recorded instead of made."""
    felix = Felix(environ)
    try:
        try:
            ready = felix.client.get(ClusterInformation, "default").spec.datastoreReady
        except ResourceNotFound:
            ready = False
        if not ready:
            raise DriftError("the datastore is not ready (ClusterInformation datastoreReady)")
        felix.load_datastore_config()
        felix.register_health()  # reported to, never served
        return _apply_once(felix, timeout)
    except DatastoreError as exc:
        raise DriftError(f"datastore: {exc}") from None
    finally:
        felix.backend.close()


def _apply_once(felix: Felix, timeout: float) -> DryRunRunner:
    runner = DryRunRunner(programs.Runner())
    settings = dataplane_settings(felix.config)
    settings = dataclasses.replace(
        settings,
        route_grace_period=0.0,  # external routes Felix would remove later count now
        vxlan=dataclasses.replace(settings.vxlan, mtu_file=""),
    )
    applied = threading.Event()

    def on_applied(stats: ApplyStats) -> None:
        if stats.ok:
            applied.set()

    dataplane = InternalDataplane(
        settings,
        runner,
        dry_run_netlink(functools.partial(open_netlink, None), runner),
        on_applied=on_applied,
    )
    feed, syncers = felix.calc_pipeline(dataplane)
    dataplane.start()
    feed.start()
    for syncer in syncers:
        syncer.start()
    try:
        if not applied.wait(timeout):
            raise DriftError(f"no complete dry-run apply within {timeout:g}s")
    finally:
        feed.stop()
        for syncer in syncers:
            syncer.stop()
        dataplane.stop()
    return runner

"""The `calico` CNI plugin: ADD, DEL, CHECK (VERSION is the runner's).

ADD: addresses from Calico IPAM -> veth wired by `netsetup` -> profile created if absent ->
WorkloadEndpoint written, which Felix then picks up. Each step that succeeded is undone when a
later one fails, so a failed ADD leaves no address, veth or endpoint behind. An ADD for a
container whose endpoint already exists returns what is there (as Calico does for plain CNI).
DEL releases the addresses (by handle, then by the legacy workload handle), deletes the
endpoint (a k8s-style endpoint only if it still belongs to this container) and the container
interface; each step runs even if another failed, and things already gone are success.
CHECK compares the kernel with the endpoint. See `runner` for exit codes and output.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from calico.cni.addresses import allocate, release
from calico.cni.config import workload_mtu
from calico.cni.endpoint import build_endpoint, build_result, profile_for, result_from_endpoint
from calico.cni.netsetup import NetnsNotFound, NetSetupError, VethInfo, VethSpec, addresses_of
from calico.cni.runner import Call
from calico.cni.runner import main as run_main
from calico.cni.services import datastore_errors
from calico.cni.spec import CniError, Code, encode_result, version_tuple
from calico.datastore.client import ResourceClient, ResourceExists, ResourceNotFound
from calico.model.base import Resource
from calico.model.endpoints import WorkloadEndpoint
from calico.model.network import ClusterInformation

log = logging.getLogger(__name__)
R = TypeVar("R", bound=Resource)


def cmd_add(call: Call) -> dict[str, Any]:
    ident, conf, inv = call.ident, call.conf, call.inv
    profile = profile_for(conf, ident)
    build_endpoint(conf, ident, profile.name)  # reject bad identifiers before any change
    mtu = workload_mtu(conf)
    client = call.services.client
    with datastore_errors("reading the datastore"):
        _check_ready(client)
        existing = _find_endpoint(client, ident.wep_name, ident.namespace)
    if existing is not None and existing.spec.containerID == ident.container_id:
        log.info("endpoint %s already exists: returning it", ident.wep_name)
        return encode_result(result_from_endpoint(inv, existing), conf.cni_version)
    with contextlib.ExitStack() as undo:
        cidrs = allocate(call.services.ipam, conf, ident, inv)
        undo.callback(_quietly, "release addresses", release, call.services.ipam, conf, ident)
        spec = VethSpec(
            inv.netns, inv.ifname, ident.host_veth, addresses_of(cidrs), mtu,
            conf.allow_ip_forwarding,
        )  # fmt: skip
        info = _wire(call, spec)
        undo.callback(_quietly, "remove veth", call.services.net.remove, inv.netns, inv.ifname)
        wep = build_endpoint(conf, ident, profile.name, cidrs, info.container_mac)
        with datastore_errors(f"writing endpoint {ident.wep_name}"):
            with contextlib.suppress(ResourceExists):
                client.create(profile)
            _write_endpoint(client, wep, existing)
        undo.pop_all()
    log.info("ADD %s: %s on %s", ident.wep_name, ", ".join(cidrs), ident.host_veth)
    return encode_result(build_result(inv, info, cidrs), conf.cni_version)


def cmd_del(call: Call) -> None:
    ident, inv = call.ident, call.inv
    failures: list[CniError] = []
    steps: list[tuple[Callable[[], object], str]] = [
        (lambda: release(call.services.ipam, call.conf, ident), "release"),
        (lambda: _delete_endpoint(call.services.client, ident.wep_name, call), "endpoint"),
    ]
    if inv.netns:
        steps.append((lambda: _unwire(call), "veth"))
    for step, what in steps:
        try:
            step()
        except CniError as exc:
            log.warning("DEL %s: %s step failed: %s", ident.wep_name, what, exc)
            failures.append(exc)
    if failures:
        raise failures[0]
    log.info("DEL %s: done", ident.wep_name)


def cmd_check(call: Call) -> None:
    if version_tuple(call.conf.cni_version) < (0, 4, 0):
        raise CniError(Code.INCOMPATIBLE_VERSION, "config version does not allow CHECK")
    ident = call.ident
    with datastore_errors("reading the datastore"):
        wep = _find_endpoint(call.services.client, ident.wep_name, ident.namespace)
    if wep is None or wep.spec.containerID != ident.container_id:
        raise CniError(
            Code.CHECK_FAILED, f"no WorkloadEndpoint {ident.wep_name} for this container"
        )
    spec = VethSpec(
        call.inv.netns, call.inv.ifname, wep.spec.interfaceName or ident.host_veth,
        addresses_of(wep.spec.ipNetworks or []),
    )  # fmt: skip
    problems = call.services.net.check(spec)
    if problems:
        raise CniError(Code.CHECK_FAILED, "; ".join(problems))


def _check_ready(client: ResourceClient) -> None:
    """Calico refuses to work while ClusterInformation says the datastore is not ready."""
    info = _find(client, ClusterInformation, "default")
    if info is not None and info.spec.datastoreReady is False:
        raise CniError(Code.TRY_AGAIN_LATER, "Calico is currently not ready to process requests")


def _find_endpoint(client: ResourceClient, name: str, namespace: str) -> WorkloadEndpoint | None:
    return _find(client, WorkloadEndpoint, name, namespace)


def _find(
    client: ResourceClient, kind: type[R], name: str, namespace: str | None = None
) -> R | None:
    try:
        return client.get(kind, name, namespace)
    except ResourceNotFound:
        return None


def _wire(call: Call, spec: VethSpec) -> VethInfo:
    try:
        return call.services.net.add(spec)
    except NetnsNotFound as exc:
        raise CniError(Code.UNKNOWN_CONTAINER, str(exc)) from None
    except NetSetupError as exc:
        raise CniError(Code.NETWORKING_FAILURE, str(exc)) from None


def _unwire(call: Call) -> None:
    try:
        call.services.net.remove(call.inv.netns, call.inv.ifname)
    except NetSetupError as exc:
        raise CniError(Code.NETWORKING_FAILURE, str(exc)) from None


def _write_endpoint(
    client: ResourceClient, wep: WorkloadEndpoint, existing: WorkloadEndpoint | None
) -> None:
    """Create; or replace the endpoint of an earlier sandbox of the same k8s pod (CAS)."""
    if existing is None:
        client.create(wep)
        return
    wep.metadata.resourceVersion = existing.metadata.resourceVersion
    client.replace(wep)


def _delete_endpoint(client: ResourceClient, name: str, call: Call) -> None:
    with datastore_errors(f"deleting endpoint {name}"):
        wep = _find_endpoint(client, name, call.ident.namespace)
        if wep is None:
            return
        owner = wep.spec.containerID
        if owner and owner != call.ident.container_id:
            log.info("endpoint %s belongs to container %s now: kept", name, owner)
            return
        with contextlib.suppress(ResourceNotFound):
            client.delete(
                WorkloadEndpoint, name, call.ident.namespace, wep.metadata.resourceVersion
            )


def _quietly(what: str, fn: Callable[..., object], *args: Any) -> None:
    """Undo step of a failed ADD: log and carry on, the original error is what counts."""
    try:
        fn(*args)
    except Exception as exc:
        log.warning("cleanup after failed ADD: could not %s: %s", what, exc)


HANDLERS = {"ADD": cmd_add, "DEL": cmd_del, "CHECK": cmd_check}


def main() -> None:
    run_main(__name__)


if __name__ == "__main__":
    main()

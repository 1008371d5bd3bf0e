"""The CNI protocol, spec 0.1.0-1.0.0: environment, errors, versions and result encoding.

Inputs: the `CNI_*` environment and the requested cniVersion. Outputs: the JSON documents a
runtime parses (results, errors, version info). Pure: reading stdin/env and printing happen in
`calico.cni.runner`. Error codes are the spec's (1-11); 100+ are this plugin's own, so a
runtime or operator can tell "pool exhausted" from "veth failed" without parsing text.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0")
CURRENT_VERSION = "1.0.0"
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_CONTAINER_ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_BAD_IFNAME_CHARS = re.compile(r"[/:\s]")


class Code(enum.IntEnum):
    """CNI error codes: 1-11 from the spec, 100+ ours."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENVIRONMENT = 4
    IO_FAILURE = 5
    DECODING_FAILURE = 6
    INVALID_CONFIG = 7
    TRY_AGAIN_LATER = 11
    INTERNAL = 100
    IPAM_FAILURE = 101
    NETWORKING_FAILURE = 102
    DATASTORE_FAILURE = 103
    CHECK_FAILED = 104


class CniError(Exception):
    """A failure reported to the runtime as CNI error JSON (and a non-zero exit)."""

    def __init__(self, code: Code, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str = CURRENT_VERSION) -> dict[str, Any]:
        doc: dict[str, Any] = {"cniVersion": cni_version, "code": int(self.code), "msg": self.msg}
        if self.details:
            doc["details"] = self.details
        return doc


def document(doc: Mapping[str, Any]) -> str:
    """A result or error as a plugin's stdout: one JSON document (runtimes parse all of it)."""
    return json.dumps(doc, indent=2) + "\n"


def version_tuple(version: str) -> tuple[int, int, int]:
    match = _VERSION_RE.match(version)
    if not match:
        raise CniError(Code.INCOMPATIBLE_VERSION, f"malformed cniVersion {version!r}")
    return int(match[1]), int(match[2]), int(match[3])


def check_version(version: str) -> None:
    if version not in SUPPORTED_VERSIONS:
        version_tuple(version)  # malformed versions get their own message
        raise CniError(
            Code.INCOMPATIBLE_VERSION,
            f"unsupported cniVersion {version!r}",
            f"supported: {', '.join(SUPPORTED_VERSIONS)}",
        )


def version_info() -> dict[str, Any]:
    """The VERSION command's answer (like libcni's skel: the latest version we speak)."""
    return {"cniVersion": CURRENT_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)}


@dataclass(frozen=True, slots=True)
class Invocation:
    """One plugin call, from the CNI_* environment."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: Mapping[str, str] = field(default_factory=dict)
    path: str = ""


_REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "VERSION": (),
}


def parse_environment(environ: Mapping[str, str]) -> Invocation:
    """Validate the CNI_* variables as libcni's skel does (code 4 for anything wrong)."""
    command = environ.get("CNI_COMMAND", "")
    if command not in _REQUIRED:
        raise CniError(Code.INVALID_ENVIRONMENT, f"unknown CNI_COMMAND {command!r}")
    missing = [name for name in _REQUIRED[command] if not environ.get(name)]
    if missing:
        raise CniError(Code.INVALID_ENVIRONMENT, f"required env variables {missing} missing")
    inv = Invocation(
        command=command,
        container_id=environ.get("CNI_CONTAINERID", ""),
        netns=environ.get("CNI_NETNS", ""),
        ifname=environ.get("CNI_IFNAME", ""),
        args=parse_cni_args(environ.get("CNI_ARGS", "")),
        path=environ.get("CNI_PATH", ""),
    )
    if command != "VERSION":
        _check_identifiers(inv)
    return inv


def _check_identifiers(inv: Invocation) -> None:
    if not _CONTAINER_ID_RE.match(inv.container_id):
        raise CniError(Code.INVALID_ENVIRONMENT, f"invalid CNI_CONTAINERID {inv.container_id!r}")
    name = inv.ifname
    if len(name) > 15 or name in (".", "..") or _BAD_IFNAME_CHARS.search(name):
        raise CniError(Code.INVALID_ENVIRONMENT, f"invalid CNI_IFNAME {name!r}")


# The CNI_ARGS keys Calico's plugin reads (its K8sArgs): IP asks for that address,
# K8S_POD_NAMESPACE/K8S_POD_NAME name the pod; K8S_POD_INFRA_CONTAINER_ID is the container.
CNI_ARGS_KEYS = frozenset(
    {"IgnoreUnknown", "IP", "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID"}
)
_ARG_BOOLS = {"1": True, "true": True, "0": False, "false": False}


def parse_cni_args(text: str) -> dict[str, str]:
    """`K=V;K2=V2` (empty pairs ignored); a pair without '=' is an error (code 4). As libcni's
    LoadArgs (which Calico uses): a key outside `CNI_ARGS_KEYS` is refused (code 4) unless
    the runtime set IgnoreUnknown=1 (or true)."""
    args: dict[str, str] = {}
    for pair in text.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(Code.INVALID_ENVIRONMENT, f"invalid CNI_ARGS pair {pair!r}")
        args[key] = value
    ignore = args.get("IgnoreUnknown", "0")
    if ignore.lower() not in _ARG_BOOLS:
        raise CniError(Code.INVALID_ENVIRONMENT, f"CNI_ARGS IgnoreUnknown={ignore!r} is not 1/0")
    unknown = sorted(set(args) - CNI_ARGS_KEYS)
    if unknown and not _ARG_BOOLS[ignore.lower()]:
        raise CniError(
            Code.INVALID_ENVIRONMENT,
            f"CNI_ARGS: {', '.join(unknown)} not supported (known: "
            f"{', '.join(sorted(CNI_ARGS_KEYS))}; IgnoreUnknown=1 ignores others)",
        )
    return args


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    mac: str
    sandbox: str | None = None


@dataclass(frozen=True, slots=True)
class IPConfig:
    address: str  # with prefix length, e.g. "198.19.0.1/32"
    interface: int | None = None
    gateway: str | None = None

    @property
    def version(self) -> int:
        return 6 if ":" in self.address else 4


@dataclass(frozen=True, slots=True)
class Route:
    dst: str
    gw: str | None = None


@dataclass(frozen=True, slots=True)
class Result:
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: Mapping[str, Any] = field(default_factory=dict)


def encode_result(result: Result, cni_version: str) -> dict[str, Any]:
    """The result in the format of the requested version (0.1/0.2, 0.3/0.4 or 1.0)."""
    if version_tuple(cni_version) < (0, 3, 0):
        return _encode_legacy(result, cni_version)
    with_version = cni_version != "1.0.0"
    doc: dict[str, Any] = {"cniVersion": cni_version}
    if result.interfaces:
        doc["interfaces"] = [_drop_none(asdict(i)) for i in result.interfaces]
    doc["ips"] = [_encode_ip(ip, with_version) for ip in result.ips]
    if result.routes:
        doc["routes"] = [_drop_none(asdict(r)) for r in result.routes]
    doc["dns"] = dict(result.dns)
    return doc


def _encode_ip(ip: IPConfig, with_version: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"version": str(ip.version)} if with_version else {}
    doc["address"] = ip.address
    if ip.gateway:
        doc["gateway"] = ip.gateway
    if ip.interface is not None:
        doc["interface"] = ip.interface
    return doc


def _encode_legacy(result: Result, cni_version: str) -> dict[str, Any]:
    """0.1.0/0.2.0: one address per family in `ip4`/`ip6`, each with its routes."""
    doc: dict[str, Any] = {"cniVersion": cni_version}
    for version, key in ((4, "ip4"), (6, "ip6")):
        ips = [ip for ip in result.ips if ip.version == version]
        if not ips:
            continue
        routes = [r for r in result.routes if (":" in r.dst) == (version == 6)]
        entry: dict[str, Any] = {"ip": ips[0].address}
        if ips[0].gateway:
            entry["gateway"] = ips[0].gateway
        if routes:
            entry["routes"] = [_drop_none(asdict(r)) for r in routes]
        doc[key] = entry
    doc["dns"] = dict(result.dns)
    return doc


def _drop_none(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v is not None}

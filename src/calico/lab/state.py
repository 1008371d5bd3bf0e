"""What a running lab consists of, kept in `<state dir>/state.json` for later invocations.

Everything is recorded before it is created (namespaces) or as soon as it exists (processes,
workloads), and the file is replaced atomically after each change, so `down` can remove a lab
whose `up` failed or was killed half-way.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from calico.lab.procs import Proc

STATE_FILE = "state.json"
DEFAULT_STATE_ROOT = Path("/var/run/calico-lab")


@dataclass(slots=True)
class WorkloadState:
    name: str
    host: str
    netns: str
    namespace: str
    container_id: str
    ipv4: str | None = None
    ipv6: str | None = None
    ports: list[list[Any]] = field(default_factory=list)  # [proto, port]
    result: dict[str, Any] = field(default_factory=dict)  # the CNI ADD result (prevResult)


@dataclass(slots=True)
class LabState:
    name: str
    prefix: str
    spec: dict[str, Any]  # the lab file as loaded (base_dir included)
    etcd_endpoint: str = ""  # every member on the fabric (a comma list), for the hosts
    etcd_unix: str = ""  # the same members on unix sockets, for this machine's tools
    namespaces: list[str] = field(default_factory=list)
    procs: dict[str, dict[str, int]] = field(default_factory=dict)
    workloads: dict[str, WorkloadState] = field(default_factory=dict)
    frr_dir: str = ""  # the border router's files, where the `frr` user can reach them
    up: bool = False  # set when `up` finished

    def netns(self, entity: str) -> str:
        return f"{self.prefix}-{entity}"

    def proc(self, key: str) -> Proc | None:
        data = self.procs.get(key)
        return Proc.from_json(data) if data else None


class StateStore:
    """The state file of one lab; `save` is atomic and thread-safe."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / STATE_FILE
        self._lock = threading.RLock()

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> LabState:
        data = json.loads(self.path.read_text())
        workloads = {k: WorkloadState(**v) for k, v in data.pop("workloads", {}).items()}
        return LabState(**data, workloads=workloads)

    def save(self, state: LabState) -> None:
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(asdict(state), indent=1, sort_keys=True))
            tmp.replace(self.path)

    @property
    def lock(self) -> threading.RLock:
        return self._lock


def state_dir_for(name: str, root: Path = DEFAULT_STATE_ROOT) -> Path:
    return root / name


def only_lab(root: Path = DEFAULT_STATE_ROOT) -> Path | None:
    """The state dir of the single lab under `root`, if there is exactly one."""
    found = sorted(p.parent for p in root.glob(f"*/{STATE_FILE}")) if root.is_dir() else []
    return found[0] if len(found) == 1 else None

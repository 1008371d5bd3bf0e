"""Installing the CNI plugins where a runtime looks for them (`calico cni install`).

A runtime executes `<bin dir>/<type>` for each plugin of a network, so the two plugins become
small executables there: scripts whose shebang is this installation's Python (isolated mode,
so a runtime's PYTHON* environment cannot redirect imports) and which hand the call to the
host's calico node (`calico.cni.node_socket`) or, without one, run the plugin module through
`calico.cni.runner`, which imports it only for commands that need it.
A sample conflist can be written to the runtime's config dir; an existing one is kept unless
`force`, since operators edit it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLUGINS = {"calico": "calico.cni.plugin", "calico-ipam": "calico.cni.ipam_plugin"}
CONFLIST_NAME = "10-calico.conflist"
DEFAULT_NETWORK = "k8s-pod-network"


@dataclass(frozen=True, slots=True)
class Installed:
    path: Path
    written: bool  # False: an existing file was kept


def plugin_script(module: str, python: str = sys.executable) -> str:
    return (
        f"#!{python} -I\n"
        f"# calico-py CNI plugin, written by `calico cni install`: runs {module}.\n"
        "from calico.cni.node_socket import main\n"
        f"main({module!r})\n"
    )


def sample_conflist(
    network: str = DEFAULT_NETWORK,
    etcd_endpoints: str | None = None,
    nodename: str | None = None,
    mtu: int = 0,
) -> dict[str, Any]:
    plugin: dict[str, Any] = {"type": "calico", "log_level": "info"}
    if etcd_endpoints:
        plugin["etcd_endpoints"] = etcd_endpoints
    if nodename:
        plugin["nodename"] = nodename
    if mtu:
        plugin["mtu"] = mtu
    plugin["ipam"] = {"type": "calico-ipam"}
    return {"name": network, "cniVersion": "1.0.0", "plugins": [plugin]}


def install_plugins(bin_dir: Path, python: str = sys.executable) -> list[Installed]:
    bin_dir.mkdir(parents=True, exist_ok=True)
    installed = []
    for name, module in PLUGINS.items():
        path = bin_dir / name
        _write_atomic(path, plugin_script(module, python), mode=0o755)
        installed.append(Installed(path, True))
    return installed


def install_conflist(conf_dir: Path, conflist: dict[str, Any], force: bool = False) -> Installed:
    conf_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / CONFLIST_NAME
    if path.exists() and not force:
        return Installed(path, False)
    _write_atomic(path, json.dumps(conflist, indent=2) + "\n", mode=0o644)
    return Installed(path, True)


def _write_atomic(path: Path, text: str, mode: int) -> None:
    """Write-then-rename, so a runtime never executes or parses a half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

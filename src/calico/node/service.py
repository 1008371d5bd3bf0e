"""systemd units for a real host: `calico node run` and `calico-dhcp-agent`, and the
environment file both read (/etc/calico/calico.env), written by `calico node install-service`.

The units run the executables of the installation that wrote them (absolute paths), start
after the network is online and are restarted whenever they exit. The node unit stops with
KillMode=mixed: SIGTERM goes to `calico node run` alone, which stops Felix and BIRD in its own
order; whatever is left after TimeoutStopSec is killed. The environment file is created once
and never overwritten: it is the operator's to edit (docs/install.md). A unit that exists
with other content is replaced only with `force`: nothing is changed half-way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from calico.datastore.config import parse_endpoints
from calico.model.fields import is_subdomain

UNIT_DIR = Path("etc/systemd/system")
ENV_FILE = Path("etc/calico/calico.env")
NODE_UNIT = "calico-node.service"
DHCP_AGENT_UNIT = "calico-dhcp-agent.service"
NEUTRON_CONF = "/etc/neutron/neutron.conf"


class ServiceError(ValueError):
    """An install-service argument or an existing file that stops the install."""


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    bin_dir: Path  # where calico and calico-dhcp-agent are installed
    etcd_endpoints: str | None = None
    nodename: str | None = None
    etcd_ca_cert_file: str | None = None
    etcd_cert_file: str | None = None
    etcd_key_file: str | None = None
    dhcp_agent: bool = False
    neutron_config_files: tuple[str, ...] = (NEUTRON_CONF,)


def node_unit(settings: ServiceSettings) -> str:
    return f"""[Unit]
Description=calico-py node: Felix, the BGP agent and BIRD for this host
Documentation=https://github.com/projectcalico/calico
Wants=network-online.target
After=network-online.target etcd.service

[Service]
Type=simple
EnvironmentFile=/{ENV_FILE}
ExecStart={settings.bin_dir / "calico"} node run
Restart=always
RestartSec=5
KillMode=mixed
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
"""


def dhcp_agent_unit(settings: ServiceSettings) -> str:
    files = " ".join(f"--config-file {f}" for f in settings.neutron_config_files)
    return f"""[Unit]
Description=calico-py DHCP agent: dnsmasq for this compute host's OpenStack VMs
Wants=network-online.target
After=network-online.target calico-node.service

[Service]
Type=simple
EnvironmentFile=-/{ENV_FILE}
ExecStart={settings.bin_dir / "calico-dhcp-agent"} {files}
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
"""


def env_file(settings: ServiceSettings) -> str:
    """The node's environment; checked here, where it enters, not at the first boot."""
    if not settings.etcd_endpoints:
        raise ServiceError(
            f"--etcd-endpoints: required to create /{ENV_FILE} (the etcd cluster to join)"
        )
    try:
        endpoints = ",".join(parse_endpoints(settings.etcd_endpoints))
    except ValueError as exc:
        raise ServiceError(f"--etcd-endpoints: {exc}") from exc
    lines = [
        "# calico-py node settings (calico/node's environment variables; docs/support-node.md).",
        f"ETCD_ENDPOINTS={endpoints}",
    ]
    if settings.nodename is not None:
        if not is_subdomain(settings.nodename):
            raise ServiceError(f"--nodename: {settings.nodename!r} is not a DNS name")
        lines.append(f"NODENAME={settings.nodename}")
    else:
        lines.append("# NODENAME=<this host's name> (default: the host name)")
    tls = {
        "ETCD_CA_CERT_FILE": settings.etcd_ca_cert_file,
        "ETCD_CERT_FILE": settings.etcd_cert_file,
        "ETCD_KEY_FILE": settings.etcd_key_file,
    }
    for name, path in tls.items():
        if path is None:
            continue
        if not os.path.isabs(path) or not os.path.isfile(path):
            flag = "--" + name.lower().replace("_", "-")
            raise ServiceError(f"{flag}: {path!r} is not an existing file (absolute path)")
        lines.append(f"{name}={path}")
    lines += [
        "# IP=autodetect",
        "# AS=64512",
        "# CALICO_NETWORKING_BACKEND=bird",
    ]
    return "\n".join(lines) + "\n"


def planned_files(settings: ServiceSettings, root: Path) -> dict[Path, str]:
    """Every file the install would write, with its content (the env file only if absent)."""
    files = {root / UNIT_DIR / NODE_UNIT: node_unit(settings)}
    if settings.dhcp_agent:
        files[root / UNIT_DIR / DHCP_AGENT_UNIT] = dhcp_agent_unit(settings)
    if not (root / ENV_FILE).exists():
        files[root / ENV_FILE] = env_file(settings)
    return files


def install(settings: ServiceSettings, root: Path = Path("/"), force: bool = False) -> list[Path]:
    """Write the units (and the env file if absent); returns what was written."""
    for name in ("calico", "calico-dhcp-agent") if settings.dhcp_agent else ("calico",):
        if not os.access(settings.bin_dir / name, os.X_OK):
            raise ServiceError(f"--bin-dir: no executable {name} in {settings.bin_dir}")
    files = planned_files(settings, root)
    clashes = [p for p, text in files.items() if p.suffix == ".service" and _differs(p, text)]
    if clashes and not force:
        names = ", ".join(str(p) for p in clashes)
        raise ServiceError(f"{names}: exists with other content (--force replaces it)")
    written = []
    for path, text in files.items():
        if path.exists() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600 if path.name.endswith(".env") else 0o644)
        tmp.replace(path)
        written.append(path)
    return written


def _differs(path: Path, text: str) -> bool:
    return path.exists() and path.read_text() != text

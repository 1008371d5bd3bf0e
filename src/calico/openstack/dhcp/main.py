"""`calico-dhcp-agent`: DHCP for the OpenStack VMs of this compute host.

    calico-dhcp-agent [--config-file /etc/neutron/neutron.conf ...] [--hostname H]

etcd and the region come from the `[calico]` section of the config files (networking-calico's
option names; ETCD_ENDPOINTS in the environment overrides the address), and the Neutron DHCP
agent options networking-calico's agent uses from their `[DEFAULT]` sections (lease time,
domain, ...; see `calico.openstack.settings.OPTIONS`: each works or is refused at start). The
host name is --hostname, else NODENAME, else `[DEFAULT] host`, else the system's host name: it
must be the name Nova binds ports to (binding:host_id), as for Felix. Every file goes under
`$CALICO_RUN_DIR/dhcp/` (default /var/run/calico/dhcp/), so agents for several hosts can share
a machine. SIGTERM or SIGINT stops dnsmasq and removes the `ns-` interfaces; logs go to
stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import click

from calico.datastore.api import DatastoreTlsError
from calico.datastore.etcd import EtcdBackend
from calico.datastore.etcd_tls import refuse_bad_tls
from calico.openstack import settings
from calico.openstack.dhcp.agent import DhcpAgent
from calico.openstack.dhcp.config import DEFAULT_LEASE_SECONDS, RenderOptions
from calico.openstack.dhcp.dnsmasq import DNSMASQ, DnsmasqManager
from calico.openstack.dhcp.links import TapMtus
from calico.version import add_version_option

log = logging.getLogger("calico.openstack.dhcp")
DEFAULT_RUN_DIR = "/var/run/calico"


@dataclass(frozen=True, slots=True)
class Args:
    config_file: tuple[str, ...]
    hostname: str | None
    dnsmasq: str
    lease_time: int | None
    debug: bool


@click.command(
    name="calico-dhcp-agent",
    help="Serve DHCP (and IPv6 RAs) to this host's OpenStack VMs with dnsmasq, driven by the"
    " Calico datastore.",
)
@click.option(
    "--config-file",
    multiple=True,
    metavar="PATH",
    help="INI file with a [calico] section (repeatable; later files win)",
)
@click.option("--hostname", help="this host's name (default: $NODENAME, else hostname)")
@click.option("--dnsmasq", default=DNSMASQ, show_default=True, help="dnsmasq binary")
@click.option(
    "--lease-time",
    type=click.IntRange(min=120),  # dnsmasq's minimum
    metavar="SECONDS",
    help=f"DHCP lease time (default: [DEFAULT] dhcp_lease_duration, else {DEFAULT_LEASE_SECONDS})",
)
@click.option("--debug", is_flag=True, help="debug logs, and dnsmasq --log-dhcp")
def _command(
    config_file: tuple[str, ...],
    hostname: str | None,
    dnsmasq: str,
    lease_time: int | None,
    debug: bool,
) -> Args:
    return Args(config_file, hostname, dnsmasq, lease_time, debug)


add_version_option(_command, "calico-dhcp-agent")


def parse_args(argv: Sequence[str]) -> Args:
    """The command line as Args; a usage error exits 2 with click's message."""
    try:
        args = _command.main(args=list(argv), standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    if not isinstance(args, Args):  # --help was printed
        sys.exit(args or 0)
    return args


def unreadable_ancestor(path: str) -> str | None:
    """The first directory on the way to `path` that other users cannot search: dnsmasq drops
    to user nobody after start and must still read its hosts/opts files on SIGHUP."""
    current = os.path.abspath(path)
    while True:
        with contextlib.suppress(OSError):
            if not os.stat(current).st_mode & stat.S_IXOTH:
                return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def hostname_of(args: Args, environ: Mapping[str, str], configured: str | None = None) -> str:
    return args.hostname or environ.get("NODENAME") or configured or socket.gethostname()


def render_options(base_dir: str, args: Args, dhcp: settings.DhcpAgentOptions) -> RenderOptions:
    return RenderOptions(
        base_dir,
        lease_seconds=args.lease_time or dhcp.dhcp_lease_duration,
        log_dhcp=args.debug,
        domain=dhcp.domain,
        broadcast=dhcp.dhcp_broadcast_reply,
        lease_max=dhcp.dnsmasq_lease_max,
        conf_file=dhcp.dnsmasq_config_file,
        renewal_seconds=dhcp.dhcp_renewal_time,
        rebinding_seconds=dhcp.dhcp_rebinding_time,
    )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ if environ is None else environ)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # One line per etcd request, or per netlink message, otherwise.
    for noisy in ("httpx", "httpcore", "pyroute2", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        options = settings.read_config_files(args.config_file)
        dhcp = settings.read_dhcp_agent_options(args.config_file)
        hostname = hostname_of(args, env, dhcp.host)
        backend = EtcdBackend(options.etcd_config(env).for_host(hostname))
    except ValueError as exc:
        log.error("invalid configuration: %s", exc)
        sys.exit(2)
    base_dir = os.path.join(env.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR, "dhcp")
    os.makedirs(base_dir, mode=0o755, exist_ok=True)
    blocked = unreadable_ancestor(base_dir)
    if blocked:
        log.warning("dnsmasq runs as nobody and cannot reach its files: %s is not o+x", blocked)
    agent = DhcpAgent(
        backend,
        hostname,
        options.openstack_region,
        DnsmasqManager(base_dir, dnsmasq=args.dnsmasq),
        render_options(base_dir, args, dhcp),
        tap_mtus=TapMtus,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop())
    log.info(
        "Calico DHCP agent starting for host %s, region %s, files in %s",
        hostname,
        options.region_string,
        base_dir,
    )
    try:
        refuse_bad_tls(backend)
        code = agent.run()
    except DatastoreTlsError as exc:
        log.error("cannot reach the datastore: %s", exc)
        code = 1
    finally:
        backend.close()
    log.info("Calico DHCP agent exiting (%d)", code)
    sys.exit(code)

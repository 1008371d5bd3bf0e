"""`calico node run`: calico/node for the host (network namespace) it is started in."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from calico.datastore.api import DatastoreError
from calico.node.config import NodeConfigError, settings_from_env


@click.group()
def node() -> None:
    """calico/node: register this host and run Felix, the BGP agent and BIRD."""


@node.command()
@click.option("--nodename", help="Node name (default: $NODENAME, else the host name).")
@click.option("--ip", help="IPv4 address/prefix, 'autodetect' or 'none' (default: $IP).")
@click.option("--ip6", help="IPv6 address/prefix, 'autodetect' or 'none' (default: $IP6).")
@click.option(
    "--ip-autodetection-method", "ip_method", help="$IP_AUTODETECTION_METHOD (first-found...)."
)
@click.option("--ip6-autodetection-method", "ip6_method", help="$IP6_AUTODETECTION_METHOD.")
@click.option("--as", "as_number", help="The node's AS number (default: $AS).")
@click.option("--etcd-endpoints", help="etcd endpoints (default: $ETCD_ENDPOINTS).")
@click.option("--run-dir", help="Per-node files (default: $CALICO_RUN_DIR or /var/run/calico).")
@click.option("--felix", "felix_bin", help="calico-felix executable (default: next to calico).")
@click.option("--bird", "bird_bin", default="bird", show_default=True)
@click.option("--birdc", "birdc_bin", default="birdc", show_default=True)
def run(
    nodename: str | None,
    ip: str | None,
    ip6: str | None,
    ip_method: str | None,
    ip6_method: str | None,
    as_number: str | None,
    etcd_endpoints: str | None,
    run_dir: str | None,
    felix_bin: str | None,
    bird_bin: str,
    birdc_bin: str,
) -> None:
    """Run until SIGTERM. Configured like calico/node from its environment (NODENAME, IP, IP6,
    IP_AUTODETECTION_METHOD, AS, ETCD_ENDPOINTS, CALICO_NETWORKING_BACKEND, ...; see
    docs/support-node.md); flags override it. Values calico-py cannot honour are refused."""
    from calico.node.daemon import run_node

    flags = {
        "NODENAME": nodename,
        "IP": ip,
        "IP6": ip6,
        "IP_AUTODETECTION_METHOD": ip_method,
        "IP6_AUTODETECTION_METHOD": ip6_method,
        "AS": as_number,
        "ETCD_ENDPOINTS": etcd_endpoints,
        "CALICO_RUN_DIR": run_dir,
    }
    env = {**os.environ, **{k: v for k, v in flags.items() if v is not None}}
    try:
        settings = settings_from_env(env)
    except NodeConfigError as exc:
        raise click.ClickException(str(exc)) from None
    binaries = {"bird": bird_bin, "birdc": birdc_bin}
    if felix_bin:
        binaries["felix"] = felix_bin
    try:
        code = run_node(settings, env, **binaries)
    except (RuntimeError, ValueError, DatastoreError) as exc:  # start-up failed
        click.echo(f"calico node: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)


@node.command("install-service")
@click.option("--etcd-endpoints", help="etcd endpoints, written to the new environment file.")
@click.option("--nodename", help="This host's Node name (default: the host name at start).")
@click.option("--etcd-ca-cert-file", help="CA of the etcd server certificates (https).")
@click.option("--etcd-cert-file", help="This host's etcd client certificate.")
@click.option("--etcd-key-file", help="This host's etcd client key.")
@click.option("--dhcp-agent", is_flag=True, help="Also the calico-dhcp-agent unit (OpenStack).")
@click.option(
    "--neutron-config-file",
    "neutron_config_files",
    multiple=True,
    metavar="PATH",
    help="The DHCP agent's --config-file (repeatable; default /etc/neutron/neutron.conf).",
)
@click.option(
    "--bin-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where calico and calico-dhcp-agent are (default: this installation's).",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Write under this directory instead of / (an image being built).",
)
@click.option("--force", is_flag=True, help="Replace units that exist with other content.")
def install_service(
    etcd_endpoints: str | None,
    nodename: str | None,
    etcd_ca_cert_file: str | None,
    etcd_cert_file: str | None,
    etcd_key_file: str | None,
    dhcp_agent: bool,
    neutron_config_files: tuple[str, ...],
    bin_dir: Path | None,
    root: Path,
    force: bool,
) -> None:
    """Install systemd units for `calico node run` (and calico-dhcp-agent) and create
    /etc/calico/calico.env, the environment they read (kept if it exists)."""
    from calico.node.service import NEUTRON_CONF, ServiceError, ServiceSettings, install

    settings = ServiceSettings(
        bin_dir=(bin_dir or Path(sys.executable).parent).absolute(),
        etcd_endpoints=etcd_endpoints,
        nodename=nodename,
        etcd_ca_cert_file=etcd_ca_cert_file,
        etcd_cert_file=etcd_cert_file,
        etcd_key_file=etcd_key_file,
        dhcp_agent=dhcp_agent,
        neutron_config_files=neutron_config_files or (NEUTRON_CONF,),
    )
    try:
        written = install(settings, root, force)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    for path in written:
        click.echo(f"wrote {path}")
    if not written:
        click.echo("nothing to do: the units are installed")
    units = "calico-node" + (" calico-dhcp-agent" if dhcp_agent else "")
    click.echo(f"next: systemctl daemon-reload && systemctl enable --now {units}")

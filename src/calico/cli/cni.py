"""`calico cni ...`: put the CNI plugins where container runtimes find them; serve their calls."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import click

from calico.cni.install import (
    DEFAULT_NETWORK,
    install_conflist,
    install_plugins,
    sample_conflist,
)
from calico.cni.node_service import CniService


@click.group()
def cni() -> None:
    """The Calico CNI plugins (calico, calico-ipam)."""


@cni.command()
@click.option(
    "--bin-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the runtime looks for plugins (e.g. /opt/cni/bin).",
)
@click.option(
    "--conf-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write a sample 10-calico.conflist here (e.g. /etc/cni/net.d).",
)
@click.option("--network-name", default=DEFAULT_NETWORK, show_default=True)
@click.option(
    "--etcd-endpoints",
    default=lambda: os.environ.get("ETCD_ENDPOINTS", ""),
    help="etcd_endpoints for the sample config (default: $ETCD_ENDPOINTS).",
)
@click.option("--nodename", default=None, help="nodename for the sample config.")
@click.option("--mtu", type=click.IntRange(min=0), default=0, help="mtu for the sample config.")
@click.option("--force", is_flag=True, help="Overwrite an existing conflist.")
def install(
    bin_dir: Path,
    conf_dir: Path | None,
    network_name: str,
    etcd_endpoints: str,
    nodename: str | None,
    mtu: int,
    force: bool,
) -> None:
    """Install the `calico` and `calico-ipam` executables (and optionally a conflist)."""
    try:
        for item in install_plugins(bin_dir):
            click.echo(f"installed {item.path}")
        if conf_dir is not None:
            conflist = sample_conflist(network_name, etcd_endpoints or None, nodename, mtu)
            item = install_conflist(conf_dir, conflist, force)
            verb = "wrote" if item.written else "kept existing (use --force to overwrite)"
            click.echo(f"{verb} {item.path}")
    except OSError as exc:
        raise click.ClickException(str(exc)) from None


@cni.command()
def serve() -> None:
    """Run the plugins' calls for plugin processes in this network namespace until SIGTERM.

    `calico node run` does this itself; this is for a host that runs Felix without it. Plugins
    find the service by its abstract socket name, which is per network namespace."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service = CniService()
    if not service.start():
        raise click.ClickException("another CNI service listens in this network namespace")
    try:
        stop.wait()
    finally:
        service.stop()

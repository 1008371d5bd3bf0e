"""`calico`: node-level commands: `cni` (install the plugins), `node` (calico/node for this
host) and `lab` (multi-host labs of network namespaces on one machine)."""

from __future__ import annotations

import click

from calico.cli.cni import cni
from calico.cli.lab import lab
from calico.cli.node import node
from calico.version import add_version_option


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """calico-py node tools. Resources are managed with calicoctl."""


cli.add_command(cni)
cli.add_command(node)
cli.add_command(lab)
add_version_option(cli, "calico")


def main() -> None:
    cli.main(prog_name="calico")

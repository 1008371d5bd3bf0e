"""calico-felix entry point: `calico-felix [-c FILE]`, as Calico's Felix takes its command line.

Felix is configured by its config file, the environment and the datastore; the command line
only names the config file. `--help` and `--version` print and exit 0 before Felix is imported
(no datastore contact, nothing written); any other argument is a usage error (exit 2).
"""

from __future__ import annotations

import os

import click

from calico.version import add_version_option


@click.command(
    name="calico-felix",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "-c",
    "--config-file",
    metavar="FILE",
    help="Felix's INI config file ([global] section); overrides $FELIX_CONFIGFILE"
    " (default /etc/calico/felix.cfg).",
)
def felix_command(config_file: str | None) -> None:
    """Calico's per-host agent: program this network namespace's routes, iptables and IP sets
    for the endpoints of this node (NODENAME) from the datastore (ETCD_ENDPOINTS)."""
    from calico.felix.daemon import main as run_felix

    env = dict(os.environ)
    if config_file:
        env["FELIX_CONFIGFILE"] = config_file
    run_felix(env)


add_version_option(felix_command, "calico-felix")


def main() -> None:
    felix_command.main(prog_name="calico-felix")

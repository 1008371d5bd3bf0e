"""calicoctl: the operator's CLI for projectcalico.org/v3 resources on etcd."""

from __future__ import annotations

import logging

import click

from calico.ctl.commands.completion import completion
from calico.ctl.commands.files import apply, create, delete, replace, validate
from calico.ctl.commands.get import get
from calico.ctl.commands.ipam import ipam
from calico.ctl.commands.label import label
from calico.ctl.commands.node import node
from calico.ctl.commands.patch import patch
from calico.ctl.commands.policy import policy
from calico.ctl.commands.version import version
from calico.ctl.context import CtlContext
from calico.version import add_version_option


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    default=None,
    help="Config file (kind CalicoAPIConfig); default /etc/calico/calicoctl.cfg if present.",
)
@click.option(
    "-l",
    "--log-level",
    default="error",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Log level.",
)
@click.pass_context
def cli(click_ctx: click.Context, config_path: str | None, log_level: str) -> None:
    """Manage Calico resources in the etcd datastore (ETCD_ENDPOINTS, or --config)."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    ctx = CtlContext(config_path)
    click_ctx.obj = ctx
    click_ctx.call_on_close(ctx.close)


for _command in (
    create,
    apply,
    replace,
    delete,
    get,
    patch,
    label,
    validate,
    version,
    ipam,
    node,
    policy,
    completion,
):
    cli.add_command(_command)
add_version_option(cli, "calicoctl")


def main() -> None:
    cli.main(prog_name="calicoctl")

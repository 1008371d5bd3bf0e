"""`calico`: node-level commands. `cni` is built; `node` and `lab` are not yet and say so."""

from __future__ import annotations

import click

from calico.cli.cni import cni

_UNBUILT = {
    "node": "node bring-up (calico node run, status)",
    "lab": "the lab (multi-host test topologies)",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """calico-py node tools. Resources are managed with calicoctl."""


cli.add_command(cni)


def _unbuilt(name: str, message: str) -> click.Command:
    @click.command(
        name=name,
        help=f"Not implemented yet: {message}.",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
    def command() -> None:
        raise click.ClickException(f"{message}: not implemented yet in calico-py")

    return command


for _name, _message in _UNBUILT.items():
    cli.add_command(_unbuilt(_name, _message))


def main() -> None:
    cli.main(prog_name="calico")

"""`--version` for every command: one message, on a click command and all its subcommands."""

from __future__ import annotations

import click

from calico import version_line


def add_version_option(command: click.Command, prog: str) -> click.Command:
    """Give `command` and every subcommand an eager `--version` that prints and exits 0
    before any callback runs (so it has no side effects), as click's `--help` does."""

    def show(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value and not ctx.resilient_parsing:
            click.echo(version_line(prog))
            ctx.exit(0)

    if any("--version" in param.opts for param in command.params):
        return command
    option = click.Option(
        ["--version"],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=show,
        help="Show the version and exit.",
    )
    command.params.append(option)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_version_option(sub, prog)
    return command

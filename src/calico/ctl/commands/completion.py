"""calicoctl completion bash|zsh|fish: the shell script that completes calicoctl's commands.

The script is click's: it calls calicoctl back with `_CALICOCTL_COMPLETE` set, and calicoctl
answers from its own command tree, so completion always matches the installed version.
Load it with e.g. `source <(calicoctl completion bash)`.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")
PROG_NAME = "calicoctl"
COMPLETE_VAR = "_CALICOCTL_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(click_ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL."""
    cls = get_completion_class(shell)
    assert cls is not None  # every one of SHELLS is built into click
    root = click_ctx.find_root().command
    click.echo(cls(root, {}, PROG_NAME, COMPLETE_VAR).source())

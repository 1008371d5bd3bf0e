"""calicoctl get KIND [NAME...] [-n NS | -A] [-o ps|wide|yaml|json|custom-columns=A,B...]."""

from __future__ import annotations

import click

from calico.ctl.context import CtlContext, CtlError, reported, resolve_kind, warn
from calico.ctl.output import custom_columns, format_resources
from calico.datastore.client import ResourceNotFound
from calico.model.base import DEFAULT_NAMESPACE, Resource


def parse_output(cls: type[Resource], output: str) -> tuple[str, list[str]]:
    """-o's format and, for custom-columns, its headings (checked against the kind)."""
    if output in ("ps", "wide", "json", "yaml", "yml"):
        return ("yaml" if output == "yml" else output), []
    key, _, value = output.partition("=")
    if key != "custom-columns":
        raise CtlError(f"unrecognized output format '{output}'")
    if not value:
        raise CtlError("need to specify at least one column")
    headings = value.split(",")
    try:
        custom_columns(cls, headings)
    except ValueError as exc:
        raise CtlError(str(exc)) from None
    return "ps", headings


@click.command()
@click.argument("kind")
@click.argument("names", nargs=-1)
@click.option(
    "-n", "--namespace", default=None, help="Namespace (namespaced kinds; default: default)."
)
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option(
    "-o",
    "--output",
    default="ps",
    show_default=True,
    help="Output format: ps, wide, yaml, json or custom-columns=HEADING,HEADING...",
)
@click.pass_obj
def get(
    ctx: CtlContext,
    kind: str,
    names: tuple[str, ...],
    namespace: str | None,
    all_namespaces: bool,
    output: str,
) -> None:
    """Show resources of KIND (all of them, or the NAMEs given)."""
    cls = resolve_kind(kind)
    output, headings = parse_output(cls, output)
    if all_namespaces and names:
        raise CtlError("a resource cannot be retrieved by name across all namespaces")
    ns = None if all_namespaces or not cls.NAMESPACED else (namespace or DEFAULT_NAMESPACE)
    with reported():
        client = ctx.client()
        revision = ""
        if names:
            found: list[Resource] = []
            for name in names:
                try:
                    found.append(client.get(cls, name, ns))
                except ResourceNotFound as exc:
                    raise CtlError(f"Failed to get resources: {exc}") from None
        else:
            listing = client.list(cls, ns)
            for skipped in listing.skipped:
                warn(f"Warning: skipped invalid datastore entry {skipped.reason}")
            found = sorted(listing.items, key=lambda r: (r.namespace or "", r.name))
            revision = str(listing.revision)
    text = format_resources(
        cls,
        found,
        output,
        single=len(names) == 1,
        all_namespaces=all_namespaces,
        revision=revision,
        headings=headings,
    )
    click.echo(text, nl=False)

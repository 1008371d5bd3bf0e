"""create, apply, replace, delete -f, and validate: verbs that take a manifest file.

The whole input is parsed and validated before the first write, so a bad document
leaves the datastore untouched. Writes then go in file order; if one fails the output
says how many succeeded before it, as calicoctl does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from calico.ctl.context import CtlContext, CtlError, reported, resolve_kind
from calico.datastore.api import DatastoreError
from calico.datastore.client import ResourceClient, ResourceExists, ResourceNotFound
from calico.model.base import Resource
from calico.model.codec import parse_manifest
from calico.model.errors import ResourceError

_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_PAST = {"create": "created", "apply": "applied", "replace": "replaced", "delete": "deleted"}


def read_manifests(filename: str, namespace: str | None) -> list[Resource]:
    """Every resource in FILE ('-' for stdin, or a directory of manifests), validated."""
    sources: list[tuple[str, str]] = []
    if filename == "-":
        sources.append(("stdin", sys.stdin.read()))
    else:
        path = Path(filename)
        paths = (
            sorted(p for p in path.iterdir() if p.suffix in _MANIFEST_SUFFIXES)
            if path.is_dir()
            else [path]
        )
        for p in paths:
            try:
                sources.append((str(p), p.read_text()))
            except OSError as exc:
                raise CtlError(f"cannot read {p}: {exc.strerror}") from None
    resources: list[Resource] = []
    for name, text in sources:
        try:
            resources.extend(parse_manifest(text, name, default_namespace=namespace))
        except ResourceError as exc:
            raise CtlError(str(exc)) from None
    if not resources:
        raise CtlError(f"no resources specified in {filename}")
    return resources


def _kind_phrase(resources: list[Resource]) -> str:
    kinds = {r.KIND for r in resources}
    return f"'{kinds.pop()}' " if len(kinds) == 1 else ""


def run_writes(
    resources: list[Resource],
    verb: str,
    action: Callable[[Resource], object],
    skip: type[DatastoreError] | None = None,
) -> None:
    """Apply `action` to each resource in order, reporting like calicoctl."""
    done = 0
    for resource in resources:
        try:
            action(resource)
        except DatastoreError as exc:
            if skip is not None and isinstance(exc, skip):
                done += 1
                continue
            if done == 0:
                raise CtlError(
                    f"Failed to {verb} any {_kind_phrase(resources)}resources: {exc}"
                ) from None
            raise CtlError(
                f"Partial success: {_PAST[verb]} the first {done} out of {len(resources)}"
                f" resources: {exc}"
            ) from None
        done += 1
    click.echo(f"Successfully {_PAST[verb]} {done} {_kind_phrase(resources)}resource(s)")


def _write_file(
    ctx: CtlContext,
    filename: str,
    namespace: str | None,
    verb: str,
    action: Callable[[ResourceClient], Callable[[Resource], object]],
    skip: type[DatastoreError] | None = None,
) -> None:
    """Validate the whole file, then write it resource by resource."""
    resources = read_manifests(filename, namespace)
    run_writes(resources, verb, action(ctx.client()), skip)


def _delete(client: ResourceClient, resource: Resource) -> object:
    return client.delete(
        type(resource), resource.name, resource.namespace, resource.metadata.resourceVersion
    )


_file_option = click.option(
    "-f", "--filename", required=True, help="Manifest file, directory, or '-' for stdin."
)
_ns_option = click.option(
    "-n", "--namespace", default=None, help="Namespace for namespaced resources that name none."
)


@click.command()
@_file_option
@_ns_option
@click.option("--skip-exists", is_flag=True, help="Do not fail for resources that already exist.")
@click.pass_obj
def create(ctx: CtlContext, filename: str, namespace: str | None, skip_exists: bool) -> None:
    """Create resources from a file; fails for any that already exist."""
    skip = ResourceExists if skip_exists else None
    _write_file(ctx, filename, namespace, "create", lambda c: c.create, skip)


_preview_option = click.option(
    "--preview",
    is_flag=True,
    help="Write nothing: print how reachability between the workload endpoints would change; "
    "exit 0 if nothing changes, 1 if something does, 2 on error.",
)


def _preview(ctx: CtlContext, resources: list[Resource], delete: bool) -> None:
    from calico.ctl import preview as pv

    try:
        with reported():
            outcome = pv.preview(ctx.client(), resources, delete)
    except click.ClickException as exc:
        raise PreviewError(exc.format_message()) from None
    except pv.PreviewError as exc:
        raise PreviewError(str(exc)) from None
    if outcome.changes:
        click.echo(pv.render_changes(outcome.changes), nl=False)
    else:
        click.echo(
            f"no reachability changes ({outcome.compared} endpoint pairs and probes compared)"
        )
    sys.exit(1 if outcome.changes else 0)


class PreviewError(CtlError):
    exit_code = 2  # as kubectl diff: 1 means "changes"


@click.command()
@_file_option
@_ns_option
@_preview_option
@click.pass_obj
def apply(ctx: CtlContext, filename: str, namespace: str | None, preview: bool) -> None:
    """Create or update resources from a file."""
    if preview:
        try:
            resources = read_manifests(filename, namespace)
        except CtlError as exc:
            raise PreviewError(exc.format_message()) from None
        _preview(ctx, resources, delete=False)
    _write_file(ctx, filename, namespace, "apply", lambda c: c.apply)


@click.command()
@_file_option
@_ns_option
@click.pass_obj
def replace(ctx: CtlContext, filename: str, namespace: str | None) -> None:
    """Replace existing resources from a file (compare-and-swap on resourceVersion)."""
    _write_file(ctx, filename, namespace, "replace", lambda c: c.replace)


@click.command()
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
@click.option("-f", "--filename", default=None, help="Manifest file, directory, or '-' for stdin.")
@_ns_option
@click.option(
    "--skip-not-exists", is_flag=True, help="Do not fail for resources that do not exist."
)
@_preview_option
@click.pass_obj
def delete(
    ctx: CtlContext,
    kind: str | None,
    names: tuple[str, ...],
    filename: str | None,
    namespace: str | None,
    skip_not_exists: bool,
    preview: bool,
) -> None:
    """Delete resources named in a file, or KIND NAME..."""
    if preview:
        _preview(ctx, _to_delete(ctx, kind, names, filename, namespace), delete=True)
    if filename is not None:
        if kind:
            raise CtlError("give either -f FILE or KIND NAME..., not both")
        resources = read_manifests(filename, namespace)
        client = ctx.client()
        run_writes(
            resources,
            "delete",
            lambda r: _delete(client, r),
            ResourceNotFound if skip_not_exists else None,
        )
        return
    if not kind or not names:
        raise CtlError("delete needs -f FILE or KIND NAME...")
    cls = resolve_kind(kind)
    client = ctx.client()
    done = 0
    for name in names:
        try:
            client.delete(cls, name, namespace if cls.NAMESPACED else None)
        except ResourceNotFound:
            if not skip_not_exists:
                raise CtlError(
                    f"Failed to delete '{cls.KIND}' {name}: {cls.KIND} \"{name}\" does not exist"
                ) from None
        except DatastoreError as exc:
            raise CtlError(f"Failed to delete '{cls.KIND}' {name}: {exc}") from None
        done += 1
    click.echo(f"Successfully deleted {done} '{cls.KIND}' resource(s)")


def _to_delete(
    ctx: CtlContext,
    kind: str | None,
    names: tuple[str, ...],
    filename: str | None,
    namespace: str | None,
) -> list[Resource]:
    """What a delete names: the file's resources, or KIND NAME... as stored."""
    try:
        if filename is not None:
            if kind:
                raise CtlError("give either -f FILE or KIND NAME..., not both")
            return read_manifests(filename, namespace)
        if not kind or not names:
            raise CtlError("delete needs -f FILE or KIND NAME...")
        cls = resolve_kind(kind)
        with reported():
            return [ctx.client().get(cls, n, namespace if cls.NAMESPACED else None) for n in names]
    except click.ClickException as exc:
        raise PreviewError(exc.format_message()) from None


@click.command()
@_file_option
@_ns_option
def validate(filename: str, namespace: str | None) -> None:
    """Check a manifest offline: schema, names, selectors, CIDRs, ports..."""
    resources = read_manifests(filename, namespace)
    click.echo(f"Successfully validated {len(resources)} {_kind_phrase(resources)}resource(s)")

"""calicoctl patch KIND NAME -p PATCH [-t strategic|merge] [-n NS].

The patch is a JSON object merged into the stored resource as RFC 7386 describes (objects
merge key by key, `null` removes a key, anything else -- lists included -- replaces). That is
also what calicoctl's default "strategic" type does to Calico's resources: their schemas
declare no list merge keys, so a strategic merge replaces lists the same way. RFC 6902 JSON
Patch (`--type json`) is refused, as calicoctl documents it as not implemented.

The result is validated exactly as `apply` validates a manifest, and written with
compare-and-swap on the revision that was read and patched: a concurrent writer makes the
write lose and the patch is re-applied to the new value, never over it. A patch that names
`metadata.resourceVersion` pins the write to that revision. Nothing is written when the
patch or its result is invalid.
"""

from __future__ import annotations

import json
from typing import Any

import click

from calico.ctl.context import CtlContext, CtlError, reported, resolve_kind
from calico.datastore.client import ResourceConflict
from calico.model.base import DEFAULT_NAMESPACE, Resource
from calico.model.codec import parse_resource
from calico.model.errors import ResourceError
from calico.model.keys import ResourceKey

_IDENTITY = (("kind",), ("apiVersion",), ("metadata", "name"), ("metadata", "namespace"))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: `patch` applied to `target` (neither is modified)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def parse_patch(text: str) -> dict[str, Any]:
    try:
        patch = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CtlError(f"patch is not valid JSON: {exc}") from None
    if not isinstance(patch, dict):
        raise CtlError("patch must be a JSON object, e.g. '{\"spec\": {...}}'")
    return patch


def patched(current: Resource, patch: dict[str, Any]) -> Resource:
    """The validated result of patching `current`; ResourceError naming the field if not."""
    before = current.to_dict()
    after = merge_patch(before, patch)
    for path in _IDENTITY:
        if _dig(after, path) != _dig(before, path):
            field = ".".join(path)
            raise ResourceError(current.display_name(), [(field, "cannot be changed by a patch")])
    pinned = _dig(patch, ("metadata", "resourceVersion"))
    if pinned is not None and str(pinned) != current.metadata.resourceVersion:
        key = ResourceKey(type(current), current.name, current.namespace)
        raise ResourceConflict(key, str(pinned))
    return parse_resource(after)


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data


@click.command()
@click.argument("kind")
@click.argument("name")
@click.option("-p", "--patch", "patch_text", required=True, help="JSON to merge into it.")
@click.option(
    "-t",
    "--type",
    "patch_type",
    type=click.Choice(["strategic", "merge", "json"]),
    default="strategic",
    show_default=True,
    help="Patch format: strategic and merge both merge (RFC 7386); json is not implemented.",
)
@click.option(
    "-n", "--namespace", default=None, help="Namespace of a namespaced resource (default: default)."
)
@click.pass_obj
def patch(
    ctx: CtlContext, kind: str, name: str, patch_text: str, patch_type: str, namespace: str | None
) -> None:
    """Change fields of one resource in place."""
    cls = resolve_kind(kind)
    if patch_type == "json":
        raise CtlError("--type json (RFC 6902 JSON Patch) is not implemented: use strategic")
    body = parse_patch(patch_text)
    ns = (namespace or DEFAULT_NAMESPACE) if cls.NAMESPACED else None
    client = ctx.client()
    try:
        with reported():
            client.update(cls, name, ns, lambda current: patched(current, body))
    except CtlError as exc:
        raise CtlError(f"Failed to patch '{cls.KIND}' resource: {exc.message}") from None
    click.echo(f"Successfully patched 1 '{cls.KIND}' resource")

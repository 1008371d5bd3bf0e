"""calicoctl label KIND NAME key=value [--overwrite] | key --remove."""

from __future__ import annotations

import click

from calico.ctl.context import CtlContext, CtlError, reported, resolve_kind
from calico.model.base import DEFAULT_NAMESPACE, Resource
from calico.model.fields import check_label_value, check_qualified_name


def _parse(label: str, remove: bool) -> tuple[str, str | None]:
    key, eq, value = label.partition("=")
    if remove and eq:
        raise CtlError("--remove takes a label key, not key=value")
    if not remove and not eq:
        raise CtlError(f"invalid label {label!r}: expected key=value")
    problem = check_qualified_name(key) or (check_label_value(value) if eq else None)
    if problem:
        raise CtlError(problem)
    return key, (value if eq else None)


@click.command()
@click.argument("kind")
@click.argument("name")
@click.argument("label")
@click.option("-n", "--namespace", default=None, help="Namespace of a namespaced resource.")
@click.option("--overwrite", is_flag=True, help="Replace the value of an existing label.")
@click.option("--remove", is_flag=True, help="Remove the label key.")
@click.pass_obj
def label(
    ctx: CtlContext,
    kind: str,
    name: str,
    label: str,
    namespace: str | None,
    overwrite: bool,
    remove: bool,
) -> None:
    """Add, change or remove a label on a resource."""
    cls = resolve_kind(kind)
    key, value = _parse(label, remove)
    ns = (namespace or DEFAULT_NAMESPACE) if cls.NAMESPACED else None

    def relabelled(resource: Resource) -> Resource:
        labels = dict(resource.metadata.labels or {})
        if remove:
            if key not in labels:
                raise CtlError(f"{resource.display_name()} has no label {key!r}")
            del labels[key]
        elif key in labels and labels[key] != value and not overwrite:
            raise CtlError(
                f"{resource.display_name()} already has label {key}={labels[key]} (use --overwrite)"
            )
        else:
            labels[key] = value or ""
        data = resource.to_dict()
        data["metadata"]["labels"] = labels or None
        return cls.model_validate(data)

    with reported():
        ctx.client().update(cls, name, ns, relabelled)
    click.echo(
        f"Successfully {'removed label from' if remove else 'set label on'} {cls.KIND} {name!r}"
    )

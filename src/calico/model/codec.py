"""Manifests in and out: YAML/JSON text <-> validated resources.

Input may be JSON, one YAML document, several (`---`), or a `kind: List` / `kind: <Kind>List`
wrapper. YAML is read with Go's resolution rules rather than PyYAML's YAML 1.1 extras, so
`ports: [80:90]` stays the string "80:90" (not the base-60 integer 4890) and timestamps stay
strings, exactly as calicoctl reads them. Every document is validated before the caller gets
anything, so a caller can refuse a whole file on the first bad resource.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from calico.model.base import API_VERSION, Resource
from calico.model.errors import ResourceError, from_validation_error, show_value

if TYPE_CHECKING:
    import yaml

R = TypeVar("R", bound=Resource)

# PyYAML and the registry of every kind are imported on first use: a CNI plugin validates a few
# known kinds from JSON and would pay ~30 ms for them (`bench/cni_exec.py`).


@functools.cache
def _go_like_loader() -> type[yaml.SafeLoader]:
    """SafeLoader without sexagesimal numbers and timestamps (Go's YAML has neither)."""
    import yaml

    class GoLikeLoader(yaml.SafeLoader):
        pass

    GoLikeLoader.yaml_implicit_resolvers = {
        first: [
            (tag, rx) for tag, rx in resolvers if not tag.endswith((":int", ":float", ":timestamp"))
        ]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    GoLikeLoader.add_implicit_resolver(
        "tag:yaml.org,2002:int",
        re.compile(r"^[-+]?(0|[1-9][0-9_]*|0x[0-9a-fA-F_]+|0o?[0-7_]+|0b[01_]+)$"),
        list("-+0123456789"),
    )
    GoLikeLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            # A digit on either side of the point: a bare "." or "-._" is a string, not float("").
            r"^[-+]?([0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)([eE][-+]?[0-9]+)?$"
            r"|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$"
        ),
        list("-+0123456789."),
    )
    return GoLikeLoader


def load_documents(text: str, source: str = "input") -> list[dict[str, Any]]:
    """Split text into raw resource mappings, unwrapping List kinds."""
    import yaml

    try:
        docs = list(yaml.load_all(text, Loader=_go_like_loader()))
    except yaml.YAMLError as exc:
        raise ResourceError(source, [("", f"cannot parse YAML/JSON: {_one_line(exc)}")]) from None
    except RecursionError:  # the loader recurses once per level of nesting
        raise ResourceError(source, [("", "cannot parse YAML/JSON: nested too deeply")]) from None
    try:
        docs = join_surrogates(docs)
    except ValueError as exc:
        raise ResourceError(source, [("", f"cannot parse YAML/JSON: {exc}")]) from None
    out: list[dict[str, Any]] = []
    for index, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ResourceError(
                f"{source} document {index}",
                [("", "expected a mapping with apiVersion, kind, metadata and spec")],
            )
        kind = doc.get("kind")
        if isinstance(kind, str) and (kind == "List" or kind.endswith("List")):
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise ResourceError(f"{source} document {index}", [("items", "expected a list")])
            out.extend(
                _as_mapping(item, f"{source} document {index} item {i}")
                for i, item in enumerate(items)
            )
        else:
            out.append(doc)
    return out


_SURROGATE = re.compile("[\ud800-\udfff]")


def join_surrogates(value: Any) -> Any:
    """Strings with YAML's \\u escapes read as the text they spell.

    PyYAML reads each \\uXXXX as one UTF-16 unit, so a JSON-escaped emoji (\\ud83d\\ude00)
    becomes two surrogates that no encoder (nor pydantic) accepts. Pairs are joined; a lone
    surrogate is a ValueError."""
    if isinstance(value, str):
        if not _SURROGATE.search(value):
            return value
        try:
            return value.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            raise ValueError(
                f"{show_value(value)}: a \\u escape is half a surrogate pair"
            ) from None
    if isinstance(value, list):
        return [join_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {join_surrogates(k): join_surrogates(v) for k, v in value.items()}
    return value


def _as_mapping(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ResourceError(where, [("", "expected a mapping")])
    return item


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def describe_raw(data: Mapping[str, Any]) -> str:
    """Name a raw (possibly invalid) resource for error messages: Kind "ns/name"."""
    kind = data.get("kind") if isinstance(data.get("kind"), str) else "resource"
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    name = meta.get("name") if isinstance(meta.get("name"), str) else "<no name>"
    ns = meta.get("namespace")
    return f'{kind} "{ns}/{name}"' if isinstance(ns, str) and ns else f'{kind} "{name}"'


def parse_resource(data: Mapping[str, Any], default_namespace: str | None = None) -> Resource:
    """Validate one raw mapping into its resource class (defaults applied)."""
    from calico.model.registry import KINDS

    kind = data.get("kind")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        if not isinstance(kind, str) or not kind:
            raise ResourceError(describe_raw(data), [("kind", "required field is missing")])
        raise ResourceError(
            describe_raw(data),
            [("kind", f"{kind!r} is not a supported kind ({', '.join(KINDS)})")],
        )
    return parse_as(cls, data, default_namespace)


def parse_as(cls: type[R], data: Mapping[str, Any], default_namespace: str | None = None) -> R:
    """Validate one raw mapping that must be of kind `cls` (what `parse_resource` does once it
    knows the class; callers that know it need not load the other kinds)."""
    where = describe_raw(data)
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ResourceError(where, [("kind", "required field is missing")])
    if kind != cls.KIND:
        raise ResourceError(where, [("kind", f"{kind!r} does not match resource type {cls.KIND}")])
    if data.get("apiVersion") != API_VERSION:
        got = data.get("apiVersion")
        raise ResourceError(where, [("apiVersion", f"{got!r} is not supported: use {API_VERSION}")])
    if default_namespace and cls.NAMESPACED:
        data = _with_namespace(data, default_namespace)
    try:
        return cls.model_validate(dict(data))
    except ValidationError as exc:
        raise from_validation_error(where, exc) from None


def _with_namespace(data: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    meta = data.get("metadata")
    if isinstance(meta, dict) and not meta.get("namespace"):
        return {**data, "metadata": {**meta, "namespace": namespace}}
    return dict(data)


def parse_manifest(
    text: str, source: str = "input", default_namespace: str | None = None
) -> list[Resource]:
    """All resources in a manifest, or ResourceError for the first invalid one."""
    return [parse_resource(doc, default_namespace) for doc in load_documents(text, source)]


def to_yaml(data: Any) -> str:
    """YAML as calicoctl prints it: keys sorted, block style."""
    import yaml

    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False, allow_unicode=True)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"


def list_document(kind: str, resources: Iterable[Resource], revision: str = "") -> dict[str, Any]:
    """The `<Kind>List` wrapper calicoctl prints for several resources."""
    return {
        "apiVersion": API_VERSION,
        "kind": f"{kind}List",
        "items": [r.to_dict() for r in resources],
        "metadata": {"resourceVersion": revision} if revision else {},
    }

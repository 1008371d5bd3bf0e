"""Validation errors that name the resource, the field path and the reason.

Pydantic reports errors as (loc, type, ctx); operators want one readable line such as
`GlobalNetworkPolicy "deny-db": spec.ingress[0].destination.ports[1]: "80:70" is not a valid
port range`. This module owns that translation so every entry point prints the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pydantic only for annotations: catching ResourceError needs no models
    from pydantic import ValidationError
    from pydantic_core import ErrorDetails


class FieldError(ValueError):
    """A cross-field check that blames a sub-field of the model that raised it.

    `subpath` (e.g. "destination.ports") is appended to the location pydantic reports, so
    a rule-level check can still point at the exact field.
    """

    def __init__(self, subpath: str, message: str) -> None:
        super().__init__(message)
        self.subpath = subpath


class ResourceError(ValueError):
    """One or more problems with a resource (or document), each a (path, reason) pair."""

    def __init__(self, resource: str, problems: Sequence[tuple[str, str]]) -> None:
        self.resource = resource
        self.problems = list(problems)
        super().__init__(self.one_line())

    def one_line(self, limit: int = 3) -> str:
        parts = [f"{path}: {reason}" if path else reason for path, reason in self.problems]
        shown = "; ".join(parts[:limit])
        if len(parts) > limit:
            shown += f"; and {len(parts) - limit} more"
        return f"{self.resource}: {shown}" if self.resource else shown


def format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def show_value(value: Any) -> str:
    """Render an offending input compactly, JSON-style (strings quoted)."""
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean (true or false)",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def describe(err: ErrorDetails) -> tuple[str, str]:
    """Turn one pydantic error into (field path, reason)."""
    loc = list(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, FieldError):
        loc.extend(int(p) if p.isdigit() else p for p in cause.subpath.split("."))
    path = format_loc(loc)
    if kind == "value_error" and cause is not None:
        return path, str(cause)
    if kind == "extra_forbidden":
        return path, "unknown field"
    if kind == "missing":
        return path, "required field is missing"
    if kind in _TYPE_NAMES:
        return path, f"expected {_TYPE_NAMES[kind]}, got {show_value(err['input'])}"
    if kind == "literal_error":
        return path, f"{show_value(err['input'])} is not one of {ctx.get('expected', '')}"
    return path, f"{show_value(err['input'])}: {err['msg']}"


def from_validation_error(resource: str, exc: ValidationError) -> ResourceError:
    return ResourceError(resource, [describe(e) for e in exc.errors()])

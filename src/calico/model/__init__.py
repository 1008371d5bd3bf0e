"""The projectcalico.org/v3 resource model: pure validation, defaulting and codecs.

The names below are loaded on first use (PEP 562), so importing one light submodule (e.g.
`calico.model.names` or `calico.model.errors` in a CNI plugin answering VERSION) does not
build every resource class.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from calico.model.base import API_VERSION, Resource
    from calico.model.codec import load_documents, parse_manifest, parse_resource
    from calico.model.errors import ResourceError
    from calico.model.registry import KINDS, kind_for

_SOURCES = {
    "API_VERSION": "calico.model.base",
    "Resource": "calico.model.base",
    "load_documents": "calico.model.codec",
    "parse_manifest": "calico.model.codec",
    "parse_resource": "calico.model.codec",
    "ResourceError": "calico.model.errors",
    "KINDS": "calico.model.registry",
    "kind_for": "calico.model.registry",
}

__all__ = [
    "API_VERSION",
    "KINDS",
    "Resource",
    "ResourceError",
    "kind_for",
    "load_documents",
    "parse_manifest",
    "parse_resource",
]


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value
    return value

"""The projectcalico.org/v3 resource model: pure validation, defaulting and codecs."""

from calico.model.base import API_VERSION, Resource
from calico.model.codec import load_documents, parse_manifest, parse_resource
from calico.model.errors import ResourceError
from calico.model.registry import KINDS, kind_for

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

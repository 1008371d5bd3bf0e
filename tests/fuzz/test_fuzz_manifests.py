"""Manifests (calicoctl's files, parse_manifest): any text or document is either resources or
a ResourceError naming the document and field, never another exception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from _fuzz import as_text, clean, deep_text, fuzz, json_values, mutated
from hypothesis import given
from hypothesis import strategies as st

from calico.model import ResourceError
from calico.model.codec import parse_manifest

EXAMPLES = Path(__file__).parents[2] / "examples"
VALID: list[dict[str, Any]] = [
    doc
    for path in sorted(EXAMPLES.glob("*.yaml"))
    for doc in yaml.safe_load_all(path.read_text())
    if doc
]

YAML_OPENERS = ["{a: ", '{"a": ', "- "]


def _check(text: str) -> None:
    exc = clean(lambda: parse_manifest(text, "fuzz.yaml"), ResourceError)
    if exc is not None:
        assert exc.problems and exc.resource, exc


@fuzz
@given(st.sampled_from(VALID).flatmap(mutated), st.sampled_from(["json", "yaml"]))
def test_near_valid_documents(doc: Any, style: str) -> None:
    _check(as_text(doc, style))


@fuzz
@given(st.lists(st.sampled_from(VALID).flatmap(mutated), min_size=1, max_size=3))
def test_multi_document_files(docs: list[Any]) -> None:
    _check(yaml.safe_dump_all(docs, allow_unicode=True))


@fuzz
@given(
    st.one_of(st.text(), deep_text(YAML_OPENERS), json_values().map(lambda v: as_text(v, "yaml")))
)
def test_arbitrary_text(text: str) -> None:
    _check(text)

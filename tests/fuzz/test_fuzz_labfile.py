"""Lab files: any text is a LabSpec or a LabFileError naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from _fuzz import as_text, clean, deep_text, fuzz, json_values, mutated
from hypothesis import given
from hypothesis import strategies as st

from calico.lab.labfile import LabFileError, load_lab

LABS = Path(__file__).parents[2] / "examples" / "lab"
# policy.yaml there is a manifest (several documents), not a lab file.
VALID: list[Any] = [
    yaml.safe_load(p.read_text()) for p in sorted(LABS.glob("*.yaml")) if p.name != "policy.yaml"
]

YAML_OPENERS = ["{a: ", '{"a": ', "- "]


def _check(text: str) -> None:
    exc = clean(lambda: load_lab(text, "fuzz.yaml", LABS), LabFileError)
    if exc is not None:
        assert str(exc).startswith("fuzz.yaml: "), exc


@fuzz
@given(st.sampled_from(VALID).flatmap(mutated))
def test_near_valid_lab_files(doc: Any) -> None:
    _check(as_text(doc, "yaml"))


@fuzz
@given(
    st.one_of(st.text(), deep_text(YAML_OPENERS), json_values().map(lambda v: as_text(v, "yaml")))
)
def test_arbitrary_text(text: str) -> None:
    _check(text)

"""Generated document sections: each script rewrites its own, never another's."""

from __future__ import annotations

from pathlib import Path

from calico.testing.doc_sections import write_section


def test_sections_are_replaced_in_place_and_appended_when_new(tmp_path: Path) -> None:
    doc = tmp_path / "reliability.md"
    write_section(doc, "a", "first")
    write_section(doc, "b", "second")
    write_section(doc, "a", "first, again")
    assert doc.read_text() == (
        "# Reliability\n\n<!-- BEGIN a -->\nfirst, again\n<!-- END a -->\n\n"
        "<!-- BEGIN b -->\nsecond\n<!-- END b -->\n"
    )

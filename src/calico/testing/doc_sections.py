"""Sections of a generated Markdown document, each written by its own script (pure text in,
one file out): a section sits between `<!-- BEGIN <name> -->` and `<!-- END <name> -->`, so
scripts that share a document (docs/reliability.md) never overwrite each other's figures."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from pathlib import Path


def run_stamp() -> tuple[str, str]:
    """(when, machine) a figure was measured: the UTC minute, and this machine's name,
    architecture and kernel."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return when, f"{platform.node()}, {platform.machine()}, {platform.release()}"


def write_section(doc: Path, name: str, text: str, title: str = "# Reliability") -> None:
    """Replace the section `name` of `doc` with `text`, or append it (creating the document
    with `title` if it does not exist)."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    old = doc.read_text() if doc.exists() else f"{title}\n"
    section = f"{begin}\n{text}\n{end}"
    if begin in old and end in old:
        new = old[: old.index(begin)] + section + old[old.index(end) + len(end) :]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(new)

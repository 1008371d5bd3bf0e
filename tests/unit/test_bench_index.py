"""Every benchmark script is in bench/README.md's table and has a smoke test that loads it
(through the `bench_script` fixture), so none can rot unseen."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _scripts() -> list[str]:
    """The runnable ones (a module of helpers they share is not a benchmark)."""
    return sorted(
        p.stem
        for p in (ROOT / "bench").glob("*.py")
        if 'if __name__ == "__main__":' in p.read_text()
    )


def test_every_bench_script_is_in_the_readme_table() -> None:
    readme = (ROOT / "bench" / "README.md").read_text()
    listed = set(re.findall(r"`bench/(\w+)\.py", readme))
    assert _scripts(), "no bench scripts found"
    assert sorted(set(_scripts()) - listed) == []
    assert sorted(listed - set(_scripts())) == []  # no row for a script that is gone


def test_every_bench_script_has_a_smoke_test() -> None:
    loaded: set[str] = set()
    for test in (ROOT / "tests").rglob("*.py"):
        loaded |= set(re.findall(r"bench_script\(\"(\w+)\"\)", test.read_text()))
    assert sorted(set(_scripts()) - loaded) == []

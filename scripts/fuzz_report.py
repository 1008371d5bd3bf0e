#!/usr/bin/env python3
"""Run the fuzz tests' full profile and write their figures into docs/reliability.md.

    .venv/bin/python scripts/fuzz_report.py [pytest args; test files, default tests/fuzz]

Runs tests/fuzz with CALICO_FUZZ=full (10,000 examples per property; 200 for the calicoctl
property that writes to etcd) in this process, counting the cases each property really ran
(hypothesis' examples, less those it discarded by `assume`) and its duration, then replaces
the section between `<!-- BEGIN fuzz -->` and `<!-- END fuzz -->` of docs/reliability.md
(creating the file, or the section, when missing). The section is rewritten after every
property, so an interrupted run still records what it finished (the rest say "not run"); rows
of properties this run did not select are kept with the date they were measured.
Exits non-zero if any property failed.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis.errors import UnsatisfiedAssumption

from calico.testing.doc_sections import write_section

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- BEGIN fuzz -->", "<!-- END fuzz -->"
HEADER = """# Reliability and security figures

Each section below is produced by a script (named in the section) between its own
`<!-- BEGIN name -->` / `<!-- END name -->` markers; rerun the script to refresh it rather
than editing by hand. Every figure comes with its goal, the date and the machine it was
measured on.
"""
GOAL = {"test_fuzz_calicoctl_etcd.py": 200}  # writes to etcd: fewer, slower cases
DEFAULT_GOAL = 10_000


@dataclass
class Row:
    nodeid: str
    cases: int = 0
    seconds: float = 0.0
    outcome: str = "not run"
    prop: bool = True  # a hypothesis property (else a plain test: no case count)


class CaseCounter:
    """Counts each property's executed examples by wrapping hypothesis' inner test."""

    def __init__(self, on_row: Any) -> None:
        self.rows: dict[str, Row] = {}
        self.on_row = on_row  # called with the rows after each property

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            prop = hasattr(getattr(item, "obj", None), "hypothesis")
            self.rows.setdefault(item.nodeid, Row(item.nodeid, prop=prop))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        row = self.rows.setdefault(item.nodeid, Row(item.nodeid))
        handle = getattr(getattr(item, "obj", None), "hypothesis", None)
        if handle is not None:
            inner = handle.inner_test

            def counted(*args: Any, **kwargs: Any) -> Any:
                try:
                    result = inner(*args, **kwargs)
                except UnsatisfiedAssumption:
                    raise
                except BaseException:
                    row.cases += 1
                    raise
                row.cases += 1
                return result

            handle.inner_test = counted
        yield
        if handle is not None:
            handle.inner_test = inner

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        row = self.rows.setdefault(report.nodeid, Row(report.nodeid))
        if report.when == "call" or (report.when == "setup" and not report.passed):
            row.seconds += report.duration
            row.outcome = report.outcome
        if report.when == "teardown":
            self.on_row(list(self.rows.values()))


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.node()}, {model or platform.machine()} x {os.cpu_count()}, "
        f"Python {platform.python_version()}, hypothesis {hypothesis.__version__}, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )


def section(rows: list[Row], started: str, total: float) -> str:
    lines = [
        "## Fuzzing: every entry point that parses input",
        "",
        "Produced by `scripts/fuzz_report.py` (tests/fuzz, hypothesis profile `fuzz-full`,",
        "randomized). A case passes when the entry point returns a value or raises its own",
        "error type with a message (for calicoctl: exit 1, one clean line, etcd's revision",
        "unchanged). `make test` runs the same properties derandomized, 300 cases each (20",
        "for calicoctl).",
        "",
        f"Date: {started}; machine: {machine()}; total {total:.0f} s.",
        "",
        "| test | cases | goal | seconds | result | measured |",
        "|---|---:|---:|---:|---|---|",
    ]
    run = {f"`{r.nodeid.removeprefix('tests/fuzz/')}`" for r in rows}
    lines += [line for line in _earlier_rows(started) if line.split(" | ")[0][2:] not in run]
    for row in rows:
        goal = GOAL.get(row.nodeid.split("::")[0].rsplit("/", 1)[-1], DEFAULT_GOAL)
        if not row.prop:
            goal = 0
        result = row.outcome if row.outcome != "passed" else "ok"
        if row.outcome == "passed" and row.cases < goal:
            result = "below goal"
        cases, target = (f"{row.cases:,}", f"≥ {goal:,}") if row.prop else ("-", "(control)")
        name = row.nodeid.removeprefix("tests/fuzz/")
        lines.append(
            f"| `{name}` | {cases} | {target} | {row.seconds:.1f} | {result} | {started} |"
        )
    return "\n".join(lines)


def _earlier_rows(started: str) -> list[str]:
    """The table rows of the section as it stands, each with the date it was measured."""
    doc = DOC.read_text() if DOC.exists() else ""
    if BEGIN not in doc or END not in doc:
        return []
    old = doc.split(BEGIN, 1)[1].split(END, 1)[0]
    date = next((ln[6:].split(";")[0] for ln in old.splitlines() if ln.startswith("Date: ")), "")
    rows = [ln for ln in old.splitlines() if ln.startswith("| `") and "| not run |" not in ln]
    dated = [ln if ln.count(" | ") >= 5 else f"{ln} {date} |" for ln in rows]
    return [ln for ln in dated if not ln.endswith(f" {started} |")]  # this run's own rows


def main(argv: list[str]) -> int:
    os.environ["CALICO_FUZZ"] = "full"
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.monotonic()

    def record(rows: list[Row]) -> None:
        write_section(DOC, "fuzz", section(rows, started, time.monotonic() - t0), HEADER)

    counter = CaseCounter(record)
    paths = [] if any(not a.startswith("-") for a in argv) else [str(ROOT / "tests" / "fuzz")]
    code = pytest.main(["-q", "-p", "no:cacheprovider", *paths, *argv], plugins=[counter])
    record(list(counter.rows.values()))
    print(f"wrote {DOC.relative_to(ROOT)} ({len(counter.rows)} properties)")
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

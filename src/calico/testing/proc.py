"""CPU time of a process or thread from /proc, for benchmarks and fault scripts."""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu(stat: str | Path) -> tuple[float, float]:
    """(own, waited-for children) CPU seconds of a process or thread, from its
    /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat."""
    fields = Path(stat).read_text().rpartition(")")[2].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS

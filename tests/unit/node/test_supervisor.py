"""The node's supervisor: restarting a child that exits, after its backoff delay."""

from __future__ import annotations

import sys
from pathlib import Path

from calico.backoff import Backoff
from calico.node.supervisor import Child, ChildSpec
from calico.testing.clock import ManualClock


def spec(tmp_path: Path, code: str, **kwargs: object) -> ChildSpec:
    return ChildSpec("child", [sys.executable, "-c", code], {}, tmp_path / "child.log",
                     **kwargs)  # type: ignore[arg-type]  # fmt: skip


def test_exited_child_is_restarted_after_its_backoff_delay(tmp_path: Path) -> None:
    clock = ManualClock(100.0)
    child = Child(spec(tmp_path, "print('hi')", pid_file=tmp_path / "child.pid"),
                  Backoff(initial=1.0, maximum=30.0), clock)  # fmt: skip
    child.start()
    assert child.proc is not None
    first = child.proc.pid
    assert (tmp_path / "child.pid").read_text().strip() == str(first)
    child.proc.wait()
    child.poll()  # notices the exit: restart in 1 s
    assert child.proc is None and child.restarts == 0
    clock.now += 0.9
    child.poll()
    assert child.proc is None
    clock.now += 0.2
    child.poll()
    assert child.proc is not None and child.restarts == 1 and child.proc.pid != first
    child.proc.wait()
    child.stop()
    assert not (tmp_path / "child.pid").exists()
    assert (tmp_path / "child.log").read_text().count("hi") == 2


def test_failing_prepare_counts_as_a_crash(tmp_path: Path) -> None:
    calls = []

    def prepare() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("no config yet")

    clock = ManualClock(100.0)
    child = Child(spec(tmp_path, "import time; time.sleep(30)", prepare=prepare),
                  Backoff(initial=2.0, maximum=30.0), clock)  # fmt: skip
    child.start()
    assert child.proc is None
    clock.now += 2.0
    child.poll()
    assert child.proc is not None and len(calls) == 2
    child.stop(timeout=5)
    assert child.proc is None


def test_args_are_decided_at_each_start(tmp_path: Path) -> None:
    calls: list[int] = []

    def args() -> list[str]:
        calls.append(1)
        return [f"start-{len(calls)}"]

    code = "import sys; print(sys.argv[1])"
    child = Child(spec(tmp_path, code, args=args), Backoff(initial=0.0, maximum=0.0))
    for _ in range(2):
        child.start()
        assert child.proc is not None
        child.proc.wait()
    child.stop()
    assert (tmp_path / "child.log").read_text().split() == ["start-1", "start-2"]

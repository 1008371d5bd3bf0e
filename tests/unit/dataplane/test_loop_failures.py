"""A failed apply is retried; a failed command is logged in one line (its own message), any
other error with its traceback. Applies are paced by the last apply's time."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from calico.dataplane.drivers.links import SysctlWriteFailed
from calico.dataplane.loop import DataplaneSettings, InternalDataplane
from calico.programs import CommandFailed, CommandResult
from calico.rules.config import RulesConfig


class BreakingRunner:
    """Answers every command with empty output until told to fail."""

    def __init__(self) -> None:
        self.failure: Exception | None = None

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        if self.failure is not None:
            raise self.failure
        return CommandResult(0, "", "")


def _no_netlink() -> Any:
    raise OSError("no netlink in unit tests")


def dataplane(runner: BreakingRunner) -> InternalDataplane:
    return InternalDataplane(DataplaneSettings(rules=RulesConfig()), runner, _no_netlink)


def test_a_failed_command_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    runner = BreakingRunner()
    dp = dataplane(runner)
    runner.failure = CommandFailed(["ip", "-batch", "-"], 1, "", 'Cannot find device "cali1"')
    with caplog.at_level(logging.WARNING, "calico.dataplane.loop"):
        assert dp._apply_once() is False
    [record] = [r for r in caplog.records if "apply failed" in r.getMessage()]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert 'Cannot find device "cali1"' in record.getMessage()


class VanishedSysctls:
    """Sysctl files of an interface that is gone."""

    def read(self, names: Sequence[str]) -> dict[str, str]:
        return {}

    def write(self, values: Mapping[str, str]) -> None:
        raise SysctlWriteFailed("sysctl writes failed: net.ipv4.conf.cali1.proxy_arp=1: gone")


def test_a_failed_sysctl_write_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    dp = InternalDataplane(
        DataplaneSettings(rules=RulesConfig()),
        BreakingRunner(),
        _no_netlink,
        sysctls=VanishedSysctls(),
    )
    with caplog.at_level(logging.WARNING, "calico.dataplane.loop"):
        assert dp._apply_once() is False
    [record] = [r for r in caplog.records if "apply failed" in r.getMessage()]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "net.ipv4.conf.cali1.proxy_arp=1: gone" in record.getMessage()


def test_any_other_error_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    runner = BreakingRunner()
    dp = dataplane(runner)
    runner.failure = RuntimeError("a bug")
    with caplog.at_level(logging.WARNING, "calico.dataplane.loop"):
        assert dp._apply_once() is False
    [record] = [r for r in caplog.records if "apply failed" in r.getMessage()]
    assert record.levelno == logging.ERROR and record.exc_info is not None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("took", "hold"), [(0.05, 0.15), (0.5, 0.25)])
def test_applies_are_paced_by_the_last_apply_time(
    monkeypatch: pytest.MonkeyPatch, took: float, hold: float
) -> None:
    """After an apply of `took` s the next waits min(3 x took, 0.25 s) after its end."""
    clock = FakeClock()
    dp = InternalDataplane(
        DataplaneSettings(rules=RulesConfig()), BreakingRunner(), _no_netlink, clock=clock
    )
    dp._in_sync = dp._ifaces_in_sync = True
    applied: list[float] = []

    def write_kernel() -> None:
        applied.append(clock.now)
        clock.now += took

    monkeypatch.setattr(dp, "write_kernel", write_kernel)
    dp._maybe_apply()  # the first change: at once
    assert applied == [1000.0]
    dp._dirty = True  # another change arrives as that apply ends
    dp._maybe_apply()
    assert len(applied) == 1 and dp._wait_time() == pytest.approx(hold)
    clock.now += hold
    dp._maybe_apply()
    assert applied[1] == pytest.approx(1000.0 + took + hold)


def test_the_loop_sleeps_until_both_syncs() -> None:
    """Dirty before the first InSync and interface dump: nothing can apply, so the loop waits
    for its queue rather than spinning on the hold-off (it would take the GIL from the calc
    graph and the syncer for the whole start-up)."""
    clock = FakeClock()
    dp = InternalDataplane(
        DataplaneSettings(rules=RulesConfig()), BreakingRunner(), _no_netlink, clock=clock
    )
    assert dp._dirty and dp._wait_time() >= 1.0
    dp._in_sync = dp._ifaces_in_sync = True
    assert dp._wait_time() == 0.0

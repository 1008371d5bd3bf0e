"""A failed apply is retried; a failed command is logged in one line (its own message), any
other error with its traceback."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest

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


def test_any_other_error_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    runner = BreakingRunner()
    dp = dataplane(runner)
    runner.failure = RuntimeError("a bug")
    with caplog.at_level(logging.WARNING, "calico.dataplane.loop"):
        assert dp._apply_once() is False
    [record] = [r for r in caplog.records if "apply failed" in r.getMessage()]
    assert record.levelno == logging.ERROR and record.exc_info is not None

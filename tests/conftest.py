"""Project-wide test policy.

Under CI=true every tier must run: a test may skip only because the machine lacks root
(reason starting "needs root"); any other skip (a missing etcd, bird, iptables...) is
turned into a failure so a half-provisioned CI machine cannot pass silently.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

ROOT_SKIP_PREFIX = "needs root"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or os.environ.get("CI") != "true" or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if reason.removeprefix("Skipped: ").startswith(ROOT_SKIP_PREFIX):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, which allows only root-related skips: {reason}"

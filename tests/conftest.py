"""Project-wide test policy.

Under CI=true every tier must run, so no skip is acceptable, whatever its reason (a missing
etcd or bird, the openstack extra not installed, no root): a skipped test is turned into a
failure, and so is a module or directory skipped while it is collected (a module-level
`pytest.importorskip`, in a test module or a conftest), which never reaches
pytest_runtest_makereport. Outside CI a skip stays a skip, so a developer without root or
Neutron can run what applies.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Generator
from pathlib import Path
from types import ModuleType

import pytest
from _pytest.reports import BaseReport


class NoSkipsUnderCi:
    """A plugin rather than hooks of this conftest: pytest leaves a conftest's hooks out for a
    directory whose own conftest skipped, so they would never see that directory's report."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, None, None]:
        outcome = yield
        report = outcome.get_result()
        if report.skipped and not hasattr(report, "wasxfail"):
            _fail(report)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, None, None]:
        outcome = yield
        report = outcome.get_result()
        if report.skipped:
            _fail(report)


def _fail(report: BaseReport) -> None:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, where every test must run: {reason}"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") == "true":
        config.pluginmanager.register(NoSkipsUnderCi(), "calico-no-skips-under-ci")


@pytest.fixture
def bench_script() -> Callable[[str], ModuleType]:
    """Imports a script of bench/ by name (bench/ is no package), for its smoke test."""

    def load(name: str) -> ModuleType:
        path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"calico_bench_{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while loading
        spec.loader.exec_module(module)
        return module

    return load

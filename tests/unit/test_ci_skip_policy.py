"""tests/conftest.py's policy, on a throwaway suite: under CI=true every kind of skip fails the
run (in a test, in a test module's collection, in a conftest's); without CI they stay skips."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from calico import programs

POLICY = Path(__file__).resolve().parents[1] / "conftest.py"
NEEDS = 'pytest.importorskip("no_such_module_xyz", reason="extra not installed")\n'


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    shutil.copy(POLICY, tmp_path / "conftest.py")
    (tmp_path / "test_runs.py").write_text("def test_ok():\n    pass\n")
    (tmp_path / "test_in_test.py").write_text(
        "import pytest\n\ndef test_root():\n    pytest.skip('needs root: namespaces')\n"
    )
    (tmp_path / "test_module_level.py").write_text(f"import pytest\n{NEEDS}\ndef test_x(): pass\n")
    (tmp_path / "tier").mkdir()
    (tmp_path / "tier" / "conftest.py").write_text(f"import pytest\n{NEEDS}")
    (tmp_path / "tier" / "test_tier.py").write_text("def test_y():\n    pass\n")
    return tmp_path


def _pytest(suite: Path, ci: bool) -> programs.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA"]
    return programs.run([*argv, "--continue-on-collection-errors", str(suite)], env=env, cwd=suite)


def test_every_kind_of_skip_fails_under_ci(suite: Path) -> None:
    proc = _pytest(suite, ci=True)
    assert proc.returncode != 0, proc.stdout
    assert proc.stdout.count("skipped under CI=true") >= 3, proc.stdout
    for where in ("test_in_test.py", "test_module_level.py", "tier"):
        assert any(where in ln and "skipped under CI" in ln for ln in proc.stdout.splitlines())
    assert "1 passed" in proc.stdout


def test_without_ci_skips_stay_skips(suite: Path) -> None:
    proc = _pytest(suite, ci=False)
    assert proc.returncode == 0, proc.stdout
    assert "1 passed, 3 skipped" in proc.stdout, proc.stdout

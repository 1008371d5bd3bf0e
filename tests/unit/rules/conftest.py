"""Golden-file helper for rule rendering: `UPDATE_GOLDEN=1` rewrites the expected files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "golden" / "rules"

CheckGolden = Callable[[str, str], None]


@pytest.fixture
def golden() -> CheckGolden:
    def check(name: str, text: str) -> None:
        path = GOLDEN_DIR / f"{name}.txt"
        if os.environ.get("UPDATE_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 and review it"
        assert text == path.read_text(), f"{path} differs: review, then UPDATE_GOLDEN=1"

    return check

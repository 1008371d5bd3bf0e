"""The CNI unit tests' harness fixture (fakes and the harness live in cni_harness.py)."""

from __future__ import annotations

import pytest
from cni_harness import Harness


@pytest.fixture
def harness() -> Harness:
    return Harness()

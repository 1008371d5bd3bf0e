"""Kernel-tier fixtures: fresh network namespaces per test (root only)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel


@pytest.fixture
def netns() -> Iterator[Namespaces]:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces")
    for tool in ("ip", "iptables-restore", "ipset"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (install iproute2, iptables, ipset)")
    with Namespaces() as namespaces:
        yield namespaces

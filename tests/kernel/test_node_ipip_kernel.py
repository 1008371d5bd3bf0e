"""The IPIP probe on this kernel, inside a test namespace: no ipip module here, so it says
False and leaves no link behind (the True branch is a unit test)."""

from __future__ import annotations

import json
import sys

import pytest

from calico.node.ipip import SYS_MODULE
from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel
PROBE = "from calico.node.ipip import ipip_available; print(ipip_available())"


def test_probe_says_no_ipip_on_this_kernel(netns: Namespaces) -> None:
    if SYS_MODULE.exists():
        pytest.fail("this machine's kernel has ipip: the environment notes say it has not")
    host = netns.add("ipip")
    assert netns.exec(host, [sys.executable, "-c", PROBE]).stdout.strip() == "False"
    links = json.loads(netns.exec(host, ["ip", "-j", "link", "show"]).stdout)
    assert [link["ifname"] for link in links] == ["lo"]

"""IPSets driver against the real `ipset` inside a test namespace."""

from __future__ import annotations

import pytest

from calico.calc.messages import IPSetType
from calico.dataplane.drivers.ipsets import IPSets, parse_ipset_save
from calico.programs import Runner
from calico.testing.netns import Namespaces

pytestmark = pytest.mark.kernel


def members(runner: Runner, name: str) -> set[str]:
    return parse_ipset_save(runner.run(["ipset", "save", name]).stdout)[name].members


def names(runner: Runner) -> set[str]:
    return set(runner.run(["ipset", "list", "-n"]).stdout.split())


def test_create_delta_swap_delete_and_resync(netns: Namespaces) -> None:
    runner = Runner(netns=netns.add("s"))
    runner.run(["ipset", "create", "foreign", "hash:ip"])
    runner.run(["ipset", "add", "foreign", "198.18.7.7"])
    v4, v6 = IPSets(4, runner), IPSets(6, runner)
    mixed = ["198.18.0.1/32", "198.18.2.0/24", "2001:db8::1/128", "2001:db8:1::/64"]
    for driver in (v4, v6):
        driver.set_members("s:web", IPSetType.NET, mixed)
        driver.set_members("n:http", IPSetType.IP_PORT, ["198.18.0.1,tcp:80", "2001:db8::1,tcp:80"])
        driver.apply_updates()
    assert members(runner, "cali40s:web") == {"198.18.0.1", "198.18.2.0/24"}
    assert members(runner, "cali60s:web") == {"2001:db8::1", "2001:db8:1::/64"}
    assert members(runner, "cali60n:http") == {"2001:db8::1,tcp:80"}

    v4.add_members("s:web", ["198.18.0.3/32"])
    v4.remove_members("s:web", ["198.18.2.0/24"])
    v4.apply_updates()
    assert members(runner, "cali40s:web") == {"198.18.0.1", "198.18.0.3"}

    v4.set_members("s:web", IPSetType.NET, [f"198.19.{n}.0/24" for n in range(50)])
    v4.apply_updates()  # a rewrite: through cali4ts:web and `ipset swap`
    assert len(members(runner, "cali40s:web")) == 50
    assert not any(n.startswith("cali4t") for n in names(runner))

    runner.run(["ipset", "del", "cali40s:web", "198.19.7.0/24"])
    runner.run(["ipset", "add", "cali40s:web", "203.0.113.0/24"])
    v4.resync()
    v4.apply_updates()
    assert members(runner, "cali40s:web") == {f"198.19.{n}.0/24" for n in range(50)}

    for driver in (v4, v6):
        driver.remove("s:web")
        driver.remove("n:http")
        driver.apply_updates()
        driver.apply_deletions()
    assert names(runner) == {"foreign"}
    assert members(runner, "foreign") == {"198.18.7.7"}


def test_sets_left_by_a_previous_run_are_repaired_or_swept(netns: Namespaces) -> None:
    runner = Runner(netns=netns.add("s"))
    runner.run(["ipset", "create", "cali40s:keep", "hash:net"])
    runner.run(["ipset", "add", "cali40s:keep", "198.18.0.9"])
    runner.run(["ipset", "create", "cali40s:old", "hash:net"])
    runner.run(["ipset", "create", "cali4ts:keep", "hash:net"])
    runner.run(["ipset", "create", "cali60s:other-family", "hash:net", "family", "inet6"])
    v4 = IPSets(4, runner)
    v4.set_members("s:keep", IPSetType.NET, ["198.18.0.1/32"])
    v4.apply_updates()
    v4.apply_deletions()
    assert names(runner) == {"cali40s:keep", "cali60s:other-family"}
    assert members(runner, "cali40s:keep") == {"198.18.0.1"}

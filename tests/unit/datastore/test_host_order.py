"""The per-host order of the etcd endpoints: which member a host's components start on, and
where they go next; and that the long-lived components and the CNI plugin use it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from calico.cni.config import parse_netconf
from calico.cni.services import DefaultServices
from calico.datastore.config import EtcdConfig, host_order
from calico.felix.daemon import Felix
from calico.node.config import settings_from_env
from calico.node.daemon import NodeDaemon

MEMBERS = ("http://198.18.0.2:2379", "http://198.18.0.3:2379", "http://198.18.0.4:2379")
HOSTS = [f"node-{i}" for i in range(600)]


def test_the_order_is_a_fixed_function_of_host_and_endpoints() -> None:
    # Pinned: a new hash would move every host to another member on upgrade.
    assert host_order(MEMBERS, "node-0") == (MEMBERS[1], MEMBERS[0], MEMBERS[2])
    assert host_order(MEMBERS, "node-2") == (MEMBERS[0], MEMBERS[2], MEMBERS[1])
    assert host_order(MEMBERS, "node-4") == (MEMBERS[2], MEMBERS[0], MEMBERS[1])
    for host in HOSTS[:50]:
        order = host_order(MEMBERS, host)
        assert sorted(order) == sorted(MEMBERS)
        assert host_order(tuple(reversed(MEMBERS)), host) == order  # however it was written


def test_hosts_start_on_every_member_about_equally() -> None:
    firsts = Counter(host_order(MEMBERS, host)[0] for host in HOSTS)
    assert set(firsts) == set(MEMBERS)
    assert all(170 <= n <= 230 for n in firsts.values()), firsts  # 200 each if exact


def test_a_failed_members_hosts_move_to_all_the_others() -> None:
    on_first = [host_order(MEMBERS, h) for h in HOSTS if host_order(MEMBERS, h)[0] == MEMBERS[0]]
    seconds = Counter(order[1] for order in on_first)
    assert set(seconds) == {MEMBERS[1], MEMBERS[2]}
    assert all(n >= len(on_first) * 0.4 for n in seconds.values()), seconds


def test_a_new_member_takes_hosts_only_for_itself() -> None:
    added = (*MEMBERS, "http://198.18.0.5:2379")
    moved = [h for h in HOSTS if host_order(added, h)[0] != host_order(MEMBERS, h)[0]]
    assert {host_order(added, h)[0] for h in moved} == {added[-1]}
    assert 0.15 <= len(moved) / len(HOSTS) <= 0.35  # a quarter if exact


def test_for_host_only_reorders() -> None:
    config = EtcdConfig(endpoints=MEMBERS, ca_cert_file="/ca.pem", request_timeout=2.0)
    moved = config.for_host("node-0")
    assert moved.endpoints == host_order(MEMBERS, "node-0")
    assert (moved.ca_cert_file, moved.request_timeout) == ("/ca.pem", 2.0)
    one = EtcdConfig(endpoints=(MEMBERS[0],))
    assert one.for_host("node-0") == one


ENV = {"ETCD_ENDPOINTS": ",".join(MEMBERS), "NODENAME": "node-0"}


@pytest.mark.parametrize("host", ["node-0", "node-1"])
def test_felix_and_calico_node_start_on_their_hosts_member(host: str, tmp_path: Path) -> None:
    env = {**ENV, "NODENAME": host, "CALICO_RUN_DIR": str(tmp_path), "IP": "none"}
    felix = Felix(env)
    node = NodeDaemon(settings_from_env(env), env)
    try:
        for backend in (felix.backend, node.backend):
            assert backend._gateway.config.endpoints == host_order(MEMBERS, host)  # type: ignore[attr-defined]
    finally:
        felix.backend.close()
        node.backend.close()


def test_the_cni_plugin_starts_on_its_hosts_member() -> None:
    conf = parse_netconf(
        b'{"cniVersion": "0.3.1", "name": "k8s-pod-network", "type": "calico",'
        b' "nodename": "node-1", "ipam": {"type": "calico-ipam"}}'
    )
    services = DefaultServices(conf, {"ETCD_ENDPOINTS": ",".join(MEMBERS)})
    try:
        assert services.backend._gateway.config.endpoints == host_order(MEMBERS, "node-1")
    finally:
        services.backend.close()

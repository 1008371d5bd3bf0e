"""Garbage under every resource prefix (bad JSON, wrong kind, bad field, 1.4 MB): every
reader survives and names each bad key in one line; broken policies fail closed (real etcd).

The companion of test_refused_in_etcd.py (values calico-py refuses on purpose); the same
survey gives docs/reliability.md its figures (bench/faults_b.py).
"""

from __future__ import annotations

import pytest

from calico.bgp.agent import KINDS as BGP_KINDS
from calico.datastore.etcd import EtcdBackend
from calico.felix.daemon import WATCHED_KINDS
from calico.model.registry import KINDS
from calico.testing.etcd_server import EtcdServer
from calico.testing.garbage import FLAVOURS
from calico.testing.garbage_survey import survey

pytestmark = pytest.mark.integration


def test_every_reader_survives_garbage_and_reports_each_key_once(
    etcd_server: EtcdServer, backend: EtcdBackend
) -> None:
    result = survey(backend, etcd_server.endpoint)
    assert len(result.items) == len(KINDS) * len(FLAVOURS)
    readings = {r.component: r for r in result.readings}
    assert all(r.alive for r in result.readings), [r.error for r in result.readings]
    felix = readings["felix syncer + calc graph"]
    assert felix.keys_reported == len(WATCHED_KINDS) * len(FLAVOURS)
    assert felix.max_lines_per_key == 1
    bgp = readings["bgp agent"]  # its start-up render leaves the reporting to its watches
    assert bgp.keys_reported == len(BGP_KINDS) * len(FLAVOURS) and bgp.max_lines_per_key == 1
    assert readings["calicoctl get"].keys_reported == len(result.items)
    assert readings["calicoctl get"].max_lines_per_key == 1
    # A 1.4 MiB value is named, not echoed.
    assert max(r.longest_line for r in result.readings) < 1000
    assert result.fail_closed

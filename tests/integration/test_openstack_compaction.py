"""The leader's etcd compaction (networking-calico's schedule) against a real etcd: first check
records, a live trigger waits, an expired one compacts keeping the configured history."""

from __future__ import annotations

import pytest

from calico.datastore.api import WatchCompacted
from calico.datastore.etcd import EtcdBackend
from calico.openstack.compaction import LAST_KEY, TRIGGER_KEY, check_once, compaction_revision

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("current", "last_compaction", "last_check", "min_revisions", "expected"),
    [
        (500, 0, 400, 1000, None),  # fewer revisions than must be kept
        (3000, 0, 2900, 1000, 2000),  # keep min_revisions
        (3000, 0, 1500, 1000, 1500),  # keep the whole previous period
        (3000, 2000, 2900, 1000, None),  # already compacted there
        (3000, 1000, 2900, 1000, 2000),
    ],
)
def test_compaction_revision(
    current: int, last_compaction: int, last_check: int, min_revisions: int, expected: int | None
) -> None:
    assert compaction_revision(current, last_compaction, last_check, min_revisions) == expected


def test_schedule_against_etcd(backend: EtcdBackend) -> None:
    first = backend.put("/x/k", b"0")
    assert check_once(backend, 60, 5).startswith("first check")
    trigger = backend.get(TRIGGER_KEY)
    assert trigger is not None and trigger.lease  # expires after one period
    assert backend.get(LAST_KEY) is not None and backend.get(LAST_KEY).value == b"0"  # type: ignore[union-attr]
    assert check_once(backend, 60, 5) == "waiting for the period to pass"

    last_check = backend.get(LAST_KEY).mod_revision  # type: ignore[union-attr]
    for i in range(20):
        backend.put("/x/k", str(i).encode())
    backend.revoke_lease(trigger.lease)  # the period has passed
    current = backend.list("/calico/compaction/v1/").revision
    done = check_once(backend, 60, 5)
    expected = current - max(5, current - last_check)  # the whole period is kept
    assert done == f"compacted etcd at revision {expected} (current {current})"
    assert backend.get(LAST_KEY).value == str(expected).encode()  # type: ignore[union-attr]
    with pytest.raises(WatchCompacted) as info:
        for _ in backend.watch("/x/", first):
            pass
    assert info.value.compact_revision == expected
    assert check_once(backend, 60, 5) == "waiting for the period to pass"

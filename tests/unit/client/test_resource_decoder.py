"""ResourceDecoder: raw syncer updates -> typed resources; garbage is absent, never fatal."""

from __future__ import annotations

import json
from collections.abc import Sequence

from calico.datastore.api import SyncStatus, Update, UpdateKind
from calico.datastore.resource_syncer import ResourceDecoder, ResourceUpdate
from calico.model.keys import ResourceKey
from calico.model.network import IPPool

KEY = ResourceKey(IPPool, "p1").path


def pool_json(cidr: str = "198.19.0.0/16", name: str = "p1") -> bytes:
    doc = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr},
    }
    return json.dumps(doc).encode()


class Recorder:
    def __init__(self) -> None:
        self.updates: list[ResourceUpdate] = []
        self.statuses: list[SyncStatus] = []

    def on_status(self, status: SyncStatus) -> None:
        self.statuses.append(status)

    def on_resource_updates(self, updates: Sequence[ResourceUpdate]) -> None:
        self.updates.extend(updates)


def feed(*updates: Update) -> tuple[Recorder, list[tuple[str, str]]]:
    recorder, invalid = Recorder(), []
    decoder = ResourceDecoder(recorder, on_invalid=lambda key, why: invalid.append((key, why)))
    decoder.on_status(SyncStatus.IN_SYNC)
    for update in updates:
        decoder.on_updates([update])
    assert recorder.statuses == [SyncStatus.IN_SYNC]
    return recorder, invalid


def kinds(recorder: Recorder) -> list[UpdateKind]:
    return [u.kind for u in recorder.updates]


def test_valid_values_are_decoded_with_revision() -> None:
    recorder, invalid = feed(
        Update(UpdateKind.NEW, KEY, pool_json(), 5),
        Update(UpdateKind.UPDATED, KEY, pool_json("198.18.0.0/16"), 6),
        Update(UpdateKind.DELETED, KEY, None, 7),
    )
    assert kinds(recorder) == [UpdateKind.NEW, UpdateKind.UPDATED, UpdateKind.DELETED]
    first = recorder.updates[0].resource
    assert isinstance(first, IPPool) and first.metadata.resourceVersion == "5"
    assert first.spec.blockSize == 26
    assert invalid == []


def test_garbage_is_reported_and_skipped() -> None:
    recorder, invalid = feed(
        Update(UpdateKind.NEW, KEY, b"{not json", 5),
        Update(UpdateKind.NEW, "/calico/resources/v3/projectcalico.org/unknown/x", b"{}", 6),
        Update(UpdateKind.NEW, KEY.replace("p1", "p2"), pool_json(), 7),  # name/key mismatch
    )
    assert recorder.updates == []
    assert [key for key, _ in invalid] == [
        KEY,
        "/calico/resources/v3/projectcalico.org/unknown/x",
        KEY.replace("p1", "p2"),
    ]
    assert "invalid JSON" in invalid[0][1]


def test_a_value_turning_invalid_is_a_deletion_and_back_is_new() -> None:
    recorder, invalid = feed(
        Update(UpdateKind.NEW, KEY, pool_json(), 5),
        Update(UpdateKind.UPDATED, KEY, pool_json("not-a-cidr"), 6),
        Update(UpdateKind.DELETED, KEY, None, 7),  # consumer already treats it as absent
        Update(UpdateKind.NEW, KEY, pool_json(), 8),
    )
    assert kinds(recorder) == [UpdateKind.NEW, UpdateKind.DELETED, UpdateKind.NEW]
    assert len(invalid) == 1 and "spec.cidr" in invalid[0][1]


def test_salvage_replaces_an_invalid_value() -> None:
    from calico.model.policy import GlobalNetworkPolicy

    key = ResourceKey(GlobalNetworkPolicy, "broken").path
    stand_in = IPPool.model_validate(
        {"metadata": {"name": "p1"}, "spec": {"cidr": "198.19.0.0/16"}}
    )
    recorder = Recorder()
    reported: list[tuple[str, str]] = []
    decoder = ResourceDecoder(
        recorder,
        on_invalid=lambda k, r: reported.append((k, r)),
        salvage=lambda k, raw: (stand_in, "stand-in"),
    )
    decoder.on_updates([Update(UpdateKind.NEW, key, b"{broken", 3)])
    assert [(u.kind, u.resource) for u in recorder.updates] == [(UpdateKind.NEW, stand_in)]
    # One report for the key, saying both what is wrong and what is used instead.
    assert len(reported) == 1 and reported[0][0] == key
    assert "invalid JSON" in reported[0][1] and reported[0][1].endswith("; stand-in")

"""The nftables generation: read over netlink, and the rule for trusting a cached view of
the tables, which lets a periodic iptables refresh skip its re-read when nothing moved."""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from typing import Any

import pytest

from calico.calc.messages import InSync
from calico.dataplane.drivers.nft_generation import (
    NFNL_SUBSYS_NFTABLES,
    NFT_MSG_GETGEN,
    NFT_MSG_NEWGEN,
    GenerationTracker,
    NftGeneration,
)
from calico.dataplane.loop import DataplaneSettings, InternalDataplane, _IfacesInSync
from calico.programs import CommandResult
from calico.rules.config import RulesConfig

# -- the netlink read ------------------------------------------------------------------------


class FakeSocket:
    """Answers NFT_MSG_GETGEN with a stale message first, then the generation."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.sent: list[bytes] = []
        self.answers: list[bytes] = []

    def settimeout(self, _timeout: float) -> None:
        pass

    def send(self, data: bytes) -> None:
        self.sent.append(data)
        seq = struct.unpack_from("=I", data, 8)[0]
        kind = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN
        attr = struct.pack("=HH", 8, 1) + struct.pack("!I", self.generation)
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0) + attr
        for n in (seq - 1, seq):
            self.answers.append(struct.pack("=IHHII", 16 + len(body), kind, 0, n, 0) + body)

    def recv(self, _size: int) -> bytes:
        return self.answers.pop(0)


def test_read_asks_getgen_and_skips_stale_answers() -> None:
    sock = FakeSocket(4242)
    assert NftGeneration(sock).read() == 4242  # type: ignore[arg-type]
    length, kind = struct.unpack_from("=IH", sock.sent[0])
    assert kind == NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN and length == 20


# -- the trust rule --------------------------------------------------------------------------


class Kernel:
    def __init__(self) -> None:
        self.generation = 10
        self.fail = False

    def read(self) -> int:
        if self.fail:
            raise OSError("no answer")
        return self.generation


def test_a_read_view_is_trusted_only_if_just_our_commits_moved_the_generation() -> None:
    kernel = Kernel()
    tracker = GenerationTracker(kernel.read)
    assert not tracker.unchanged()  # nothing verified yet
    tracker.begin()
    kernel.generation += 2  # our two restores
    tracker.end(commits=2, verified=True)
    assert tracker.trusted == 12 and tracker.unchanged()
    kernel.generation += 1  # someone else's commit
    assert not tracker.unchanged()
    tracker.begin()  # and an apply after it, on cached (unverified) views
    kernel.generation += 1
    tracker.end(commits=1, verified=False)
    assert tracker.trusted is None


def test_a_foreign_commit_during_an_apply_or_a_failure_distrusts() -> None:
    kernel = Kernel()
    tracker = GenerationTracker(kernel.read)
    tracker.begin()
    kernel.generation += 2  # ours and another's
    tracker.end(commits=1, verified=True)
    assert tracker.trusted is None
    tracker.begin()
    tracker.end(commits=0, verified=True)
    assert tracker.trusted == 12
    tracker.begin()
    tracker.forget()
    assert tracker.trusted is None
    tracker.begin()
    kernel.fail = True
    tracker.end(commits=0, verified=True)
    assert tracker.trusted is None and not tracker.unchanged()


# -- the loop's refresh ----------------------------------------------------------------------


class NftKernelRunner:
    """An empty nft kernel: reads answer nothing, each iptables restore is one commit."""

    def __init__(self) -> None:
        self.generation = 1
        self.calls: list[list[str]] = []

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> CommandResult:
        self.calls.append(list(args))
        if "tables" in args[0] and args[0].endswith("-restore"):
            self.generation += 1
        if args[0] == "ip" and "-j" in args:
            return CommandResult(0, "".join("[]\n" for _ in (stdin or "").splitlines()), "")
        return CommandResult(0, "", "")

    def saves(self) -> int:
        out = sum(1 for c in self.calls if c[0].endswith("tables-nft-save"))
        self.calls.clear()
        return out


def _no_netlink() -> Any:
    raise OSError("no netlink in unit tests")


def tracked_dataplane(
    runner: NftKernelRunner, now: list[float], tracked: bool = True
) -> InternalDataplane:
    dp = InternalDataplane(
        DataplaneSettings(rules=RulesConfig()),
        runner,
        _no_netlink,
        clock=lambda: now[0],
        nft_generation=(lambda: runner.generation) if tracked else None,
    )
    assert runner.saves() == 0  # detecting the backend is the dataplane thread's first job
    dp._resolve_backend()
    dp._handle([InSync()])
    dp._handle(_IfacesInSync())
    return dp


@pytest.mark.parametrize("tracked", [True, False])
def test_iptables_refresh_rereads_only_when_the_generation_moved(tracked: bool) -> None:
    runner = NftKernelRunner()
    now = [0.0]
    dp = tracked_dataplane(runner, now, tracked)
    assert runner.saves() == 2  # detecting the backend: one nft save per family
    dp._maybe_apply()
    # The first apply reads each family once, unless detection's saves are still current.
    assert runner.saves() == (0 if tracked else 2) and runner.generation > 1
    now[0] += 91
    dp._maybe_apply()
    assert runner.saves() == (0 if tracked else 2)
    runner.generation += 1  # a commit behind Felix's back
    now[0] += 91
    dp._maybe_apply()
    assert runner.saves() == 2


def test_detection_saves_are_not_used_after_a_commit() -> None:
    runner = NftKernelRunner()
    dp = tracked_dataplane(runner, [0.0])
    runner.saves()
    runner.generation += 1  # e.g. kube-proxy, while Felix loaded the datastore
    dp._maybe_apply()
    assert runner.saves() == 2

"""An etcd member cut off from its peers while a watch is open on it, with its figures.

Run with ``.venv/bin/python bench/etcd_partition.py [--rounds 3] [--no-write]`` as root. It
starts a lab's 3-member etcd (`etcd: {members: 3}`: each member in its own namespace on the
fabric bridge, raft over the fabric) and no hosts. Per round, and once with a follower and
once with the leader as the victim: a watch (calico's `EtcdBackend.watch`, the one every
syncer uses) is opened on the victim, the first of its endpoints, from a known revision; an
nftables table in the victim's namespace then drops its raft traffic (TCP port 2380 both
ways), so it is alive and answers the client on its unix socket but hears no peer. Right
after the cut, and then every 0.2 s until the watch has seen the first, a key is written on
the majority's side. Figures: seconds from the cut until the watch resumed on another
member, from the first write until the watch delivered it (the floor: the same write and
watch with every member connected, measured before the cut), and the revisions the majority
wrote that the watch did not deliver (goal 0), or delivered twice. Alongside, a watch on the
victim that does not ask for a leader (a raw HTTP request without `Grpc-Metadata-Hasleader`)
shows what the client did before: it stays open and delivers nothing. The table is written
into docs/reliability.md between the `etcd-partition` markers unless --no-write;
`tests/e2e/test_lab_etcd_partition.py` runs one round and asserts it.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from calico.datastore.api import DatastoreUnavailable
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.datastore.etcd_gateway import b64, key_range
from calico.datastore.syncer import Syncer
from calico.lab import etcd, netns
from calico.lab.lab import Lab
from calico.lab.labfile import load_lab
from calico.model.sync import SyncStatus
from calico.testing.doc_sections import run_stamp, write_section
from calico.testing.recording import RecordingCallbacks, reading, running
from calico.testing.waiting import wait_until

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
LAB = """
name: etcdcut
fabric: {ipv4: 198.18.0.0/24}
etcd: {members: 3}
hosts: [{name: host-1, ipv4: 198.18.0.11}]
"""
PREFIX = "/calico/bench-partition/"
CUT_TABLE = "partition"
CUT = f"""table inet {CUT_TABLE} {{
    chain input {{ type filter hook input priority 0; tcp dport {etcd.PEER_PORT} drop; tcp sport {etcd.PEER_PORT} drop; }}
    chain output {{ type filter hook output priority 0; tcp dport {etcd.PEER_PORT} drop; tcp sport {etcd.PEER_PORT} drop; }}
}}
"""  # noqa: E501
SEEN_WITHIN = 60.0  # seconds a round waits for the watch to deliver the first write
WRITE_EVERY = 0.2
SETTLE = 2.0  # seconds: 4 of the lab's election timeouts


@dataclass(frozen=True, slots=True)
class Cut:
    victim: str  # "follower" or "leader"
    member: str
    floor: float  # seconds from a write to the watch delivering it, every member connected
    resumed: float  # seconds from the cut until the watch resumed on another member
    seen: float  # seconds from the cut (a write right after it) until the watch had that write
    after_write: float  # seconds from that write returning (committed) until the watch had it
    committed: float  # seconds from the cut until the majority's first write returned
    syncer_seen: float  # seconds from the cut until a Syncer (victim first) had that write
    syncer_relists: int  # times that Syncer left IN_SYNC (a re-list) after the cut; goal 0
    written: int  # revisions the majority wrote under the prefix while the victim was cut
    missed: int  # of those, not delivered by the watch
    repeated: int  # events delivered more than once
    read: float  # seconds a read took through a client whose first endpoint is the victim
    plain_events: int  # events a watch not asking for a leader delivered from the victim
    load: float  # 1-minute load average at the end of the round


def run(rounds: int = 1, progress: Callable[[str], None] = print) -> list[Cut]:
    with tempfile.TemporaryDirectory(prefix="calico-etcd-partition-") as tmp:
        lab = Lab.create(load_lab(LAB, "etcd partition lab", Path(tmp)), Path(tmp) / "state")
        lab.progress = lambda m: progress(f"lab: {m}")
        try:
            lab.step("fabric", "bridge", lab.build_fabric)
            lab.step("etcd", "start 3 etcd members", lab.build_etcd)
            cuts = []
            for i in range(rounds):
                for victim in ("follower", "leader"):
                    cuts.append(_round(lab, victim, f"{i}-{victim}"))
                    progress(f"round {i + 1}: {cuts[-1]}")
            return cuts
        finally:
            lab.down()


def _round(lab: Lab, victim_kind: str, tag: str) -> Cut:
    members = lab.etcd_members()
    leader = _settled(members)
    victim = leader if victim_kind == "leader" else next(m for m in members if m != leader)
    assert victim is not None
    rest = [m for m in members if m != victim]
    prefix = f"{PREFIX}{tag}/"
    majority = _backend(rest)
    client = _backend([victim, *rest])  # the watch opens on the victim
    syncer_client = _backend([victim, *rest])  # and the syncer's, on its own connection
    callbacks = RecordingCallbacks()
    syncer = Syncer(syncer_client, [prefix], callbacks, name="partition-syncer")
    try:
        start = majority.put(f"{prefix}start", b"")
        watch = client.watch(prefix, start + 1)
        with (
            reading(watch) as reader,
            _resumes() as resumes,
            _plain_watch(victim, prefix, start + 1) as plain,
            running(syncer),
        ):
            t = time.monotonic()
            majority.put(f"{prefix}floor", b"")
            reader.wait_events(1, SEEN_WITHIN)
            floor = time.monotonic() - t
            callbacks.wait_for(callbacks.in_sync_with(majority, [prefix]), SEEN_WITHIN)
            synced = len(callbacks.statuses)
            wait_until(lambda: plain.events == 1, SEEN_WITHIN, "the plain watch's first event")
            if resumes:
                raise RuntimeError("the watch left the victim before the cut: not settled")
            netns.in_ns(lab.netns(victim.name), ["nft", "-f", "-"], stdin=CUT)
            cut = time.monotonic()
            try:
                returned: dict[int, float] = {}
                with _writing(majority, prefix, returned):
                    first = reader.wait_events(2, SEEN_WITHIN)[1]
                    seen = time.monotonic()
                    callbacks.wait_for(lambda: first.key in callbacks.state, SEEN_WITHIN)
                    syncer_seen = time.monotonic() - cut
                # nan: that write's reply was lost; 0: the watch had it before the reply came
                reply = returned.get(first.mod_revision)
                after_write = float("nan") if reply is None else max(0.0, seen - reply)
                committed = min(returned.values(), default=float("nan")) - cut
                seen -= cut
                written = [kv.mod_revision for kv in majority.list(prefix).items]
                written.remove(start)
                reader.wait_events(len(written), SEEN_WITHIN)
                callbacks.wait_for(callbacks.in_sync_with(majority, [prefix]), SEEN_WITHIN)
                relists = sum(s is not SyncStatus.IN_SYNC for s in callbacks.statuses[synced:])
                resumed = (resumes[0] - cut) if resumes else float("nan")
                read = _timed_read(victim, rest, prefix)
                plain_events = plain.events - 1  # before the cut heals and it catches up
            finally:
                netns.in_ns(lab.netns(victim.name), ["nft", "delete", "table", "inet", CUT_TABLE])
            revisions = [e.mod_revision for e in reader.events]
    finally:
        for backend in (client, syncer_client, majority):
            backend.close()
    missed = len(set(written) - set(revisions))
    return Cut(
        victim_kind, victim.name, floor, resumed, seen, after_write, committed, syncer_seen,
        relists, len(written) - 1, missed, len(revisions) - len(set(revisions)), read, plain_events,
        os.getloadavg()[0],
    )  # fmt: skip


@contextmanager
def _writing(backend: EtcdBackend, prefix: str, returned: dict[int, float]) -> Iterator[None]:
    """Write a key under prefix right away and every WRITE_EVERY seconds until the block
    ends, each in its own thread (a write lost with a cut-off leader waits out its
    request_timeout without holding up the next), noting when each returned by its
    revision; a write that fails is not retried."""
    stop, writers = threading.Event(), list[threading.Thread]()

    def write(key: str) -> None:
        with contextlib.suppress(DatastoreUnavailable):  # the listing says what landed
            revision = backend.put(key, b"")
            returned[revision] = time.monotonic()

    def pace() -> None:
        for n in itertools.count():
            writers.append(threading.Thread(target=write, args=(f"{prefix}{n}",), daemon=True))
            writers[-1].start()
            if stop.wait(WRITE_EVERY):
                return

    pacer = threading.Thread(target=pace, daemon=True)
    pacer.start()
    try:
        yield
    finally:
        stop.set()
        pacer.join(30)
        for writer in writers:
            writer.join(30)


def _settled(members: list[etcd.Member]) -> etcd.Member:
    """The leader, once every member has followed it for SETTLE seconds: a member back from
    a cut may have a higher term and force an election soon after it rejoins (etcd 3.4 has
    pre-vote off), which would move the next round's watch before its cut."""
    led_by: set[int] = set()

    def stable() -> bool:
        nonlocal led_by
        now = {_leader_id(m) for m in members}
        was, led_by = led_by, now
        return len(now) == 1 and 0 not in now and now == was

    wait_until(stable, 60, "every member following one leader", interval=SETTLE)
    leader = etcd.leader(members)
    assert leader is not None
    return leader


def _leader_id(member: etcd.Member) -> int:
    backend = _backend([member])
    try:
        return backend.member_status()[1]
    except DatastoreUnavailable:
        return 0
    finally:
        backend.close()


def _backend(members: list[etcd.Member]) -> EtcdBackend:
    return EtcdBackend(EtcdConfig(endpoints=tuple(m.unix_endpoint for m in members)))


def _timed_read(victim: etcd.Member, rest: list[etcd.Member], prefix: str) -> float:
    """Seconds a read takes through a fresh client that tries the cut-off member first."""
    backend = _backend([victim, *rest])
    try:
        t = time.monotonic()
        backend.list(prefix)
        return time.monotonic() - t
    finally:
        backend.close()


class _ResumeLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "on another member" in record.getMessage():
            self.at.append(time.monotonic())


@contextmanager
def _resumes() -> Iterator[list[float]]:
    """Monotonic times at which a watch resumed on another member (its warning)."""
    handler = _ResumeLog()
    log = logging.getLogger("calico.datastore.etcd_watch")
    log.addHandler(handler)
    try:
        yield handler.at
    finally:
        log.removeHandler(handler)


class _PlainWatch:
    """A watch on one member over its unix socket that does not require a leader: the
    request this client sent before it did (HTTP/1.1 by hand, so nothing adds the header)."""

    def __init__(self, member: etcd.Member, prefix: str, start_revision: int) -> None:
        key, end = key_range(prefix)
        create = {"key": b64(key), "range_end": b64(end), "start_revision": start_revision}
        body = json.dumps({"create_request": create}).encode()
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(member.unix_endpoint[len("unix://") :])
        self.sock.sendall(
            b"POST /v3/watch HTTP/1.1\r\nHost: etcd\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        self.events = 0  # batches of events (one per write here)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        data = b""
        while chunk := self._recv():
            data += chunk
            self.events = data.count(b'"events"')

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except OSError:
            return b""

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


@contextmanager
def _plain_watch(member: etcd.Member, prefix: str, start_revision: int) -> Iterator[_PlainWatch]:
    watch = _PlainWatch(member, prefix, start_revision)
    try:
        yield watch
    finally:
        watch.close()


def _spread(values: list[float]) -> str:
    return f"max {max(values):.2f}s (min {min(values):.2f}s, {len(values)} cuts)"


def section(cuts: list[Cut]) -> str:
    when, machine = run_stamp()
    rows = []
    for victim in ("follower", "leader"):
        mine = [c for c in cuts if c.victim == victim]
        missed, repeated = sum(c.missed for c in mine), sum(c.repeated for c in mine)
        relists = sum(c.syncer_relists for c in mine)
        written = sum(c.written for c in mine)
        plain = sum(c.plain_events for c in mine)
        met = missed == repeated == plain == relists == 0 and max(c.seen for c in mine) < 10.0
        figure = (
            f"watch resumed on another member after {_spread([c.resumed for c in mine])}; "
            f"the first write after the cut seen {_spread([c.seen for c in mine])} after the "
            f"cut, {_spread([c.after_write for c in mine])} after the write returned (the "
            f"majority's first write returned {_spread([c.committed for c in mine])} after "
            f"the cut; floor, every member connected: "
            f"{_spread([c.floor for c in mine])}); revisions missed "
            f"{missed} of {written}, delivered twice {repeated}; a Syncer on the victim had "
            f"that write {_spread([c.syncer_seen for c in mine])} after the cut, re-listing "
            f"{relists} times; then a read through a client "
            f"trying it first took {_spread([c.read for c in mine])}; a watch not asking for a "
            f"leader delivered {plain} of those events" + ("" if met else " (goal NOT met)")
        )
        goal = "seen within 10 s, 0 missed, 0 twice, 0 re-lists"
        load = max(c.load for c in mine)
        rows.append(
            f"| etcd {victim} cut off from its peers (3 members) | {figure} | {goal} | "
            f"{load:.1f} | {when} | {machine} |"
        )
    return "\n".join([
        "## etcd member cut off from its peers (bench/etcd_partition.py)", "",
        f"Run {when} on {machine}: a lab's etcd of 3 members (raft heartbeat 50 ms, election "
        "timeout 500 ms), each in its namespace; per round a follower, then the leader, has "
        "its raft traffic (TCP 2380) dropped by nftables in its namespace while it still "
        "answers clients. A watch (`EtcdBackend.watch`, as every syncer's) is open on it, its "
        "first endpoint; the majority writes right after the cut and every 0.2 s until the "
        "watch delivers. The client requires a leader on every call (gRPC metadata "
        "`hasleader`), so etcd ends the watch with \"no leader\" once the member has had none "
        "for 3 election timeouts and the watch resumes on another member from the next "
        "unseen revision. A watch opened without that header on the same member is the "
        "before. When the leader is cut off, the majority's followers still send writes to "
        "it until they elect a new one, and such a write is lost (its writer gets no answer "
        "within request_timeout); each write has its own thread, so the next ones land once "
        "the majority has a leader. Load: the "
        "1-minute load average at the end of the round (max).", "",
        "| test | figure | goal | load | date | machine |",
        "| --- | --- | --- | --- | --- | --- |", *rows,
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="follower + leader cuts")
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    opts = parser.parse_args()
    text = section(run(opts.rounds))
    print(text)
    if not opts.no_write:
        write_section(DOC, "etcd-partition", text)


if __name__ == "__main__":
    main()

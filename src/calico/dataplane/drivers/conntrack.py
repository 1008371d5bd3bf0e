"""Deletes the conntrack entries of an address, through the `conntrack` tool (conntrack-tools).

Why: the filter rules accept ESTABLISHED,RELATED packets before any policy, so a flow
admitted for one workload would carry on to the next workload that gets its address, whatever
that workload's policy says. Like Calico, the route table hands an address to the
`ConntrackCleaner` when its route leaves its interface (name and index: a re-created veth of
the same name is another interface), and flushes it before the address's new route is added.

Which entries: those whose original source is the address (the workload opened the flow)
and those whose reply source is the address (the workload received the flow; the reply
source is the workload even when the original destination was a DNATed floating IP). One
tool run per direction; the tool exits 1 with "0 flow entries have been deleted" when there
were none, which is not an error.

Batches: each tool run reads the whole table, so for several addresses at once one listing
(`--dump`) says which have any entry, and only those get their two deletions. Under endpoint
churn most released addresses have none: 100 addresses/s cost one listing per batch instead
of 200 runs (bench/churn_rate.py). No entry of a released address appears after the listing:
its route is gone and its interface's packets are dropped before conntrack confirms them.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections import deque
from collections.abc import Iterable, Sequence

from calico.backoff import Backoff
from calico.programs import CommandFailed, CommandRunner

_log = logging.getLogger(__name__)

_FAMILY = {4: "ipv4", 6: "ipv6"}
_DIRECTIONS = ("--orig-src", "--reply-src")
_DELETED = re.compile(r"(\d+) flow entries have been deleted")
_SOURCE = re.compile(r"\bsrc=(\S+)")


class ConntrackFlows:
    def __init__(self, runner: CommandRunner) -> None:
        self._runner = runner

    def remove_flows(self, ip_version: int, addr: str) -> int:
        """Deletes every entry with `addr` as original or reply source; returns how many.
        Raises CommandFailed if the tool fails (the caller retries)."""
        if ip_version not in _FAMILY:
            raise ValueError(f"ip_version must be 4 or 6, not {ip_version}")
        deleted = 0
        for direction in _DIRECTIONS:
            args = ["conntrack", "--family", _FAMILY[ip_version], "--delete", direction, addr]
            result = self._runner.run(args, check=False)
            found = _DELETED.search(result.stderr)
            count = int(found.group(1)) if found else -1
            ok_codes = (0, 1) if count == 0 else (0,)  # 1 also means "none found"
            if count < 0 or result.returncode not in ok_codes:
                raise CommandFailed(args, result.returncode, result.stdout, result.stderr)
            deleted += count
        if deleted:
            _log.info("deleted %d conntrack entries of %s", deleted, addr)
        return deleted

    def remove_flows_of(self, ip_version: int, addrs: Sequence[str]) -> int:
        """`remove_flows` for each of `addrs`; for more than one, only for those that the
        table lists as a source (original or reply) of any entry."""
        if len(addrs) > 1:
            listed = self._sources(ip_version)
            addrs = [a for a in addrs if ipaddress.ip_address(a) in listed]
        return sum(self.remove_flows(ip_version, addr) for addr in addrs)

    def _sources(self, ip_version: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        if ip_version not in _FAMILY:
            raise ValueError(f"ip_version must be 4 or 6, not {ip_version}")
        out = self._runner.run(["conntrack", "--family", _FAMILY[ip_version], "--dump"]).stdout
        return {ipaddress.ip_address(a) for a in _SOURCE.findall(out)}


class ConntrackCleaner:
    """Deletes the flows of released addresses on a background thread, so an apply does not
    wait for them (two tool runs: ~15 ms per address with an empty table, ~70 ms with 20,000
    entries), except for an address it is about to route again: `flush()` deletes those
    first, on the caller's thread. The thread takes every queued address of a family at
    once (`remove_flows_of`). A failed background deletion is logged and retried with
    backoff (0.1 s doubling to `max_backoff`)."""

    def __init__(self, flows: ConntrackFlows, *, max_backoff: float = 5.0) -> None:
        self._flows = flows
        self._max_backoff = max_backoff
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, str]] = deque()
        self._busy: set[str] = set()  # the addresses the thread is deleting now
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, ip_version: int, addr: str) -> None:
        with self._cond:
            if (ip_version, addr) not in self._queue:
                self._queue.append((ip_version, addr))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="felix-conntrack")
                self._thread.daemon = True
                self._thread.start()
            self._cond.notify_all()

    def flush(self, addrs: Iterable[str]) -> None:
        """Returns once no deletion of the flows of `addrs` is outstanding: runs queued ones
        now, waits for one in progress. A failed deletion is queued again and raised."""
        with self._cond:
            if not self._queue and not self._busy:
                return  # the usual case, kept cheap: one call per apply, any number of routes
            wanted = set(addrs)
            self._cond.wait_for(lambda: not self._busy & wanted)
            mine = [item for item in self._queue if item[1] in wanted]
            for item in mine:
                self._queue.remove(item)
        for version in sorted({v for v, _ in mine}):
            batch = [item for item in mine if item[0] == version]
            try:
                self._flows.remove_flows_of(version, [addr for _, addr in batch])
            except Exception:
                with self._cond:
                    self._queue.extendleft(reversed([i for i in mine if i[0] >= version]))
                    self._cond.notify_all()
                raise

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        backoff = Backoff(initial=0.1, maximum=self._max_backoff)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                version = self._queue[0][0]
                batch = [item for item in self._queue if item[0] == version]
                for item in batch:
                    self._queue.remove(item)
                self._busy = {addr for _, addr in batch}
            try:
                self._flows.remove_flows_of(version, [addr for _, addr in batch])
            except Exception as exc:
                delay = backoff.delay()
                _log.error("deleting the conntrack entries of %s failed (%s); retrying in %.1fs",
                           " ".join(sorted(self._busy)), exc, delay)  # fmt: skip
                with self._cond:
                    self._busy = set()
                    self._queue.extendleft(reversed(batch))
                    self._cond.notify_all()
                    self._cond.wait_for(lambda: self._closed, delay)
                continue
            backoff.reset()
            with self._cond:
                self._busy = set()
                self._cond.notify_all()

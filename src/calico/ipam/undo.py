"""What an assignment may have written, so a failed one can be undone exactly.

An etcd write whose reply is lost (the server stopped mid-request) may or may not have been
applied. The allocator therefore logs every write *before* making it: addresses with the block
sequence number they were allocated under, the blocks whose handle count it touched, and the
affinities it began to claim. Undoing releases those addresses only where they still carry this
handle and sequence number (so a stranger's allocation is never freed), then recounts the handle
from the blocks and settles any half-made claim. Each step is idempotent, and `patiently`
retries it through an outage until a deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from calico.backoff import Backoff
from calico.datastore.api import DatastoreError
from calico.ipam.blocks import ReleaseSpec

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class UndoLog:
    handle_id: str
    allocated: dict[str, list[ReleaseSpec]] = field(default_factory=dict)  # block -> addresses
    handle_blocks: set[str] = field(default_factory=set)
    claims: set[tuple[str, str]] = field(default_factory=set)  # (host, block) being claimed

    def add(self, cidr: str, addresses: list[str], sequence_number: int) -> None:
        specs = [ReleaseSpec(a, self.handle_id, sequence_number) for a in addresses]
        self.allocated.setdefault(cidr, []).extend(specs)

    def discard(self, cidr: str, addresses: list[str]) -> None:
        """Forget addresses whose write certainly failed (a lost CAS race)."""
        gone = set(addresses)
        kept = [s for s in self.allocated.get(cidr, []) if s.address not in gone]
        if kept:
            self.allocated[cidr] = kept
        else:
            self.allocated.pop(cidr, None)


class Patience:
    """Retry idempotent steps through datastore failures until a shared deadline."""

    def __init__(
        self,
        timeout: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._deadline = clock() + timeout
        self._sleep = sleep
        self._clock = clock

    def run(self, step: Callable[[], T]) -> T:
        backoff = Backoff(initial=0.05, maximum=1.0)
        while True:
            try:
                return step()
            except DatastoreError as exc:
                remaining = self._deadline - self._clock()
                if remaining <= 0:
                    raise
                log.info("datastore failure during IPAM cleanup, retrying: %s", exc)
                self._sleep(min(backoff.delay(), remaining))

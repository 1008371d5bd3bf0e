"""Where a syncer's consumer stands against the datastore (Calico's api.SyncStatus).

Here rather than in the datastore package: the calculation graph consumes it and must not
depend on the datastore adapters.
"""

from __future__ import annotations

import enum


class SyncStatus(enum.Enum):
    WAIT_FOR_READY = "wait-for-ready"
    RESYNC = "resync"
    IN_SYNC = "in-sync"

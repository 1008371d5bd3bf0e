"""Deletes the conntrack entries of an address, through the `conntrack` tool (conntrack-tools).

Why: the filter rules accept ESTABLISHED,RELATED packets before any policy, so a flow
admitted for one workload would carry on to the next workload that gets its address, whatever
that workload's policy says. Like Calico, the route table calls this when an address's route
leaves its interface, before the address's new route is added.

Which entries: those whose original source is the address (the workload opened the flow)
and those whose reply source is the address (the workload received the flow; the reply
source is the workload even when the original destination was a DNATed floating IP). One
tool run per direction; the tool exits 1 with "0 flow entries have been deleted" when there
were none, which is not an error.
"""

from __future__ import annotations

import logging
import re

from calico.dataplane.kernel import CommandError, CommandRunner

_log = logging.getLogger(__name__)

_FAMILY = {4: "ipv4", 6: "ipv6"}
_DIRECTIONS = ("--orig-src", "--reply-src")
_DELETED = re.compile(r"(\d+) flow entries have been deleted")


class ConntrackFlows:
    def __init__(self, runner: CommandRunner) -> None:
        self._runner = runner

    def remove_flows(self, ip_version: int, addr: str) -> int:
        """Deletes every entry with `addr` as original or reply source; returns how many.
        Raises CommandError if the tool fails (the caller retries)."""
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
                raise CommandError(args, result.returncode, result.stderr)
            deleted += count
        if deleted:
            _log.info("deleted %d conntrack entries of %s", deleted, addr)
        return deleted

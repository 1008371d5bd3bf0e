"""The lab's view of a node's BIRD: its BGP sessions, read over the control socket."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from calico.bgp.birdctl import BirdError, parse_protocols, query


@dataclass(frozen=True, slots=True)
class BgpSession:
    name: str
    state: str  # BIRD's protocol state: up, start, down...
    info: str  # Established, Active, Connect, Passive, plus the last error

    @property
    def established(self) -> bool:
        return self.info.startswith("Established")


def bgp_sessions(control_socket: Path) -> list[BgpSession] | None:
    """The node's BGP sessions, or None when BIRD does not answer."""
    try:
        rows = parse_protocols(query(control_socket, "show protocols", timeout=2.0))
    except (OSError, BirdError):
        return None
    return [BgpSession(r.name, r.state, r.info) for r in rows if r.proto == "BGP"]

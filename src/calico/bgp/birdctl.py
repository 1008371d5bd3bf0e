"""BIRD's control socket: send one command, read the coded reply, parse `show protocols`.

The reply protocol (BIRD 2 doc/prog, "Client-server protocol"): each line starts with a
4-digit code and `-` (more lines follow) or ` ` (last line); lines starting with a space
continue the previous code. `0000` ends a successful reply, 8xxx/9xxx are errors.
`calicoctl node status` (as Calico's status.go) reads `show protocols` this way and names
BGP peers from the protocol names the renderer gives them (`Mesh_`, `Global_`, `Node_`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

_CODE = re.compile(r"^(\d{4})([ -]|$)(.*)$")
_PEER_NAME = re.compile(r"^(Global|Node|Mesh)_(.+?)(?:_port_(\d+))?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}(\.\d+)?$")
PEER_TYPES = {"Global": "global", "Mesh": "node-to-node mesh", "Node": "node specific"}
EXPECTED_HEADINGS = ["name", "proto", "table", "state", "since", "info"]


class BirdError(Exception):
    """BIRD could not be asked, or answered with an error or in an unknown format."""


@dataclass(frozen=True, slots=True)
class Protocol:
    name: str
    proto: str
    table: str
    state: str
    since: str
    info: str


@dataclass(frozen=True, slots=True)
class PeerStatus:
    version: int
    address: str
    peer_type: str
    state: str
    since: str
    info: str


def query(socket_path: Path | str, command: str, timeout: float = 2.0) -> list[str]:
    """Send `command` on BIRD's control socket; the reply lines (codes kept).

    OSError when nothing listens on the socket; BirdError for an error reply or a timeout.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        reader = sock.makefile("r", encoding="utf-8", errors="replace", newline="\n")
        try:
            _read_reply(reader)  # the "0001 BIRD x.y.z ready." greeting
            sock.sendall(command.encode() + b"\n")
            return _read_reply(reader)
        except TimeoutError:
            raise BirdError(f"no complete answer from BIRD within {timeout}s") from None


def _read_reply(reader: Iterable[str]) -> list[str]:
    lines = []
    for raw in reader:
        line = raw.rstrip("\n")
        lines.append(line)
        match = _CODE.match(line)
        if match and match.group(2) != "-":
            if match.group(1)[0] in "89":
                raise BirdError(f"BIRD error: {match.group(3).strip()}")
            return lines
    raise BirdError("BIRD closed the connection mid-reply")


def parse_protocols(lines: Sequence[str]) -> list[Protocol]:
    """Rows of a `show protocols` reply (1002 rows and their continuation lines)."""
    rows = []
    for line in lines:
        match = _CODE.match(line)
        if match and match.group(1) == "2002":
            if [f.lower() for f in match.group(3).split()] != EXPECTED_HEADINGS:
                raise BirdError("unknown BIRD table output format")
            continue
        if match and match.group(1) == "1002":
            text = match.group(3)
        elif line.startswith(" "):
            text = line[1:]
        else:
            continue
        row = _row(text.split())
        if row is not None:
            rows.append(row)
    return rows


def _row(fields: list[str]) -> Protocol | None:
    if len(fields) < 5:
        return None
    name, proto, table, state, *rest = fields
    since = rest[0]
    if len(rest) > 1 and _DATE.match(rest[0]) and _TIME.match(rest[1]):
        since = f"{rest[0]} {rest[1]}"
        rest = rest[1:]
    return Protocol(name, proto, table, state, since, " ".join(rest[1:]))


def peer_status(row: Protocol) -> PeerStatus | None:
    """The calicoctl view of a BGP protocol named by the renderer, else None."""
    match = _PEER_NAME.match(row.name)
    if row.proto != "BGP" or match is None:
        return None
    ptype, ip_part, port = match.groups()
    address = _address(ip_part)
    if address is None:
        return None
    version = address.version
    text = str(address)
    if port:
        text = f"{text}:{port}" if version == 4 else f"[{text}]:{port}"
    return PeerStatus(version, text, PEER_TYPES[ptype], row.state, row.since, row.info)


def _address(ip_part: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    for sep in (".", ":"):
        try:
            return ipaddress.ip_address(ip_part.replace("_", sep))
        except ValueError:
            continue
    return None


def bgp_peers(socket_path: Path | str, timeout: float = 2.0) -> list[PeerStatus]:
    rows = parse_protocols(query(socket_path, "show protocols", timeout))
    return [p for p in (peer_status(r) for r in rows) if p is not None]

"""BIRD control-socket client and `calicoctl node status` against a fake BIRD socket."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.bgp.birdctl import BirdError, bgp_peers, parse_protocols, peer_status, query
from calico.ctl.commands.node import status_text
from calico.ctl.context import CtlError

SHOW_PROTOCOLS = """\
2002-Name       Proto      Table      State  Since         Info
1002-device1    Device     ---        up     04:20:06
 direct1    Direct     ---        up     04:20:06
 kernel_v4  Kernel     master4    up     04:20:06
 static_v4  Static     master4    up     04:20:06
 Mesh_198_18_0_2 BGP        ---        up     04:20:08      Established
 Mesh_198_18_0_10 BGP        ---        start  2026-11-20    Active        Socket: Connection refused
 Global_198_18_0_254 BGP        ---        start  04:20:06      Connect
 Node_198_18_0_253_port_1179 BGP        ---        up     2026-11-20 04:20:06  Established
 Mesh_2001_db8__2 BGP        ---        up     04:20:09      Established
 Node_2001_db8__fe_port_1179 BGP        ---        start  04:20:06      Passive
 Other_peer BGP        ---        up     04:20:06      Established
0000
"""


class FakeBird:
    """A unix-socket server speaking BIRD's reply protocol with canned answers."""

    def __init__(self, path: Path, reply: str) -> None:
        self.path, self.reply = path, reply
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.commands: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"0001 BIRD 2.0.12 ready.\n")
                self.commands.append(conn.makefile("r").readline().strip())
                conn.sendall(self.reply.encode())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def bird(tmp_path: Path) -> Iterator[FakeBird]:
    fake = FakeBird(tmp_path / "bird.ctl", SHOW_PROTOCOLS)
    yield fake
    fake.close()


def test_parse_show_protocols_into_calico_peers() -> None:
    rows = parse_protocols(SHOW_PROTOCOLS.splitlines())
    assert len(rows) == 11
    peers = [p for p in (peer_status(r) for r in rows) if p]
    got = [(p.version, p.address, p.peer_type, p.state, p.since, p.info) for p in peers]
    assert got == [
        (4, "198.18.0.2", "node-to-node mesh", "up", "04:20:08", "Established"),
        (
            4,
            "198.18.0.10",
            "node-to-node mesh",
            "start",
            "2026-11-20",
            "Active Socket: Connection refused",
        ),
        (4, "198.18.0.254", "global", "start", "04:20:06", "Connect"),
        (4, "198.18.0.253:1179", "node specific", "up", "2026-11-20 04:20:06", "Established"),
        (6, "2001:db8::2", "node-to-node mesh", "up", "04:20:09", "Established"),
        (6, "[2001:db8::fe]:1179", "node specific", "start", "04:20:06", "Passive"),
    ]


def test_unknown_table_format_is_an_error() -> None:
    with pytest.raises(BirdError, match="unknown BIRD table output format"):
        parse_protocols(["2002-Name Proto State", "0000 "])


def test_query_over_the_socket(bird: FakeBird) -> None:
    peers = bgp_peers(bird.path)
    assert bird.commands == ["show protocols"]
    assert [p.address for p in peers][:2] == ["198.18.0.2", "198.18.0.10"]


def test_error_reply_and_missing_socket(tmp_path: Path) -> None:
    fake = FakeBird(tmp_path / "err.ctl", "9001 Syntax error\n")
    try:
        with pytest.raises(BirdError, match="Syntax error"):
            query(fake.path, "show nonsense")
    finally:
        fake.close()
    with pytest.raises(OSError):
        query(tmp_path / "absent.ctl", "show protocols")


def _env(run_dir: Path, felix: int | None, bird_pid: int | None) -> dict[str, str]:
    for name, pid in (("felix.pid", felix), ("bird.pid", bird_pid)):
        if pid is not None:
            (run_dir / name).write_text(f"{pid}\n")
    return {"CALICO_RUN_DIR": str(run_dir)}


def test_node_status_report(bird: FakeBird, tmp_path: Path) -> None:
    text = status_text(_env(tmp_path, os.getpid(), os.getpid()))
    lines = text.splitlines()
    assert lines[:4] == [
        "Calico process is running.",
        "",
        "IPv4 BGP status",
        "+-------------------+-------------------+-------+---------------------+-----------------------------------+",
    ]
    assert "| PEER ADDRESS      |" not in text  # headers are centred
    assert "|   PEER ADDRESS    |     PEER TYPE     | STATE |        SINCE        |" in text
    assert (
        "| 198.18.0.2        | node-to-node mesh | up    | 04:20:08            | Established"
        in text
    )
    assert "IPv6 BGP status" in text and "[2001:db8::fe]:1179" in text
    assert text.endswith("+\n")


def test_node_status_without_peers_bird_or_felix(tmp_path: Path) -> None:
    fake = FakeBird(tmp_path / "bird.ctl", "2002-Name Proto Table State Since Info\n0000 \n")
    try:
        text = status_text(_env(tmp_path, os.getpid(), os.getpid()))
        assert "No IPv4 peers found." in text and "No IPv6 peers found." in text
    finally:
        fake.close()
    (tmp_path / "bird.ctl").unlink()
    text = status_text(_env(tmp_path, os.getpid(), 2**22 + 12345))
    assert "None of the BGP backend processes (BIRD or GoBGP) are running." in text
    with pytest.raises(CtlError, match=r"Calico process is not running\."):
        status_text(_env(tmp_path, 2**22 + 12345, None))


def test_node_status_when_bird_does_not_answer(tmp_path: Path) -> None:
    text = status_text(_env(tmp_path, os.getpid(), os.getpid()))
    assert "Error querying BIRD: unable to connect to BIRD socket:" in text

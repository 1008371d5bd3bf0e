"""calicoctl node status: is Calico running on this host, and how are its BGP sessions.

Reads only local files in CALICO_RUN_DIR (default /var/run/calico), never the datastore:
- `felix.pid` (written by the node runner) -- else any process whose program is
  `calico-felix` -- decides "Calico process is running.";
- `bird.pid` (written by `bird -P`) and the control socket `bird.ctl`: BIRD's
  `show protocols`, one table per family, as Calico's status.go prints them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import click

from calico.bgp.birdctl import BirdError, PeerStatus, bgp_peers
from calico.ctl.context import CtlContext, CtlError

DEFAULT_RUN_DIR = "/var/run/calico"
HEADER = ("PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO")


def _pid_alive(pid_file: Path) -> bool | None:
    """True/False for the process a pid file names; None when there is no usable pid file."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _felix_in_proc_table(proc: Path = Path("/proc")) -> bool:
    """Calico's psContains: a process whose program (or script) is calico-felix."""
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            args = (entry / "cmdline").read_bytes().split(b"\0")[:2]
            if any(os.path.basename(a) == b"calico-felix" for a in args):
                return True
    return False


def felix_running(run_dir: Path) -> bool:
    alive = _pid_alive(run_dir / "felix.pid")
    return alive if alive is not None else _felix_in_proc_table()


def bird_running(run_dir: Path) -> bool:
    alive = _pid_alive(run_dir / "bird.pid")
    return alive if alive is not None else (run_dir / "bird.ctl").exists()


def render_table(rows: Sequence[Sequence[str]]) -> str:
    """tablewriter's default look: `+---+` rules, centred headers, left-aligned cells."""
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def centred(cell: str, width: int) -> str:
        left = (width - len(cell)) // 2  # tablewriter puts the odd space on the right
        return " " * left + cell.ljust(width - left)

    def line(cells: Sequence[str], centre: bool) -> str:
        pairs = zip(cells, widths, strict=True)
        return "| " + " | ".join(centred(c, w) if centre else c.ljust(w) for c, w in pairs) + " |"

    return "\n".join([rule, line(HEADER, True), rule, *(line(r, False) for r in rows), rule])


def peers_report(peers: Sequence[PeerStatus]) -> str:
    """The two "IPv<n> BGP status" sections."""
    out = []
    for version in (4, 6):
        rows = [
            [p.address, p.peer_type, p.state, p.since, p.info]
            for p in peers
            if p.version == version
        ]
        out.append(f"\nIPv{version} BGP status")
        out.append(render_table(rows) if rows else f"No IPv{version} peers found.")
    return "\n".join(out)


def status_text(environ: Mapping[str, str]) -> str:
    """The whole report; CtlError when Calico is not running on this host."""
    run_dir = Path(environ.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR)
    if not felix_running(run_dir):
        raise CtlError("Calico process is not running.")
    lines = ["Calico process is running."]
    if not bird_running(run_dir):
        lines.append("\nNone of the BGP backend processes (BIRD or GoBGP) are running.")
    else:
        try:
            lines.append(peers_report(bgp_peers(run_dir / "bird.ctl")))
        except OSError as exc:
            lines.append(f"\nError querying BIRD: unable to connect to BIRD socket: {exc}")
        except BirdError as exc:
            raise CtlError(f"Error executing command: {exc}") from None
    return "\n".join(lines) + "\n"


@click.group()
def node() -> None:
    """Calico node commands."""


@node.command()
@click.option("--allow-version-mismatch", is_flag=True, help="Accepted for compatibility.")
@click.pass_obj
def status(ctx: CtlContext, allow_version_mismatch: bool) -> None:
    """Check the status of the Calico node instance and its BGP peerings."""
    click.echo(status_text(ctx.environ))

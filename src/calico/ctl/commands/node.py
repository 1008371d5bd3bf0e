"""calicoctl node status | checksystem | diags | diff: this host's Calico, kernel and
diagnostics.

status -- is Calico running on this host, and how are its BGP sessions.

Reads only local files in CALICO_RUN_DIR (default /var/run/calico), never the datastore:
- `felix.pid` (written by the node runner) -- else any process whose program is
  `calico-felix` -- decides "Calico process is running.";
- `bird.pid` (written by `bird -P`) and the control socket `bird.ctl`: BIRD's
  `show protocols`, one table per family, as Calico's status.go prints them.

checksystem (`calico.ctl.checksystem`) and diags (`calico.ctl.diags`) read the host too;
diags also asks the datastore, and still writes its bundle when the datastore is down.
diff (`calico.felix.drift`) runs Felix's calculation and one dry-run apply on this host.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import click

from calico.bgp.birdctl import BirdError, PeerStatus, bgp_peers
from calico.ctl import checksystem as cs
from calico.ctl import diags as dg
from calico.ctl.context import CtlContext, CtlError, load_etcd_config
from calico.datastore.api import DatastoreError
from calico.model.codec import to_yaml
from calico.model.errors import ResourceError
from calico.model.network import ClusterInformation
from calico.model.registry import KINDS

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


@node.command()
@click.option(
    "-f",
    "--kernel-config",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Kernel config file (default: /proc/config.gz, /boot/config-RELEASE, ...).",
)
def checksystem(kernel_config: str | None) -> None:
    """Check that this host's kernel and programs can run a Calico node."""
    view = cs.SystemView(kernel_config=Path(kernel_config) if kernel_config else None)
    if not cs.report(cs.check(view), click.echo):
        raise CtlError("system doesn't meet one or more minimum systems requirements to run Calico")
    click.echo("System meets minimum system requirements to run Calico!")


def _datastore_status(ctx: CtlContext, bundle: dg.Bundle) -> None:
    try:
        client = ctx.client()
        info = client.get(ClusterInformation, "default")
        bundle.add("datastore/clusterinformation.yaml", to_yaml(info.to_dict()))
        counts = [f"{kind}: {len(client.list(cls).items)}" for kind, cls in KINDS.items()]
        bundle.add("datastore/resource_counts", "\n".join(counts) + "\n")
    except (CtlError, DatastoreError, ResourceError) as exc:  # the bundle still matters
        bundle.add("datastore/error", f"{exc}\n")
    try:
        bundle.add("node_status", status_text(ctx.environ))
    except CtlError as exc:
        bundle.add("node_status", f"{exc.message}\n")


def _key_files(ctx: CtlContext) -> list[str]:
    try:
        config = load_etcd_config(ctx.config_path, ctx.environ)
    except CtlError:
        return [ctx.environ.get("ETCD_KEY_FILE", "")]
    return [config.key_file or "", ctx.environ.get("ETCD_KEY_FILE", "")]


@node.command()
@click.option(
    "--log-dir",
    default="/var/log/calico",
    show_default=True,
    help="The directory containing Calico logs.",
)
@click.option("--allow-version-mismatch", is_flag=True, help="Accepted for compatibility.")
@click.pass_obj
def diags(ctx: CtlContext, log_dir: str, allow_version_mismatch: bool) -> None:
    """Gather a diagnostics bundle (logs, config, kernel and datastore state), secrets removed."""
    click.echo("Collecting diagnostics")
    bundle = dg.Bundle(never_read=dg.never_read(ctx.environ, _key_files(ctx)))
    for line in dg.kernel_state(bundle):
        click.echo(line)
    click.echo("Copying Calico logs and configuration")
    run_dir = Path(ctx.environ.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR)
    dg.local_files(bundle, Path(log_dir), run_dir, Path("/etc/calico"))
    click.echo("Querying the datastore")
    _datastore_status(ctx, bundle)
    now = time.time()
    tmp_dir = Path(tempfile.mkdtemp(prefix="calico"))
    click.echo(f"Using temp dir: {tmp_dir}")
    path = tmp_dir / dg.bundle_name(now)
    path.write_bytes(bundle.tar_bytes(now))
    click.echo(f"\nDiags saved to {path}")


class _CheckFailed(click.ClickException):
    exit_code = 2  # as diff(1): 1 means "differs"


@node.command()
@click.option(
    "--nodename",
    help="Check this node against calicoctl's own environment and datastore settings, instead "
    "of the running Felix's (taken through CALICO_RUN_DIR/felix.pid).",
)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds.")
@click.pass_obj
def diff(ctx: CtlContext, nodename: str | None, output: str, timeout: float) -> None:
    """Compare this host's kernel with what Felix programs from the datastore: routes,
    iptables chains and rules, IP sets and members, sysctls, VXLAN entries. Prints what Felix
    would add (+) or remove (-); exit 0: no drift, 1: drift, 2: the check could not run."""
    from calico.dataplane.drift_report import drift_items, render_text
    from calico.felix.drift import DriftError, dry_apply, felix_environment

    try:
        if nodename is not None:
            etcd = load_etcd_config(ctx.config_path, ctx.environ)
            environ = {
                **ctx.environ,
                "NODENAME": nodename,
                "ETCD_ENDPOINTS": ",".join(etcd.endpoints),
                "ETCD_CA_CERT_FILE": etcd.ca_cert_file or "",
                "ETCD_CERT_FILE": etcd.cert_file or "",
                "ETCD_KEY_FILE": etcd.key_file or "",
            }
        else:
            environ = felix_environment(Path(ctx.environ.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR))
        recorded = dry_apply(environ, timeout)
    except (DriftError, CtlError, ValueError) as exc:
        raise _CheckFailed(str(exc)) from None
    items = drift_items(recorded.writes, recorded.reads)
    if output == "json":
        click.echo(json.dumps({"drift": [i.as_dict() for i in items]}, indent=2))
    else:
        click.echo(render_text(items) if items else "no drift")
    raise SystemExit(1 if items else 0)

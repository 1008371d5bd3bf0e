"""`calico lab`: a multi-host Calico deployment on this machine, hosts as network namespaces.

The lab's state (namespaces, PIDs, logs) lives in a state dir, by default
/var/run/calico-lab/<lab name>, so every command after `up` works from a new invocation.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import click

from calico import programs
from calico.lab.base import LabError
from calico.lab.lab import Lab
from calico.lab.labfile import LabFileError, read_lab
from calico.lab.probe import PROTOCOLS
from calico.lab.report import format_matrix, format_status
from calico.lab.state import DEFAULT_STATE_ROOT, only_lab, state_dir_for


class LabContext:
    def __init__(self, state_dir: Path | None, name: str | None) -> None:
        self.state_dir, self.name = state_dir, name

    def resolve(self, lab_name: str | None = None) -> Path:
        if self.state_dir is not None:
            return self.state_dir
        if self.name or lab_name:
            return state_dir_for(self.name or lab_name or "")
        found = only_lab()
        if found is None:
            raise click.ClickException(
                f"no single lab under {DEFAULT_STATE_ROOT}: give --name or --state-dir"
            )
        return found

    def open(self) -> Lab:
        try:
            return Lab.open(self.resolve())
        except LabError as exc:
            raise click.ClickException(str(exc)) from None


pass_ctx = click.make_pass_decorator(LabContext)


@click.group()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CALICO_LAB_STATE_DIR",
    help=f"The lab's state dir (default {DEFAULT_STATE_ROOT}/<lab name>).",
)
@click.option("--name", help="The lab's name, to find its state dir.")
@click.pass_context
def lab(ctx: click.Context, state_dir: Path | None, name: str | None) -> None:
    """Labs of Calico hosts as network namespaces on this machine (needs root)."""
    ctx.obj = LabContext(state_dir, name)


@lab.command()
@click.option("-f", "--filename", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--down-on-failure", is_flag=True, help="Remove the lab if `up` fails.")
@pass_ctx
def up(ctx: LabContext, filename: Path, down_on_failure: bool) -> None:
    """Build the lab described in a lab file and start everything in it."""
    try:
        spec = read_lab(filename)
        the_lab = Lab.create(spec, ctx.resolve(spec.name))
    except (LabFileError, LabError) as exc:
        raise click.ClickException(str(exc)) from None
    started = time.monotonic()
    click.echo(f"lab {spec.name}: state in {the_lab.dir}, namespaces {the_lab.state.prefix}-*")
    try:
        the_lab.up(lambda msg: click.echo(f"{time.monotonic() - started:6.1f}s {msg}"))
    except (LabError, KeyboardInterrupt) as exc:
        click.echo(f"calico lab up: failed: {exc}", err=True)
        if down_on_failure:
            the_lab.down()
        else:
            click.echo(
                f"The lab is left for inspection (logs in {the_lab.dir});"
                " `calico lab down` removes it.",
                err=True,
            )
        sys.exit(1)
    finally:
        the_lab.close()
    click.echo(f"lab {spec.name} is up ({time.monotonic() - started:.1f}s)")
    click.echo(format_status(the_lab.status()))


@lab.command()
@pass_ctx
def down(ctx: LabContext) -> None:
    """Stop every process of the lab and remove its namespaces and state."""
    the_lab = ctx.open()
    the_lab.down(lambda msg: click.echo(msg))
    click.echo(f"lab {the_lab.state.name} removed")


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(ctx: LabContext, as_json: bool) -> None:
    """Hosts (node, Felix, BIRD), workloads and BGP sessions."""
    the_lab = ctx.open()
    doc = the_lab.status()
    click.echo(json.dumps(doc, indent=2) if as_json else format_status(doc))


@lab.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_ctx
def exec(ctx: LabContext, name: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside machine NAME's namespace (e.g. `exec host-1 -- calicoctl node
    status`). On hosts, ETCD_ENDPOINTS, NODENAME and CALICO_RUN_DIR are set for it."""
    the_lab = ctx.open()
    try:
        argv = the_lab.exec_argv(name, [])
    except LabError as exc:
        raise click.ClickException(str(exc)) from None
    env = the_lab.exec_env(name)
    sys.stdout.flush()
    programs.replace_process(argv, env, user_command=command)


@lab.command()
@click.argument("source")
@click.argument("target")
@click.option("--proto", type=click.Choice(PROTOCOLS), default="tcp", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), help="Default: the target's first port.")
@click.option("-6", "ipv6", is_flag=True, help="Use the target's IPv6 address.")
@click.option("--timeout", type=float, default=1.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--explain",
    is_flag=True,
    help="Also list the Calico iptables rules of the ends' hosts whose counters the probe moved.",
)
@pass_ctx
def probe(
    ctx: LabContext,
    source: str,
    target: str,
    proto: str,
    port: int | None,
    ipv6: bool,
    timeout: float,
    as_json: bool,
    explain: bool,
) -> None:
    """Connect from SOURCE to TARGET (a machine or an IP); exit 0 if it succeeds, 1 if not."""
    the_lab = ctx.open()
    try:
        if explain:
            result, hits = the_lab.probe_explained(source, target, proto, port, ipv6, timeout)
        else:
            result, hits = the_lab.probe(source, target, proto, port, ipv6, timeout), []
    except LabError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        data = result.to_json()
        if explain:
            data["rules_hit"] = [h.to_json() for h in hits]
        click.echo(json.dumps(data))
    else:
        click.echo(result.describe())
        for hit in hits:
            click.echo(f"  {hit.describe()}")
    sys.exit(0 if result.ok else 1)


@lab.command()
@click.option("--proto", type=click.Choice(PROTOCOLS), default="tcp", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535))
@click.option("-6", "ipv6", is_flag=True)
@pass_ctx
def matrix(ctx: LabContext, proto: str, port: int | None, ipv6: bool) -> None:
    """Which workload reaches which (rows: from, columns: to)."""
    the_lab = ctx.open()
    click.echo(format_matrix(the_lab.matrix(proto, port, ipv6)))


@lab.command()
@click.argument("hosts", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def drift(ctx: LabContext, hosts: tuple[str, ...], as_json: bool) -> None:
    """Each host's kernel against what its Felix programs from the datastore (`calicoctl
    node diff` on every host, or on HOSTS); exit 1 if any host drifted, 2 if a check failed."""
    the_lab = ctx.open()
    names = list(hosts) or [h.name for h in the_lab.spec.hosts]
    unknown = sorted(set(names) - {h.name for h in the_lab.spec.hosts})
    if unknown:
        raise click.ClickException(f"not hosts of this lab: {', '.join(unknown)}")
    output = ["-o", "json"] if as_json else []
    results = {n: the_lab.exec(n, ["calicoctl", "node", "diff", *output]) for n in names}
    if as_json:
        doc = {
            name: json.loads(r.stdout) if r.returncode in (0, 1) else {"error": r.stderr.strip()}
            for name, r in results.items()
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        for name, result in results.items():
            text = result.stdout if result.returncode in (0, 1) else result.stderr
            click.echo(f"{name}:\n{textwrap.indent(text.rstrip(), '  ')}")
    sys.exit(min(max(r.returncode for r in results.values()), 2))

"""calicoctl ipam show [--show-blocks] [--ip=IP] | release (--ip=IP | --from-report=FILE...
[--force]) | check [-o FILE] [--show-problem-ips] | configure [--strictaffinity=BOOL]
[--max-blocks-per-host=N].

Tables are drawn as calicoctl draws them (go-pretty's default style: `+---+` rules, centred
headers, numeric totals right-aligned); counts use Go's `%.5g` and whole percentages.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import click

from calico import __version__
from calico.ctl.commands.ipam_report import release_from_reports
from calico.ctl.context import CtlContext, CtlError, reported
from calico.ipam.allocator import IPAMClient
from calico.ipam.api import IPAMError
from calico.ipam.check import IPAMChecker
from calico.ipam.usage import PoolUsage
from calico.model.base import ObjectMeta
from calico.model.codec import parse_resource
from calico.model.network import IPAMConfiguration

_VERSION = f"calico-py-{__version__}"  # stamped on reports; release checks it
USAGE_HEADER = ("GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE")
_RIGHT_ALIGNED = {2}


@contextmanager
def _ipam(ctx: CtlContext) -> Iterator[IPAMClient]:
    """An IPAM client on calicoctl's datastore; IPAM and datastore errors become CLI errors."""
    with reported():
        client = IPAMClient(ctx.client().backend)
        try:
            yield client
        except IPAMError as exc:
            raise CtlError(str(exc)) from None


def _valid_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise CtlError(f"Invalid IP address specified: {text}") from None


def render_box_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A go-pretty StyleDefault table: centred headers, column 2 right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: Sequence[str], head: bool) -> str:
        out = []
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            if head:
                left = (width - len(cell)) // 2
                out.append(" " * left + cell + " " * (width - len(cell) - left))
            else:
                out.append(cell.rjust(width) if i in _RIGHT_ALIGNED else cell.ljust(width))
        return "| " + " | ".join(out) + " |"

    body = [line(r, head=False) for r in rows]
    return "\n".join([rule, line(header, head=True), rule, *body, rule]) + "\n"


def _num(n: int) -> str:
    return f"{float(n):.5g}"


def _row(kind: str, cidr: str, capacity: int, in_use: int) -> list[str]:
    def pct(n: int) -> str:
        return f"{_num(n)} ({100 * n / capacity:.0f}%)" if capacity else _num(n)

    return [kind, cidr, _num(capacity), pct(in_use), pct(capacity - in_use)]


def usage_rows(usage: Sequence[PoolUsage], show_blocks: bool) -> list[list[str]]:
    rows = []
    for pool in usage:
        if pool.cidr is not None:
            rows.append(_row("IP Pool", pool.cidr, pool.capacity, pool.in_use))
        if show_blocks:
            rows += [_row("Block", b.cidr, b.capacity, b.in_use) for b in pool.blocks]
    return rows


def _describe_ip(client: IPAMClient, ip: str) -> str:
    attribute = client.allocation_of(ip)
    if attribute is None:
        return f"{ip} is not assigned\n"
    lines = [f"IP {ip} is in use", f"Handle ID: {attribute.handle_id or '<none>'}"]
    if attribute.secondary:
        lines.append("Attributes:")
        lines += [f"  {k}: {v}" for k, v in sorted(attribute.secondary.items())]
    else:
        lines.append("No attributes defined")
    return "\n".join(lines) + "\n"


@click.group()
def ipam() -> None:
    """IP address management: usage, releasing addresses, consistency checks."""


@ipam.command()
@click.option("--ip", "ip", default=None, help="Show whether this address is in use, and by what.")
@click.option("--show-blocks", is_flag=True, help="Also show each block's usage.")
@click.pass_obj
def show(ctx: CtlContext, ip: str | None, show_blocks: bool) -> None:
    """Show IP address usage per pool (and block), or the allocation of one address."""
    address = _valid_ip(ip) if ip is not None else None
    with _ipam(ctx) as client:
        if address is not None:
            text = _describe_ip(client, address)
        else:
            text = render_box_table(USAGE_HEADER, usage_rows(client.usage(), show_blocks))
    click.echo(text, nl=False)


@ipam.command()
@click.option("--ip", "ip", default=None, help="The address to release.")
@click.option(
    "--from-report",
    "reports",
    multiple=True,
    help="Release what this `ipam check -o` report calls leaked (repeat: only what all do).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Release even if the datastore is not locked or the report is from another version.",
)
@click.pass_obj
def release(ctx: CtlContext, ip: str | None, reports: tuple[str, ...], force: bool) -> None:
    """Release an address, or the leaks a report lists (whatever still uses an address keeps
    using it: clean-up only)."""
    if reports:
        with _ipam(ctx) as client:
            release_from_reports(client, reports, _VERSION, force, click.echo)
        click.echo("You may now unlock the data store.")
        return
    if ip is None:
        raise CtlError("give --ip=IP or --from-report=FILE")
    address = _valid_ip(ip)
    with _ipam(ctx) as client:
        unallocated = client.release_ips([address])
    if unallocated:
        raise CtlError(f"IP address {address} is not assigned")
    click.echo(f"Successfully released IP address {address}")


@ipam.command()
@click.option("-o", "--output", "output", default=None, help="Write a JSON report to FILE.")
@click.option("--show-problem-ips", is_flag=True, help="List every leaked or unallocated IP.")
@click.pass_obj
def check(ctx: CtlContext, output: str | None, show_problem_ips: bool) -> None:
    """Report allocations whose workload or node is gone, and handles with no addresses."""
    with _ipam(ctx) as client:
        checker = IPAMChecker(client.store, client.resources, click.echo, show_problem_ips)
        report = checker.run(_VERSION)
    if output is not None:
        try:
            Path(output).write_text(json.dumps(report, indent=2) + "\n")
        except OSError as exc:
            raise CtlError(f"cannot write report {output}: {exc}") from None


def _parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool, which calicoctl uses for --strictaffinity."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise CtlError("invalid value. Use true or false to set strictaffinity")


def configured(
    current: IPAMConfiguration | None, strict: bool | None, max_blocks: int | None
) -> IPAMConfiguration:
    """The IPAMConfiguration `default` with the options given, refused where Calico's
    SetIPAMConfig refuses it."""
    config = current or IPAMConfiguration(metadata=ObjectMeta(name="default"))
    data = config.to_dict()
    if strict is not None:
        data["spec"]["strictAffinity"] = strict
    if max_blocks is not None:
        data["spec"]["maxBlocksPerHost"] = max_blocks
    result = parse_resource(data)
    assert isinstance(result, IPAMConfiguration)
    spec = result.spec
    if not spec.strictAffinity and spec.autoAllocateBlocks is False:
        raise CtlError("Cannot disable 'StrictAffinity' and 'AutoAllocateBlocks' at the same time")
    if (spec.maxBlocksPerHost or 0) > 0 and not spec.strictAffinity:
        raise CtlError("MaxBlocksPerHost requires StrictAffinity to be enabled")
    return result


@ipam.command()
@click.option(
    "--strictaffinity",
    "strict_text",
    default=None,
    metavar="true|false",
    help="When true, hosts never borrow addresses from blocks affine to other hosts.",
)
@click.option(
    "--max-blocks-per-host",
    "max_blocks",
    type=click.IntRange(min=0, max=2**31 - 1),
    default=None,
    help="The most blocks one host may claim (0: no limit but Calico's safeguard of 20).",
)
@click.pass_obj
def configure(ctx: CtlContext, strict_text: str | None, max_blocks: int | None) -> None:
    """Change the IPAM configuration (IPAMConfiguration `default`)."""
    strict = _parse_bool(strict_text) if strict_text is not None else None
    if strict is None and max_blocks is None:
        raise CtlError("at least one configuration option must be specified")
    with reported():
        ctx.client().update_or_create(
            IPAMConfiguration, "default", None, lambda c: configured(c, strict, max_blocks)
        )
    if strict is not None:
        click.echo(f"Successfully set StrictAffinity to: {str(strict).lower()}")
    if max_blocks is not None:
        click.echo(f"Successfully set MaxBlocksPerHost to: {max_blocks}")

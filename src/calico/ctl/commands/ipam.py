"""calicoctl ipam show [--show-blocks] [--ip=IP] | release --ip=IP | check [-o FILE].

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
from calico.ctl.context import CtlContext, CtlError, reported
from calico.ipam.allocator import IPAMClient
from calico.ipam.api import IPAMError
from calico.ipam.check import IPAMChecker
from calico.ipam.usage import PoolUsage

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
@click.option("--ip", "ip", required=True, help="The address to release.")
@click.pass_obj
def release(ctx: CtlContext, ip: str) -> None:
    """Release an address (whatever still uses it keeps using it: clean-up only)."""
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
        report = checker.run(f"calico-py-{__version__}")
    if output is not None:
        try:
            Path(output).write_text(json.dumps(report, indent=2) + "\n")
        except OSError as exc:
            raise CtlError(f"cannot write report {output}: {exc}") from None

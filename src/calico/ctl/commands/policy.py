"""calicoctl policy trace: would this packet be allowed, and which rule decides, per hop.

Exit 0 for either verdict; an error (unknown workload, bad address, bad protocol or port)
exits 1 naming the flag.
"""

from __future__ import annotations

import ipaddress
import json

import click

from calico.ctl.context import CtlContext, CtlError, reported
from calico.ctl.trace_source import (
    EndError,
    Snapshot,
    address_end,
    hosts_of,
    rules_settings,
    workload_end,
)
from calico.rules.trace import Decision, End, Flow, Hop, HostInput, Trace, to_json, trace

_PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132, "udplite": 136, "icmp": 1, "icmpv6": 58}
_PORTED = ("tcp", "udp", "sctp", "udplite")
_ECHO_REQUEST = {1: 8, 58: 128}
EPHEMERAL_PORT = 32768


@click.group()
def policy() -> None:
    """Explain policy decisions."""


@policy.command("trace")
@click.option("--from", "from_wl", metavar="NAMESPACE/WORKLOAD", help="Source workload.")
@click.option("--from-ip", metavar="IP", help="Source address (a workload's, or external).")
@click.option("--to", "to_wl", metavar="NAMESPACE/WORKLOAD", help="Destination workload.")
@click.option("--to-ip", metavar="IP", help="Destination address (a workload's, or external).")
@click.option("--protocol", required=True, help="TCP, UDP, SCTP, UDPLite, ICMP or ICMPv6.")
@click.option("--port", type=int, default=None, help="Destination port (TCP, UDP, SCTP).")
@click.option(
    "--source-port",
    type=int,
    default=EPHEMERAL_PORT,
    show_default=True,
    help="Source port (TCP, UDP, SCTP).",
)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.pass_obj
def trace_command(
    ctx: CtlContext,
    from_wl: str | None,
    from_ip: str | None,
    to_wl: str | None,
    to_ip: str | None,
    protocol: str,
    port: int | None,
    source_port: int,
    output: str,
) -> None:
    """Trace a new connection: egress policy on the source's host, ingress on the
    destination's; ICMP is an echo request."""
    proto = protocol.lower()
    if proto not in _PROTOCOLS:
        raise CtlError(
            f"--protocol {protocol!r}: expected one of TCP, UDP, SCTP, UDPLite, ICMP, ICMPv6"
        )
    ported = proto in _PORTED
    if ported and (port is None or not 0 < port < 65536):
        raise CtlError(f"--port: {proto.upper()} needs a destination port 1-65535")
    if not ported and port is not None:
        raise CtlError(f"--port: {protocol} has no ports")
    if not 0 < source_port < 65536:
        raise CtlError("--source-port: expected 1-65535")
    version = _version(from_ip, "--from-ip") or _version(to_ip, "--to-ip")
    if (
        version is not None
        and proto in ("icmp", "icmpv6")
        and (version == 6) != (proto == "icmpv6")
    ):
        raise CtlError(
            f"--protocol {protocol}: not an IPv{version} protocol (ICMP is IPv4, ICMPv6 IPv6)"
        )
    with reported():
        snapshot = Snapshot.load(ctx.client())
    if version is None and proto == "icmpv6":
        version = 6
    src = _end(snapshot, from_wl, from_ip, "--from", version)
    dst = _end(snapshot, to_wl, to_ip, "--to", version or ipaddress.ip_address(src.address).version)
    if ipaddress.ip_address(src.address).version != ipaddress.ip_address(dst.address).version:
        raise CtlError(f"--to: {dst.address} is not in the IP family of {src.address}")
    if src.host is None and dst.host is None:
        raise CtlError("--from/--to: neither end is a workload endpoint: nothing to trace")
    number = _PROTOCOLS[proto]
    flow = Flow(
        src,
        dst,
        number,
        dst_port=port,
        src_port=source_port if ported else None,
        icmp_type=_ECHO_REQUEST.get(number),
        icmp_code=0 if number in _ECHO_REQUEST else None,
    )
    with reported():
        hosts = {
            h: HostInput(
                snapshot.host_state(h), rules_settings(ctx.client(), h), snapshot.uplink(h)
            )
            for h in hosts_of((src, dst))
        }
    result = trace(hosts, flow, snapshot.considered())
    if output == "json":
        click.echo(json.dumps(to_json(result), indent=2))
    else:
        click.echo(_text(flow, result))


def _version(address: str | None, flag: str) -> int | None:
    if address is None:
        return None
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        raise CtlError(f"{flag}: {address!r} is not an IP address") from None


def _end(
    snapshot: Snapshot, workload: str | None, address: str | None, flag: str, version: int | None
) -> End:
    if (workload is None) == (address is None):
        raise CtlError(f"{flag}: give exactly one of {flag} NAMESPACE/WORKLOAD and {flag}-ip IP")
    try:
        if workload is not None:
            return workload_end(snapshot, workload, version)
        assert address is not None
        return address_end(snapshot, address)
    except EndError as exc:
        raise CtlError(f"{flag if workload is not None else flag + '-ip'}: {exc}") from None


def _text(flow: Flow, result: Trace) -> str:
    lines = [f"{_describe(flow.src)} -> {_describe(flow.dst)}: {result.verdict.upper()}"]
    if not result.hops:
        lines.append("  (no Calico endpoint on the path)")
    for hop in result.hops:
        lines += _hop_lines(hop)
    return "\n".join(lines)


def _describe(end: End) -> str:
    if end.workload is None:
        return f"{end.address} (external)"
    return f"{end.workload.namespace}/{end.workload.name} ({end.address} on {end.host})"


def _hop_lines(hop: Hop) -> list[str]:
    lines = [f"{hop.direction} on {hop.host}: {hop.verdict} ({_decision(hop.decision)})"]
    for ep in hop.endpoints:
        lines.append(f"  {ep.endpoint} {ep.direction} [{ep.table} {ep.chain}]")
        if not ep.tiers:
            lines.append("    no policy selects the endpoint")
        for tier, policies in ep.tiers:
            if not any(p.selected for p in policies):
                lines.append(f"    tier {tier}: no policy selects the endpoint (tier skipped)")
                continue
            lines.append(f"    tier {tier}")
            for p in policies:
                said = _result(p.reached, p.decision) if p.selected else "does not select it"
                lines.append(f"      policy {p.name}: {said}")
        for p in ep.profiles:
            lines.append(f"    profile {p.name}: {_result(p.reached, p.decision)}")
        lines.append(f"    => {_decision(ep.decision)}")
    return lines


def _result(reached: bool, decision: Decision | None) -> str:
    if not reached:
        return "not reached"
    if decision is None:
        return "no rule matched"
    return f"rule {decision.rule_index}: {decision.action} ({decision.rule})"


def _decision(decision: Decision | None) -> str:
    if decision is None:
        return "no Calico rule decided"
    who = decision.policy or decision.profile
    if who is not None:
        return f"{decision.what} {who} rule {decision.rule_index}: {decision.action}"
    tier = f" {decision.tier}" if decision.what == "end of tier" else ""
    return f"{decision.what}{tier}: {decision.action}"

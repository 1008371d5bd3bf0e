"""calicoctl policy trace: would this packet be allowed, and which rule decides, per hop.

Exit 0 for either verdict; an error (unknown workload or host, bad address, bad protocol or
port) exits 1 naming the flag, and so does a flow the walk cannot model (saying why).
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
    host_end,
    host_input,
    host_reports,
    hosts_of,
    source_override,
    unresolved_crossing,
    workload_end,
)
from calico.rules.packet_walk import WalkError
from calico.rules.trace import Decision, End, Flow, Hop, Nat, Trace, to_json, trace

_PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132, "udplite": 136, "icmp": 1, "icmpv6": 58}
_PORTED = ("tcp", "udp", "sctp", "udplite")
_ECHO_REQUEST = {1: 8, 58: 128}
EPHEMERAL_PORT = 32768


@click.group()
def policy() -> None:
    """Explain policy decisions."""


@policy.command("trace")
@click.option("--from", "from_wl", metavar="NAMESPACE/WORKLOAD", help="Source workload.")
@click.option(
    "--from-ip",
    metavar="IP",
    help="Source address (a workload's, a host's own, or external); with --from, the "
    "address that workload sends from (e.g. one not its own: anti-spoofing).",
)
@click.option("--from-host", metavar="NAME", help="Source host itself (its first address).")
@click.option("--to", "to_wl", metavar="NAMESPACE/WORKLOAD", help="Destination workload.")
@click.option(
    "--to-ip",
    metavar="IP",
    help="Destination address (a workload's or its floating IP, a host's own, or external).",
)
@click.option("--to-host", metavar="NAME", help="Destination host itself (its first address).")
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
    from_host: str | None,
    to_wl: str | None,
    to_ip: str | None,
    to_host: str | None,
    protocol: str,
    port: int | None,
    source_port: int,
    output: str,
) -> None:
    """Trace a new connection: egress policy on the source's host, ingress on the
    destination's (a host's own address: its host endpoint policy, or a local workload's
    egress and DefaultEndpointToHostAction), with the nat tables' translations on the way;
    ICMP is an echo request."""
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
    if version is None and proto in ("icmp", "icmpv6"):
        version = 6 if proto == "icmpv6" else 4
    src = _end(snapshot, (from_wl, from_ip, from_host), "--from", version)
    version = version or ipaddress.ip_address(src.address).version
    dst = _end(snapshot, (to_wl, to_ip, to_host), "--to", version)
    if ipaddress.ip_address(src.address).version != ipaddress.ip_address(dst.address).version:
        raise CtlError(f"--to: {dst.address} is not in the IP family of {src.address}")
    if src.host is None and dst.host is None:
        raise CtlError("--from/--to: neither end is a workload endpoint or host: nothing to trace")
    if src.is_host and dst.is_host and src.host == dst.host:
        raise CtlError(f"--from/--to: both ends are host {src.host}: nothing to trace")
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
        reports = host_reports(ctx.client(), hosts_of((src, dst)))
        hosts = {h: host_input(snapshot, h, r) for h, r in reports.items()}
    for end, other, flag in ((src, dst, "--from-ip"), (dst, src, "--to-ip")):
        if not end.is_host:
            continue
        host = hosts[str(end.host)]
        if number == 17 and port == host.cfg.vxlan_port:
            # Felix's VXLAN rules in INPUT/OUTPUT depend on the host's VTEPs: not rendered.
            raise CtlError(f"--port: {port} is VXLAN's to or from a host: not traced")
        refused = unresolved_crossing(hosts, end, other)
        if refused:
            raise CtlError(f"{flag}: {refused}")
    try:
        result = trace(hosts, flow, snapshot.considered())
    except WalkError as exc:
        raise CtlError(f"cannot trace this flow: {exc}") from None
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
    snapshot: Snapshot,
    given: tuple[str | None, str | None, str | None],
    flag: str,
    version: int | None,
) -> End:
    """One end from exactly one of NAMESPACE/WORKLOAD, IP and host NAME; or, for the
    source, a workload and the address it sends from."""
    workload, address, host = given
    if flag == "--from" and workload is not None and address is not None and host is None:
        return source_override(_end(snapshot, (workload, None, None), flag, version), address)
    if sum(g is not None for g in given) != 1:
        also = " (or --from with --from-ip: the workload sending from that address)"
        raise CtlError(
            f"{flag}: give exactly one of {flag} NAMESPACE/WORKLOAD, {flag}-ip IP "
            f"and {flag}-host NAME{also if flag == '--from' else ''}"
        )
    try:
        if workload is not None:
            return workload_end(snapshot, workload, version)
        if host is not None:
            return host_end(snapshot, host, version)
        assert address is not None
        return address_end(snapshot, address)
    except EndError as exc:
        which = "" if workload is not None else "-host" if host is not None else "-ip"
        raise CtlError(f"{flag}{which}: {exc}") from None


def _text(flow: Flow, result: Trace) -> str:
    lines = [f"{_describe(flow.src)} -> {_describe(flow.dst)}: {result.verdict.upper()}"]
    if not result.hops:
        lines.append("  (no Calico endpoint on the path)")
    for hop in result.hops:
        lines += _hop_lines(hop)
    return "\n".join(lines)


def _describe(end: End) -> str:
    if end.is_host:
        return f"host {end.host} ({end.address})"
    if end.workload is None:
        return f"{end.address} (external)"
    return f"{end.workload.namespace}/{end.workload.name} ({end.address} on {end.host})"


def _hop_lines(hop: Hop) -> list[str]:
    lines = [f"{hop.direction} on {hop.host}: {hop.verdict} ({_decision(hop.decision)})"]
    lines += [f"  nat: {_nat(n)}" for n in hop.nat]
    decision = hop.decision
    if decision is not None and all(ep.decision != decision for ep in hop.endpoints):
        # Decided outside any endpoint chain (anti-spoofing, endpoint to host action...).
        lines.append(f"  decided in [{decision.table} {decision.chain}]: {decision.rule}")
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


def _nat(nat: Nat) -> str:
    to = nat.translated or "the outgoing interface's address"
    return f"{nat.kind} {nat.field} {nat.original} -> {to} [nat {nat.chain}] ({nat.rule})"


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

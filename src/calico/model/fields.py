"""Value types shared by the v3 resources, validated as Calico validates them.

Each type is an `Annotated` alias so pydantic models stay declarative: strings that must be
CIDRs, selectors, ports, protocols, durations and so on. Validators raise ValueError with
the offending value in the message; `calico.model.errors` adds the field path.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, PlainSerializer, PlainValidator

# The name rules, re-exported for the resources and their users.
from calico.model.names import DNS_LABEL as DNS_LABEL
from calico.model.names import DNS_SUBDOMAIN as DNS_SUBDOMAIN
from calico.model.names import check_label_value as check_label_value
from calico.model.names import check_qualified_name as check_qualified_name
from calico.model.names import is_subdomain as is_subdomain

_PORT_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")
_PORT_RANGE = re.compile(r"^(\d+):(\d+)$")
_INTERFACE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_MAC = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")

PROTOCOL_NAMES = ("TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite")
PORT_PROTOCOLS = frozenset({"TCP", "UDP", "SCTP", 6, 17, 132})


def _labels(value: dict[str, str]) -> dict[str, str]:
    for key, val in value.items():
        problem = check_qualified_name(key) or check_label_value(val)
        if problem:
            raise ValueError(problem)
    return value


SELECT_ALL = "all()"


def is_select_all(text: str) -> bool:
    """`all()`, Calico's default selector: it selects everything, which needs no parser to know
    (a CNI ADD would load it only for its pools' default nodeSelector, ~8 ms)."""
    return text.strip() == SELECT_ALL


def _selector(text: str) -> str:
    if is_select_all(text):
        return text
    # The parser is loaded by the first other selector validated, not by every importer of
    # the models.
    from calico.selector import SelectorError
    from calico.selector import parse as parse_selector

    try:
        parse_selector(text)
    except SelectorError as exc:
        raise ValueError(str(exc)) from None
    return text


_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_V4 = re.compile(rf"({_OCTET}(?:\.{_OCTET}){{3}})(?:/(3[0-2]|[12]?[0-9]))?")
_PLAIN_V6 = re.compile(r"([0-9a-fA-F:]{2,39})(?:/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?")


def plain_cidr(text: str) -> tuple[int, int, int] | None:
    """(IP version, address as an integer, prefix length) of `text` when it has the plain
    form endpoints carry: dotted-quad IPv4 without leading zeros, or IPv6 of hex digits and
    colons (no embedded IPv4, no zone), either optionally with "/<length>"; None for any
    other text, which `parse_network` judges. Every text this accepts, ipaddress accepts as
    the same network (tests/unit/model/test_plain_cidr.py), at a few times less cost:
    Felix validates and normalises every endpoint address of the cluster at start-up."""
    match = _PLAIN_V4.fullmatch(text)
    if match is not None:
        a, b, c, d = match[1].split(".")
        value = int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)
        return 4, value, 32 if match[2] is None else int(match[2])
    match = _PLAIN_V6.fullmatch(text)
    if match is None:
        return None
    high, double, low = match[1].partition("::")
    groups = high.split(":") if high else []
    if double:  # "::" stands for one or more zero groups
        tail = low.split(":") if low else []
        skipped = 8 - len(groups) - len(tail)
        if skipped < 1:
            return None
        groups += ["0"] * skipped + tail
    if len(groups) != 8:
        return None
    value = 0
    for group in groups:
        if not 0 < len(group) <= 4:  # also a second "::", or a lone ":" at either end
            return None
        value = value << 16 | int(group, 16)
    return 6, value, 128 if match[2] is None else int(match[2])


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR or a bare IP (taken as /32 or /128); host bits may be set."""
    plain = plain_cidr(text)
    if plain is not None and plain[2] == (32 if plain[0] == 4 else 128):  # one address
        version, value, _ = plain
        return ipaddress.IPv4Network(value) if version == 4 else ipaddress.IPv6Network(value)
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid IP address or CIDR") from None


def is_single_address(text: str) -> bool:
    """Whether a valid CIDR text is one address (a bare address, /32 or /128). A plain one is
    judged without building a network object: Felix checks every endpoint's at start-up."""
    plain = plain_cidr(text)
    if plain is not None:
        return plain[2] == (32 if plain[0] == 4 else 128)
    net = parse_network(text)
    return net.prefixlen == net.max_prefixlen


def _single_address(text: str) -> str:
    if not is_single_address(text):
        raise ValueError(f"{text!r} must be a single address (/32 or /128)")
    return text


def _cidr(text: str) -> str:
    if plain_cidr(text) is None:
        parse_network(text)
    return text


def _masked_net(text: str) -> str:
    """A strictly masked network, as Calico's `net` validator requires for rule nets."""
    net = parse_network(text)
    addr = text.split("/", 1)[0]
    if ipaddress.ip_address(addr) != net.network_address:
        raise ValueError(
            f"{text!r} is not a valid network: host bits are set (did you mean {net}?)"
        )
    return text


def _ip(text: str) -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid IP address") from None
    return text


def _interface(text: str) -> str:
    if text != "*" and not _INTERFACE.match(text):
        raise ValueError(f"{text!r} is not a valid interface name (1-15 of [a-zA-Z0-9_.-])")
    return text


def _duration(text: str) -> str:
    duration_seconds(text)
    return text


def duration_seconds(text: str) -> float:
    """A Go duration ("90s", "1m30s", "500ms", "0") in seconds; ValueError if it is not one."""
    if not _DURATION.match(text):
        raise ValueError(f'{text!r} is not a valid duration (e.g. "90s", "1m30s", "500ms")')
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def _mac(text: str) -> str:
    if not _MAC.match(text):
        raise ValueError(f"{text!r} is not a valid MAC address")
    return text


def _subdomain(text: str) -> str:
    if not is_subdomain(text):
        raise ValueError(
            f"{text!r} is not a valid name: lower case alphanumerics, '-' or '.', "
            "starting and ending with an alphanumeric"
        )
    return text


def parse_port(value: Any) -> int | str:
    """numorstring.Port: an int, "N", "lo:hi" or a port name; normalised like Calico."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a port number, range or name, got {value!r}")
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise ValueError(f"{value} is not a valid port: must be between 1 and 65535")
        return value
    if value.isdigit():
        return parse_port(int(value))
    match = _PORT_RANGE.match(value)
    if match:
        low, high = int(match.group(1)), int(match.group(2))
        if not (1 <= low <= 65535 and 1 <= high <= 65535):
            raise ValueError(f'"{value}" is not a valid port range: ports must be 1-65535')
        if low > high:
            raise ValueError(
                f'"{value}" is not a valid port range: minimum port {low} is greater than '
                f"maximum port {high}"
            )
        return value if low != high else low
    if not _PORT_NAME.match(value):
        raise ValueError(f'"{value}" is not a valid port, port range or port name')
    return value


def parse_protocol(value: Any) -> int | str:
    """numorstring.Protocol: a number 1-255 or a name; names are matched case-insensitively
    and stored in Calico's canonical spelling (a friendlier superset of Calico's check)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a protocol name or number, got {value!r}")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int):
        if not 1 <= value <= 255:
            raise ValueError(f"{value} is not a valid protocol number: must be 1-255")
        return value
    for name in PROTOCOL_NAMES:
        if name.lower() == value.lower():
            return name
    raise ValueError(
        f'"{value}" is not a valid protocol: use one of {", ".join(PROTOCOL_NAMES)} or 1-255'
    )


def parse_as_number(value: Any) -> int:
    """numorstring.ASNumber: 0..2^32-1, or the dotted "high.low" form."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected an AS number, got {value!r}")
    if isinstance(value, str):
        high, dot, low = value.partition(".")
        if not value.isdigit() and not (dot and high.isdigit() and low.isdigit()):
            raise ValueError(f'"{value}" is not a valid AS number')
        if not dot:
            return parse_as_number(int(value))
        if int(high) > 65535 or int(low) > 65535:
            raise ValueError(f'"{value}" is not a valid AS number: parts must be 0-65535')
        return (int(high) << 16) + int(low)
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{value} is not a valid AS number: must be 0-4294967295")
    return value


def _integral_float(value: float) -> int | float:
    """Go's JSON encoder prints 100.0 as 100; keep manifests looking the same."""
    return int(value) if float(value).is_integer() else value


Labels = Annotated[dict[str, str], AfterValidator(_labels)]
Selector = Annotated[str, AfterValidator(_selector)]
CIDR = Annotated[str, AfterValidator(_cidr)]
SingleAddress = Annotated[str, AfterValidator(_single_address)]  # a bare address, /32 or /128
MaskedNet = Annotated[str, AfterValidator(_masked_net)]
IPAddress = Annotated[str, AfterValidator(_ip)]
InterfaceName = Annotated[str, AfterValidator(_interface)]
Duration = Annotated[str, AfterValidator(_duration)]
MAC = Annotated[str, AfterValidator(_mac)]
Name = Annotated[str, AfterValidator(_subdomain)]
Port = Annotated[int | str, PlainValidator(parse_port)]
Protocol = Annotated[int | str, PlainValidator(parse_protocol)]
ASNumber = Annotated[int, PlainValidator(parse_as_number)]
Order = Annotated[float, PlainSerializer(_integral_float, return_type=int | float)]

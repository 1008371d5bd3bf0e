"""Policy rules: Rule, EntityRule, ICMP and HTTP matches (projectcalico.org/v3).

The checks are Calico's (libcalico-go validator): ports need TCP, UDP or SCTP; ICMP fields
need ICMP/ICMPv6 and the matching ipVersion; a rule may not mix IPv4 and IPv6 CIDRs;
`global()` only as a namespaceSelector; a services match excludes selectors, nets and
service accounts; HTTP matches only on Allow rules with TCP.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from calico.model.base import Model
from calico.model.errors import FieldError
from calico.model.fields import (
    PORT_PROTOCOLS,
    MaskedNet,
    Name,
    Port,
    Protocol,
    Selector,
)

Action = Literal["Allow", "Deny", "Log", "Pass"]
PolicyType = Literal["Ingress", "Egress"]

_PORTS_MSG = "rules that specify ports must set protocol to TCP, UDP or SCTP"
_GLOBAL_ONLY_NS = "global() can only be used in an EntityRule namespaceSelector"
_ICMP_NUMBERS = {"ICMP": 1, "ICMPv6": 58}


class ICMPFields(Model):
    type: int | None = Field(default=None, ge=0, le=254)
    code: int | None = Field(default=None, ge=0, le=255)

    @model_validator(mode="after")
    def _code_needs_type(self) -> Self:
        if self.code is not None and self.type is None:
            raise FieldError("code", "ICMP code specified without an ICMP type")
        return self


class HTTPPath(Model):
    exact: str | None = Field(default=None, max_length=1024)
    prefix: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if bool(self.exact) == bool(self.prefix):
            raise ValueError("exactly one of 'exact' or 'prefix' must be set")
        path = self.exact or self.prefix or ""
        if not path.startswith("/") or any(c in path for c in "? #"):
            raise ValueError(
                f"{path!r} is not a valid path: must start with '/' and not contain '?', '#', ' '"
            )
        return self


class HTTPMatch(Model):
    methods: list[str] | None = Field(default=None, max_length=20)
    paths: list[HTTPPath] | None = Field(default=None, max_length=20)

    @field_validator("methods")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value and len(set(value)) != len(value):
            raise ValueError(f"duplicate methods in {value}")
        return value


class ServiceMatch(Model):
    name: Name | None = None
    namespace: Name | None = None


class ServiceAccountMatch(Model):
    names: list[str] | None = None
    selector: Selector | None = None


class EntityRule(Model):
    nets: list[MaskedNet] | None = Field(default=None, max_length=256)
    selector: Selector | None = Field(default=None, max_length=1024)
    namespaceSelector: Selector | None = Field(default=None, max_length=1024)
    services: ServiceMatch | None = None
    ports: list[Port] | None = Field(default=None, max_length=50)
    notNets: list[MaskedNet] | None = Field(default=None, max_length=256)
    notSelector: Selector | None = Field(default=None, max_length=1024)
    notPorts: list[Port] | None = Field(default=None, max_length=50)
    serviceAccounts: ServiceAccountMatch | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.selector and "global(" in self.selector:
            raise FieldError("selector", _GLOBAL_ONLY_NS)
        ns_sel = (self.namespaceSelector or "").strip()
        if "global(" in ns_sel and ns_sel.replace(" ", "") != "global()":
            raise FieldError(
                "namespaceSelector", "global() cannot be combined with other selectors"
            )
        if self.services is not None:
            self._check_services()
        return self

    def _check_services(self) -> None:
        assert self.services is not None
        if not self.services.name:
            raise FieldError("services.name", "a services match must name a service")
        if self.namespaceSelector:
            raise FieldError(
                "services", "cannot specify namespaceSelector and services on the same rule"
            )
        if self.selector or self.notSelector:
            raise FieldError(
                "services", "cannot specify selector/notSelector and services on the same rule"
            )
        if self.serviceAccounts is not None:
            raise FieldError(
                "services", "cannot specify serviceAccounts and services on the same rule"
            )
        if self.nets or self.notNets:
            raise FieldError(
                "services", "cannot specify nets/notNets and services on the same rule"
            )


class RuleMetadata(Model):
    annotations: dict[str, str] | None = None


class Rule(Model):
    action: Action
    ipVersion: Literal[4, 6] | None = None
    protocol: Protocol | None = None
    icmp: ICMPFields | None = None
    notProtocol: Protocol | None = None
    notICMP: ICMPFields | None = None
    source: EntityRule | None = None
    destination: EntityRule | None = None
    http: HTTPMatch | None = None
    metadata: RuleMetadata | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        self._check_ports()
        self._check_icmp()
        self._check_nets()
        self._check_http()
        dst = self.destination
        if dst is not None and dst.services is not None and (dst.ports or dst.notPorts):
            raise FieldError(
                "destination.ports", "ports and notPorts cannot be specified with services"
            )
        return self

    def _check_ports(self) -> None:
        if self.protocol in PORT_PROTOCOLS:
            return
        for side in ("source", "destination"):
            entity = getattr(self, side)
            for field in ("ports", "notPorts"):
                if entity is not None and getattr(entity, field):
                    raise FieldError(f"{side}.{field}", _PORTS_MSG)

    def _check_icmp(self) -> None:
        for field, value in (("icmp", self.icmp), ("notICMP", self.notICMP)):
            if value is not None and self.protocol not in ("ICMP", "ICMPv6", 1, 58):
                raise FieldError(
                    field, "rules that specify ICMP fields must set protocol to ICMP or ICMPv6"
                )
        for field in ("protocol", "notProtocol"):
            proto = getattr(self, field)
            for name, number, version in (("ICMP", 1, 4), ("ICMPv6", 58, 6)):
                if proto in (name, number) and self.ipVersion not in (None, version):
                    raise FieldError("ipVersion", f"must be {version} with protocol {name}")

    def _check_nets(self) -> None:
        seen: set[int] = set()
        for side in ("source", "destination"):
            entity = getattr(self, side)
            for field in ("nets", "notNets"):
                for net in (getattr(entity, field) or []) if entity is not None else []:
                    version = ipaddress.ip_network(net, strict=False).version
                    if self.ipVersion is not None and version != self.ipVersion:
                        raise FieldError(
                            f"{side}.{field}", "rule IP version doesn't match CIDR version"
                        )
                    seen.add(version)
                    if len(seen) > 1:
                        raise FieldError(
                            f"{side}.{field}", "rule contains both IPv4 and IPv6 CIDRs"
                        )

    def _check_http(self) -> None:
        if self.http is None:
            return
        if self.action != "Allow":
            raise FieldError("http", "HTTP match is only valid on Allow rules")
        if self.protocol not in (None, "TCP", 6):
            raise FieldError("protocol", "rules with an HTTP match must have protocol TCP or unset")


def check_rule_directions(ingress: list[Rule] | None, egress: list[Rule] | None) -> None:
    """No HTTP match on egress. (Calico's direction rules for services matches are moot: a
    services match is refused, calico.model.support.)"""
    for i, rule in enumerate(egress or []):
        if rule.http is not None:
            raise FieldError(f"egress.{i}.http", "not allowed in egress rules")


def default_types(
    ingress: Sequence[object] | None, egress: Sequence[object] | None
) -> list[PolicyType]:
    """Calico's defaulting of `types` when the user leaves it out (only presence counts)."""
    if egress and ingress:
        return ["Ingress", "Egress"]
    if egress:
        return ["Egress"]
    return ["Ingress"]

"""Policy resources: Tier, NetworkPolicy, GlobalNetworkPolicy, Profile and network sets.

Calico's rules applied here: policy names in a non-default tier are `<tier>.<name>`; the
tier defaults to `default`; `types` defaults from the rules present; GNP-only flags
(doNotTrack, preDNAT, applyOnForward) keep their mutual constraints; `global()` is refused
outside an EntityRule namespaceSelector; built-in tier orders are fixed.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from calico.model.base import Model, Resource
from calico.model.errors import FieldError
from calico.model.fields import CIDR, DNS_LABEL, DNS_SUBDOMAIN, Order, Selector
from calico.model.rules import PolicyType, Rule, check_rule_directions, default_types

DEFAULT_TIER = "default"
DEFAULT_TIER_ORDER = 1_000_000.0
FIXED_TIER_ORDERS = {
    DEFAULT_TIER: DEFAULT_TIER_ORDER,
    "adminnetworkpolicy": 1_000.0,
    "baselineadminnetworkpolicy": 10_000_000.0,
}
DEFAULT_ALLOW_PROFILE = "projectcalico-default-allow"

_TIER_NAME = re.compile(f"^{DNS_LABEL}$")
_GNP_NAME = re.compile(rf"^({DNS_LABEL}\.)?{DNS_LABEL}$")
_NP_NAME = re.compile(
    rf"^(({DNS_LABEL})(\.{DNS_LABEL})?|((knp|ossg)\.default\.({DNS_SUBDOMAIN})))$"
)
_NAME_REASON = "lower case alphanumerics or '-', optionally prefixed by '<tier>.'"


def _no_global(field: str, selector: str | None) -> None:
    if selector and "global()" in selector.replace(" ", ""):
        raise FieldError(field, "global() can only be used in an EntityRule namespaceSelector")


class TierSpec(Model):
    order: Order | None = None
    defaultAction: Literal["Deny", "Pass"] | None = None


class Tier(Resource):
    KIND: ClassVar[str] = "Tier"
    PLURAL: ClassVar[str] = "tiers"
    spec: TierSpec = Field(default_factory=TierSpec)

    def check_name(self) -> str | None:
        if len(self.name) > 63 or not _TIER_NAME.match(self.name):
            return (
                f"{self.name!r} is not a valid tier name: lower case alphanumerics or '-', no dots"
            )
        return None

    def check_spec(self) -> None:
        fixed = FIXED_TIER_ORDERS.get(self.name)
        if fixed is not None and self.spec.order is not None and self.spec.order != fixed:
            raise FieldError("spec.order", f"the {self.name} tier's order must be {fixed:.0f}")

    def apply_defaults(self) -> None:
        fixed = FIXED_TIER_ORDERS.get(self.name)
        if fixed is not None:
            self.spec.order = fixed
        if self.spec.defaultAction is None:
            self.spec.defaultAction = "Deny"


class _PolicySpecBase(Model):
    tier: str | None = None
    order: Order | None = None
    selector: Selector | None = None
    types: list[PolicyType] | None = None
    ingress: list[Rule] | None = Field(default=None, max_length=1024)
    egress: list[Rule] | None = Field(default=None, max_length=1024)
    serviceAccountSelector: Selector | None = None
    performanceHints: list[Literal["AssumeNeededOnEveryNode"]] | None = None

    @field_validator("types")
    @classmethod
    def _unique_types(cls, value: list[PolicyType] | None) -> list[PolicyType] | None:
        for kind in set(value or []):
            if (value or []).count(kind) > 1:
                raise ValueError(f"{kind!r} type specified more than once")
        return value


class NetworkPolicySpec(_PolicySpecBase):
    pass


class GlobalNetworkPolicySpec(_PolicySpecBase):
    namespaceSelector: Selector | None = None
    doNotTrack: bool | None = None
    preDNAT: bool | None = None
    applyOnForward: bool | None = None


class _PolicyBase(Resource):
    NAME_PATTERN: ClassVar[re.Pattern[str]]
    spec: _PolicySpecBase

    @property
    def tier(self) -> str:
        return self.spec.tier or DEFAULT_TIER

    def check_name(self) -> str | None:
        if len(self.name) > 253 or not self.NAME_PATTERN.match(self.name):
            return f"{self.name!r} is not a valid policy name: {_NAME_REASON}"
        if self.name.startswith(("knp.default.", "ossg.default.")):
            return None
        prefix, dot, _ = self.name.partition(".")
        if self.tier != DEFAULT_TIER and prefix != self.tier:
            return f"policy {self.name!r} in tier {self.tier!r} must be named '{self.tier}.<name>'"
        if self.tier == DEFAULT_TIER and dot and prefix != DEFAULT_TIER:
            return f"policy {self.name!r} has tier prefix {prefix!r} but spec.tier is 'default'"
        return None

    def check_spec(self) -> None:
        spec = self.spec
        if spec.tier is not None and not _TIER_NAME.match(spec.tier):
            raise FieldError("spec.tier", f"{spec.tier!r} is not a valid tier name")
        _no_global("spec.selector", spec.selector)
        _no_global("spec.serviceAccountSelector", spec.serviceAccountSelector)
        try:
            check_rule_directions(spec.ingress, spec.egress)
        except FieldError as exc:
            raise FieldError("spec." + exc.subpath, str(exc)) from None

    def apply_defaults(self) -> None:
        if self.spec.tier is None:
            self.spec.tier = DEFAULT_TIER
        if self.spec.types is None:
            self.spec.types = default_types(self.spec.ingress, self.spec.egress)


class NetworkPolicy(_PolicyBase):
    KIND: ClassVar[str] = "NetworkPolicy"
    PLURAL: ClassVar[str] = "networkpolicies"
    NAMESPACED: ClassVar[bool] = True
    NAME_PATTERN: ClassVar[re.Pattern[str]] = _NP_NAME
    spec: NetworkPolicySpec = Field(default_factory=NetworkPolicySpec)


class GlobalNetworkPolicy(_PolicyBase):
    KIND: ClassVar[str] = "GlobalNetworkPolicy"
    PLURAL: ClassVar[str] = "globalnetworkpolicies"
    NAME_PATTERN: ClassVar[re.Pattern[str]] = _GNP_NAME
    spec: GlobalNetworkPolicySpec = Field(default_factory=GlobalNetworkPolicySpec)

    def check_spec(self) -> None:
        super().check_spec()
        spec = self.spec
        _no_global("spec.namespaceSelector", spec.namespaceSelector)
        if spec.doNotTrack and spec.preDNAT:
            raise FieldError("spec.preDNAT", "preDNAT and doNotTrack cannot both be true")
        if spec.preDNAT and spec.egress:
            raise FieldError("spec.egress", "a preDNAT policy cannot have egress rules")
        if spec.preDNAT and "Egress" in (spec.types or []):
            raise FieldError("spec.types", "a preDNAT policy cannot have the Egress type")
        if (spec.doNotTrack or spec.preDNAT) and not spec.applyOnForward:
            raise FieldError(
                "spec.applyOnForward", "must be true when preDNAT or doNotTrack is true"
            )


class ProfileSpec(Model):
    ingress: list[Rule] | None = None
    egress: list[Rule] | None = None
    labelsToApply: dict[str, str] | None = None


class Profile(Resource):
    KIND: ClassVar[str] = "Profile"
    PLURAL: ClassVar[str] = "profiles"
    spec: ProfileSpec = Field(default_factory=ProfileSpec)


class NetworkSetSpec(Model):
    nets: list[CIDR] | None = None


def _no_namespace_label(resource: Resource) -> None:
    if "projectcalico.org/namespace" in (resource.metadata.labels or {}):
        raise FieldError("metadata.labels", "projectcalico.org/namespace is not a valid label name")


class NetworkSet(Resource):
    KIND: ClassVar[str] = "NetworkSet"
    PLURAL: ClassVar[str] = "networksets"
    NAMESPACED: ClassVar[bool] = True
    spec: NetworkSetSpec = Field(default_factory=NetworkSetSpec)

    def check_spec(self) -> None:
        _no_namespace_label(self)


class GlobalNetworkSet(Resource):
    KIND: ClassVar[str] = "GlobalNetworkSet"
    PLURAL: ClassVar[str] = "globalnetworksets"
    spec: NetworkSetSpec = Field(default_factory=NetworkSetSpec)

    def check_spec(self) -> None:
        _no_namespace_label(self)

"""Calico's selector rewriting for namespaces and service accounts (pure).

Felix evaluates every selector against one flat label map per endpoint, so namespace
semantics are compiled into the selectors themselves, exactly as libcalico-go's update
processors do:

- a NetworkPolicy selects `projectcalico.org/namespace == '<ns>'` AND its selector;
- a rule's namespaceSelector is rewritten onto the `pcns.` labels that namespace profiles
  (`kns.<ns>`) give their endpoints; `all()` becomes "in some namespace"
  (`has(projectcalico.org/namespace)`) and `global()` "in no namespace" (its negation);
- inside a NetworkPolicy, a rule selector without namespaceSelector is limited to the
  policy's namespace; notSelector is never namespaced;
- service-account selectors use `pcsa.` labels; names become
  `projectcalico.org/serviceaccount in {...}`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from calico.model.endpoints import LABEL_NAMESPACE, LABEL_SERVICE_ACCOUNT
from calico.model.policy import GlobalNetworkPolicy, NetworkPolicy
from calico.model.rules import EntityRule, ServiceAccountMatch
from calico.selector import Selector, parse
from calico.selector.ast import (
    All,
    And,
    Eq,
    Global,
    Has,
    In,
    LabelValueNode,
    Node,
    Not,
    Or,
    SetNode,
)

NAMESPACE_LABEL_PREFIX = "pcns."
SERVICE_ACCOUNT_LABEL_PREFIX = "pcsa."
NAMESPACE_PROFILE_PREFIX = "kns."


def _prefixed(node: Node, prefix: str) -> Node:
    """Rewrite every label key in the tree as `<prefix><key>`; all()/global() become
    "some namespace" / "no namespace" (they only occur in namespace selectors)."""
    if isinstance(node, All):
        return Has(LABEL_NAMESPACE)
    if isinstance(node, Global):
        return Not(Has(LABEL_NAMESPACE))
    if isinstance(node, Has | LabelValueNode | SetNode):
        return dataclasses.replace(node, label=prefix + node.label)
    if isinstance(node, Not):
        return Not(_prefixed(node.operand, prefix))
    if isinstance(node, And | Or):
        operands = tuple(_prefixed(child, prefix) for child in node.operands)
        return dataclasses.replace(node, operands=operands)
    raise TypeError(f"unexpected selector node {node!r}")


def _and(parts: Sequence[Node]) -> Node:
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def namespace_selector_node(text: str) -> Node:
    return _prefixed(parse(text).root, NAMESPACE_LABEL_PREFIX)


def service_account_node(match: ServiceAccountMatch) -> Node | None:
    parts: list[Node] = []
    if match.selector:
        parts.append(_prefixed(parse(match.selector).root, SERVICE_ACCOUNT_LABEL_PREFIX))
    if match.names:
        parts.append(In(LABEL_SERVICE_ACCOUNT, tuple(sorted(set(match.names)))))
    return _and(parts) if parts else None


def in_namespace(namespace: str) -> Node:
    return Eq(LABEL_NAMESPACE, namespace)


def entity_selector(rule: EntityRule | None, namespace: str | None) -> Selector | None:
    """The single selector for the endpoints an EntityRule matches (None: no constraint)."""
    if rule is None:
        return None
    selectors: list[Node] = []
    if rule.serviceAccounts is not None:
        sa = service_account_node(rule.serviceAccounts)
        if sa is not None:
            selectors.append(sa)
    if rule.selector:
        selectors.append(parse(rule.selector).root)
    ns_node: Node | None = None
    if rule.namespaceSelector:
        ns_node = namespace_selector_node(rule.namespaceSelector)
    elif namespace is not None:
        ns_node = in_namespace(namespace)
    scoped = bool(selectors or rule.notSelector or rule.namespaceSelector)
    if ns_node is not None and scoped:
        selectors.insert(0, ns_node)
    return Selector(_and(selectors)) if selectors else None


def policy_selector(
    selector: str | None,
    namespace: str | None,
    namespace_selector: str | None = None,
    service_account_selector: str | None = None,
) -> Selector:
    """Which endpoints a (Global)NetworkPolicy applies to, as one flat selector."""
    parts: list[Node] = []
    if namespace is not None:
        parts.append(in_namespace(namespace))
    if namespace_selector:
        parts.append(namespace_selector_node(namespace_selector))
    if service_account_selector:
        node = service_account_node(ServiceAccountMatch(selector=service_account_selector))
        if node is not None:
            parts.append(node)
    if selector:
        parts.append(parse(selector).root)
    return Selector(_and(parts)) if parts else parse("all()")


def policy_selection(policy: NetworkPolicy | GlobalNetworkPolicy) -> Selector:
    """The endpoints a (Global)NetworkPolicy applies to: two policies with the same one
    select the same endpoints."""
    spec = policy.spec
    if isinstance(policy, NetworkPolicy):
        return policy_selector(
            spec.selector, policy.namespace or "default", None, spec.serviceAccountSelector
        )
    return policy_selector(
        spec.selector, None, policy.spec.namespaceSelector, spec.serviceAccountSelector
    )

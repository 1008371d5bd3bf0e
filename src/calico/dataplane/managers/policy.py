"""Active policy and profile messages -> policy/profile chains in every family's tables.

Normal policies and all profiles go to the filter table; doNotTrack policies to raw and
pre-DNAT policies to mangle, where the endpoint chains of those tables jump to them. When a
policy's kind changes, its chains move: they are removed from the tables it left.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from calico.calc.messages import (
    ActivePolicyRemove,
    ActivePolicyUpdate,
    ActiveProfileRemove,
    ActiveProfileUpdate,
    Message,
    ParsedPolicy,
    PolicyID,
)
from calico.rules import naming
from calico.rules.config import RulesConfig
from calico.rules.model import Chain
from calico.rules.policy import policy_chains, policy_table, profile_chains


class ChainTable(Protocol):
    """The part of `IptablesTable` a manager needs."""

    @property
    def table(self) -> str: ...

    @property
    def ip_version(self) -> int: ...

    def update_chains(self, chains: Iterable[Chain]) -> None: ...

    def remove_chains(self, names: Iterable[str]) -> None: ...


class PolicyManager:
    def __init__(self, cfg: RulesConfig, tables: Iterable[ChainTable]) -> None:
        self._cfg = cfg
        self._tables = [t for t in tables if t.table in ("filter", "raw", "mangle")]

    def on_update(self, msg: Message) -> None:
        match msg:
            case ActivePolicyUpdate(id=policy_id, policy=policy):
                self._on_policy_update(policy_id, policy)
            case ActivePolicyRemove(id=policy_id):
                for table in self._tables:
                    table.remove_chains(_policy_chain_names(policy_id))
            case ActiveProfileUpdate(id=profile_id, profile=profile):
                for table in self._tables:
                    if table.table == "filter":
                        chains = profile_chains(self._cfg, profile_id, profile, table.ip_version)
                        table.update_chains(chains)
            case ActiveProfileRemove(id=profile_id):
                for table in self._tables:
                    if table.table == "filter":
                        table.remove_chains(_profile_chain_names(profile_id))

    def complete_deferred_work(self) -> None:
        """Nothing to batch: chains were handed to the tables as messages arrived."""

    def _on_policy_update(self, policy_id: PolicyID, policy: ParsedPolicy) -> None:
        target = policy_table(policy)
        for table in self._tables:
            if table.table == target:
                table.update_chains(policy_chains(self._cfg, policy_id, policy, table.ip_version))
            else:
                table.remove_chains(_policy_chain_names(policy_id))


def _policy_chain_names(policy_id: PolicyID) -> list[str]:
    return [naming.policy_chain_name(policy_id, inbound=d) for d in (True, False)]


def _profile_chain_names(profile_id: str) -> list[str]:
    return [naming.profile_chain_name(profile_id, inbound=d) for d in (True, False)]

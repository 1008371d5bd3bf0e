"""Helpers for BGP unit tests: resources from compact dicts, golden-case loading."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from calico.bgp.secrets import SecretRef
from calico.bgp.view import BgpInputs, affine_blocks
from calico.ipam.keys import affinity_key
from calico.ipam.records import AffinityState, BlockAffinity
from calico.model import parse_resource
from calico.model.base import Resource
from calico.model.network import BGPConfiguration, BGPPeer, IPPool, Node

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "golden" / "bgp"


def resource(doc: dict[str, Any]) -> Resource:
    return parse_resource({"apiVersion": "projectcalico.org/v3", **doc})


def inputs_from(
    resources: list[Resource],
    node: str,
    affinities: dict[str, str] | None = None,
    passwords: dict[str, str] | None = None,
) -> BgpInputs:
    kvs = [
        (affinity_key(node, cidr), BlockAffinity(AffinityState(state)).to_json())
        for cidr, state in (affinities or {}).items()
    ]
    return BgpInputs(
        nodes=[r for r in resources if isinstance(r, Node)],
        peers=[r for r in resources if isinstance(r, BGPPeer)],
        configs={r.name: r for r in resources if isinstance(r, BGPConfiguration)},
        pools=[r for r in resources if isinstance(r, IPPool)],
        blocks=affine_blocks(kvs, node),
        passwords={SecretRef(*ref.split("/")): pw for ref, pw in (passwords or {}).items()},
    )


@dataclass(frozen=True)
class GoldenCase:
    name: str
    node: str
    inputs: BgpInputs
    router_id: str | None


def load_case(case_dir: Path) -> GoldenCase:
    """input.yaml: a header document (node, affinities, router_id, passwords as
    "<secret>/<key>": value, i.e. the secrets the agent could read), then resources."""
    header, *docs = list(yaml.safe_load_all((case_dir / "input.yaml").read_text()))
    resources = [resource(d) for d in docs if d]
    node = header["node"]
    inputs = inputs_from(resources, node, header.get("affinities"), header.get("passwords"))
    return GoldenCase(case_dir.name, node, inputs, header.get("router_id"))

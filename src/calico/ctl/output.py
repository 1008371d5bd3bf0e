"""calicoctl's printers: `ps`, `wide` and `custom-columns=` tables, YAML and JSON.

Columns follow calicoctl's per-kind choices; namespaced kinds gain a NAMESPACE column
when listing across namespaces (-A). `custom-columns=A,B` picks, in the order given, from
the kind's ps and wide headings (plus NAMESPACE for namespaced kinds), spelt exactly as
calicoctl prints them; an unknown heading is an error listing the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from calico.model.base import Resource
from calico.model.codec import list_document, to_json, to_yaml

Column = tuple[str, Callable[[Any], str]]


def _join(values: Iterable[Any] | None) -> str:
    return ",".join(str(v) for v in values or [])


def _val(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _labels(labels: dict[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))


def _name(r: Any) -> str:
    return str(r.metadata.name)


# kind -> (ps columns, wide columns)
_COLUMNS: dict[str, tuple[list[Column], list[Column]]] = {
    "IPPool": (
        [
            ("NAME", _name),
            ("CIDR", lambda r: r.spec.cidr),
            ("SELECTOR", lambda r: _val(r.spec.nodeSelector)),
        ],
        [
            ("NAME", _name),
            ("CIDR", lambda r: r.spec.cidr),
            ("NAT", lambda r: _val(bool(r.spec.natOutgoing))),
            ("IPIPMODE", lambda r: _val(r.spec.ipipMode)),
            ("VXLANMODE", lambda r: _val(r.spec.vxlanMode)),
            ("DISABLED", lambda r: _val(bool(r.spec.disabled))),
            ("DISABLEBGPEXPORT", lambda r: _val(bool(r.spec.disableBGPExport))),
            ("SELECTOR", lambda r: _val(r.spec.nodeSelector)),
            ("ASSIGNMENTMODE", lambda r: _val(r.spec.assignmentMode)),
        ],
    ),
    "WorkloadEndpoint": (
        [
            ("WORKLOAD", lambda r: _val(r.spec.pod or r.spec.workload)),
            ("NODE", lambda r: _val(r.spec.node)),
            ("NETWORKS", lambda r: _join(r.spec.ipNetworks)),
            ("INTERFACE", lambda r: _val(r.spec.interfaceName)),
        ],
        [
            ("NAME", _name),
            ("WORKLOAD", lambda r: _val(r.spec.pod or r.spec.workload)),
            ("NODE", lambda r: _val(r.spec.node)),
            ("NETWORKS", lambda r: _join(r.spec.ipNetworks)),
            ("INTERFACE", lambda r: _val(r.spec.interfaceName)),
            ("PROFILES", lambda r: _join(r.spec.profiles)),
            (
                "NATS",
                lambda r: _join(f"{n.internalIP}:{n.externalIP}" for n in r.spec.ipNATs or []),
            ),
        ],
    ),
    "HostEndpoint": (
        [("NAME", _name), ("NODE", lambda r: _val(r.spec.node))],
        [
            ("NAME", _name),
            ("NODE", lambda r: _val(r.spec.node)),
            ("INTERFACE", lambda r: _val(r.spec.interfaceName)),
            ("IPS", lambda r: _join(r.spec.expectedIPs)),
            ("PROFILES", lambda r: _join(r.spec.profiles)),
        ],
    ),
    "Node": (
        [("NAME", _name)],
        [
            ("NAME", _name),
            ("ASN", lambda r: _val(r.spec.bgp.asNumber) if r.spec.bgp else ""),
            ("IPV4", lambda r: _val(r.spec.bgp.ipv4Address) if r.spec.bgp else ""),
            ("IPV6", lambda r: _val(r.spec.bgp.ipv6Address) if r.spec.bgp else ""),
        ],
    ),
    "BGPPeer": (
        [
            ("NAME", _name),
            ("PEERIP", lambda r: _val(r.spec.peerIP or r.spec.peerSelector)),
            ("NODE", lambda r: _val(r.spec.node or r.spec.nodeSelector or "(global)")),
            ("ASN", lambda r: _val(r.spec.asNumber)),
        ],
        [],
    ),
    "BGPConfiguration": (
        [
            ("NAME", _name),
            ("LOGSEVERITY", lambda r: _val(r.spec.logSeverityScreen)),
            ("MESHENABLED", lambda r: _val(r.spec.nodeToNodeMeshEnabled)),
            ("ASNUMBER", lambda r: _val(r.spec.asNumber)),
        ],
        [],
    ),
    "Profile": (
        [("NAME", _name)],
        [("NAME", _name), ("LABELS", lambda r: _labels(r.spec.labelsToApply))],
    ),
    "Tier": (
        [("NAME", _name), ("ORDER", lambda r: _val(r.spec.order))],
        [
            ("NAME", _name),
            ("ORDER", lambda r: _val(r.spec.order)),
            ("DEFAULTACTION", lambda r: _val(r.spec.defaultAction)),
        ],
    ),
    "NetworkSet": ([("NAME", _name)], [("NAME", _name), ("NETS", lambda r: _join(r.spec.nets))]),
    "GlobalNetworkSet": (
        [("NAME", _name)],
        [("NAME", _name), ("NETS", lambda r: _join(r.spec.nets))],
    ),
}
for _policy in ("NetworkPolicy", "GlobalNetworkPolicy"):
    _COLUMNS[_policy] = (
        [("NAME", _name), ("TIER", lambda r: _val(r.spec.tier))],
        [
            ("NAME", _name),
            ("TIER", lambda r: _val(r.spec.tier)),
            ("ORDER", lambda r: _val(r.spec.order)),
            ("SELECTOR", lambda r: _val(r.spec.selector)),
        ],
    )


def _namespace(r: Any) -> str:
    return _val(r.metadata.namespace)


def columns_for(kind: type[Resource], wide: bool, all_namespaces: bool) -> list[Column]:
    ps, wide_cols = _COLUMNS.get(kind.KIND, ([("NAME", _name)], []))
    cols = list((wide_cols or ps) if wide else ps)
    if kind.NAMESPACED and all_namespaces:
        cols.insert(0, ("NAMESPACE", _namespace))
    return cols


def custom_columns(kind: type[Resource], headings: Sequence[str]) -> list[Column]:
    """The columns named by `custom-columns=`; ValueError for an unknown heading."""
    ps, wide_cols = _COLUMNS.get(kind.KIND, ([("NAME", _name)], []))
    known: dict[str, Callable[[Any], str]] = {"NAMESPACE": _namespace} if kind.NAMESPACED else {}
    known.update({title: get for title, get in [*ps, *wide_cols]})
    for heading in headings:
        if heading not in known:
            raise ValueError(f"Unknown heading {heading}, valid values are: {', '.join(known)}")
    return [(heading, known[heading]) for heading in headings]


def render_table(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded like Go's tabwriter as calicoctl configures it (min 5, padding 3)."""
    if not rows:
        return ""
    widths = [max(5, max(len(row[i]) for row in rows) + 3) for i in range(len(rows[0]))]
    lines = [
        "".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines) + "\n"


def format_resources(
    kind: type[Resource],
    resources: Sequence[Resource],
    output: str,
    single: bool,
    all_namespaces: bool = False,
    revision: str = "",
    headings: Sequence[str] = (),
) -> str:
    """`output` is ps, wide, yaml or json; `headings` (custom-columns) override ps/wide."""
    if output in ("yaml", "json"):
        data: Any = (
            resources[0].to_dict()
            if single and len(resources) == 1
            else list_document(kind.KIND, resources, revision)
        )
        return to_yaml(data) if output == "yaml" else to_json(data)
    cols = (
        custom_columns(kind, headings)
        if headings
        else columns_for(kind, output == "wide", all_namespaces)
    )
    rows = [[title for title, _ in cols]]
    rows.extend([get(r) for _, get in cols] for r in resources)
    return render_table(rows)

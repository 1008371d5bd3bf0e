"""calicoctl get -o custom-columns=...: the kind's headings, in the order asked."""

from __future__ import annotations

from collections.abc import Callable

from click.testing import Result

from calico.ctl.commands.get import get
from calico.datastore.client import ResourceClient
from calico.model.endpoints import WorkloadEndpoint
from calico.model.network import IPPool

Run = Callable[..., Result]


def test_custom_columns_pick_and_order_headings(run: Run, resources: ResourceClient) -> None:
    for name, cidr in (("b-pool", "10.2.0.0/16"), ("a-pool", "10.1.0.0/16")):
        resources.create(
            IPPool.model_validate({"metadata": {"name": name}, "spec": {"cidr": cidr}})
        )
    out = run(get, "ippools", "-o", "custom-columns=CIDR,NAME,VXLANMODE").output
    assert out.splitlines() == [
        "CIDR          NAME     VXLANMODE",
        "10.1.0.0/16   a-pool   Never",
        "10.2.0.0/16   b-pool   Never",
    ]


def test_namespaced_kinds_offer_a_namespace_column(run: Run, resources: ResourceClient) -> None:
    resources.create(
        WorkloadEndpoint.model_validate(
            {
                "metadata": {"namespace": "shop"},
                "spec": {"orchestrator": "k8s", "node": "n1", "pod": "web", "endpoint": "eth0"},
            }
        )
    )
    out = run(get, "wep", "-A", "-o", "custom-columns=NAMESPACE,WORKLOAD").output
    assert out.splitlines()[1].split() == ["shop", "web"]


def test_unknown_or_missing_headings_and_formats_are_refused(run: Run) -> None:
    out = run(get, "ippool", "-o", "custom-columns=NAME,ASN", ok=False).output
    assert "Unknown heading ASN, valid values are: NAME, CIDR, SELECTOR, NAT, IPIPMODE" in out
    out = run(get, "node", "-o", "custom-columns=NAMESPACE", ok=False).output
    assert "Unknown heading NAMESPACE, valid values are: NAME, ASN, IPV4, IPV6" in out
    assert (
        "need to specify at least one column"
        in run(get, "node", "-o", "custom-columns=", ok=False).output
    )
    assert (
        "unrecognized output format 'go-template={{.}}'"
        in run(get, "node", "-o", "go-template={{.}}", ok=False).output
    )

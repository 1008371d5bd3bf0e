"""`etcd: {members: N}`: the members' addresses, their command lines, and the errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from calico.lab.etcd import Member, member_argv
from calico.lab.labfile import LabFileError, load_lab
from calico.lab.spec import etcd_addresses

BASE = """
name: t1
fabric: {ipv4: 198.18.0.0/24}
pools: [{cidr: 198.19.0.0/16}]
hosts: [{name: host-1, ipv4: 198.18.0.11}]
"""


def lab(etcd: str) -> str:
    doc = yaml.safe_load(BASE)
    doc["etcd"] = yaml.safe_load(etcd)
    return yaml.safe_dump(doc)


def test_one_member_by_default() -> None:
    assert etcd_addresses(load_lab(BASE)) == ["198.18.0.254"]


def test_members_take_the_last_addresses_or_count_up_from_ipv4() -> None:
    assert etcd_addresses(load_lab(lab("{members: 3}"))) == [
        "198.18.0.254",
        "198.18.0.253",
        "198.18.0.252",
    ]
    spec = load_lab(lab("{members: 3, ipv4: 198.18.0.100}"))
    assert etcd_addresses(spec) == ["198.18.0.100", "198.18.0.101", "198.18.0.102"]


@pytest.mark.parametrize(
    ("etcd", "message"),
    [
        ("{members: 2}", "etcd.members: 2: give an odd number"),
        ("{members: 0}", "etcd.members: Input should be greater than or equal to 1"),
        ("{members: 9}", "etcd.members: Input should be less than or equal to 7"),
        ("{members: three}", "etcd.members: Input should be a valid integer"),
        (
            "{members: 3, ipv4: 198.18.0.10}",
            "etcd.members: 198.18.0.11 is already used by hosts[0].ipv4",
        ),
    ],
)
def test_errors_name_the_field(etcd: str, message: str) -> None:
    with pytest.raises(LabFileError) as err:
        load_lab(lab(etcd), "lab.yaml")
    assert str(err.value).startswith(f"lab.yaml: {message}"), str(err.value)


def test_every_member_is_told_the_whole_cluster() -> None:
    cluster = [Member(f"etcd-{i}", f"198.18.0.{250 + i}", Path(f"/s/etcd-{i}")) for i in range(3)]
    argv = member_argv(cluster[1], cluster)
    assert argv[argv.index("--name") + 1] == "etcd-1"
    initial = argv[argv.index("--initial-cluster") + 1]
    assert initial == ",".join(f"etcd-{i}=http://198.18.0.{250 + i}:2380" for i in range(3))
    assert argv[argv.index("--advertise-client-urls") + 1] == "http://198.18.0.251:2379"

"""RulesConfig as Felix reports it to the datastore and the policy trace reads it back."""

from __future__ import annotations

import json

import pytest

from calico.rules.config import ProtoPort, RulesConfig


def test_settings_survive_json_unchanged() -> None:
    cfg = RulesConfig.from_mark_mask(
        0xFF000000,
        workload_iface_prefixes=("tap", "cali"),
        endpoint_to_host_action="ACCEPT",
        failsafe_inbound=(ProtoPort("tcp", 22, "198.18.0.0/16"), ProtoPort("udp", 68)),
        nat_port_range=(32768, 65535),
        metadata_addr=None,
        ipv6_enabled=False,
    )
    assert RulesConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    assert RulesConfig.from_json(RulesConfig().to_json()) == RulesConfig()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"no_such_setting": 1}, "unknown setting 'no_such_setting'"),
        ({"ipv6_enabled": "yes"}, "ipv6_enabled: 'yes' is not a bool"),
        ({"mark_accept": 1.5}, "mark_accept: 1.5 is not a int"),
        ({"failsafe_inbound": [{"protocol": "tcp"}]}, "failsafe_inbound: an entry has no 'port'"),
        ({"endpoint_to_host_action": "MAYBE"}, "action 'MAYBE' is not one of"),
    ],
)
def test_a_wrong_setting_is_refused_by_name(change: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match="rules settings: ") as caught:
        RulesConfig.from_json({**RulesConfig().to_json(), **change})
    assert named in str(caught.value)
    with pytest.raises(ValueError, match="not a JSON object"):
        RulesConfig.from_json(["ACCEPT"])

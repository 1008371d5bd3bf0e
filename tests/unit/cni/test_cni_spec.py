"""The CNI protocol edges: environment validation, versions, result encodings per version."""

from __future__ import annotations

import pytest

from calico.cni.spec import (
    CniError,
    Code,
    Interface,
    IPConfig,
    Result,
    Route,
    check_version,
    encode_result,
    parse_cni_args,
    parse_environment,
    version_info,
)

BASE = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "abc",
    "CNI_NETNS": "/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
}


def _code(fn: object, *args: object) -> int:
    with pytest.raises(CniError) as info:
        fn(*args)  # type: ignore[operator]
    return int(info.value.code)


@pytest.mark.parametrize(
    ("command", "drop", "ok"),
    [
        ("ADD", "CNI_NETNS", False),
        ("ADD", "CNI_CONTAINERID", False),
        ("ADD", "CNI_IFNAME", False),
        ("ADD", "CNI_PATH", False),
        ("CHECK", "CNI_NETNS", False),
        ("DEL", "CNI_NETNS", True),  # the namespace may already be gone
        ("DEL", "CNI_CONTAINERID", False),
        ("VERSION", "CNI_CONTAINERID", True),
    ],
)
def test_required_environment(command: str, drop: str, ok: bool) -> None:
    env = {**BASE, "CNI_COMMAND": command}
    del env[drop]
    if ok:
        assert parse_environment(env).command == command
    else:
        assert _code(parse_environment, env) == Code.INVALID_ENVIRONMENT


@pytest.mark.parametrize(
    "override",
    [
        {"CNI_COMMAND": "UPDATE"},
        {"CNI_COMMAND": ""},
        {"CNI_IFNAME": "a-name-longer-than-15"},
        {"CNI_IFNAME": "eth/0"},
        {"CNI_IFNAME": ".."},
        {"CNI_CONTAINERID": "-leading-dash"},
        {"CNI_CONTAINERID": "has space"},
        {"CNI_ARGS": "K8S_POD_NAME"},
    ],
)
def test_invalid_environment_is_code_4(override: dict[str, str]) -> None:
    assert _code(parse_environment, {**BASE, **override}) == Code.INVALID_ENVIRONMENT


def test_cni_args() -> None:
    assert parse_cni_args("") == {}
    assert parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=web;;IP=") == {
        "IgnoreUnknown": "1",
        "K8S_POD_NAME": "web",
        "IP": "",
    }
    inv = parse_environment({**BASE, "CNI_ARGS": "IgnoreUnknown=true;A=b=c"})
    assert inv.args == {"IgnoreUnknown": "true", "A": "b=c"} and inv.netns == "/run/netns/x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("K8S_POD_UID=1;FOO=2", "CNI_ARGS: FOO, K8S_POD_UID not supported"),
        ("IgnoreUnknown=0;FOO=2", "CNI_ARGS: FOO not supported"),
        ("IgnoreUnknown=maybe", "CNI_ARGS IgnoreUnknown='maybe' is not 1/0"),
    ],
)
def test_unknown_cni_args_are_refused_unless_ignored(text: str, message: str) -> None:
    with pytest.raises(CniError) as err:
        parse_environment({**BASE, "CNI_ARGS": text})
    assert err.value.code == Code.INVALID_ENVIRONMENT and str(err.value).startswith(message)


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"])
def test_supported_versions(version: str) -> None:
    check_version(version)
    assert version in version_info()["supportedVersions"]


@pytest.mark.parametrize("version", ["1.1.0", "0.5.0", "2", "latest"])
def test_unsupported_version_is_code_1(version: str) -> None:
    assert _code(check_version, version) == Code.INCOMPATIBLE_VERSION


def test_version_info() -> None:
    assert version_info() == {
        "cniVersion": "1.0.0",
        "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"],
    }


def test_error_json() -> None:
    err = CniError(Code.IPAM_FAILURE, "pool exhausted", "no free blocks")
    assert err.to_json("0.4.0") == {
        "cniVersion": "0.4.0",
        "code": 101,
        "msg": "pool exhausted",
        "details": "no free blocks",
    }
    assert "details" not in CniError(Code.INTERNAL, "x").to_json()


RESULT = Result(
    interfaces=(
        Interface("cali0123456789a", "ee:ee:ee:ee:ee:ee"),
        Interface("eth0", "0a:58:0a:00:00:05", "/run/netns/x"),
    ),
    ips=(IPConfig("198.19.0.1/32", interface=1), IPConfig("2001:db8::1/128", interface=1)),
    routes=(Route("0.0.0.0/0", "169.254.1.1"), Route("::/0", "fe80::ecee:eeff:feee:eeee")),
)


def test_result_1_0_0() -> None:
    assert encode_result(RESULT, "1.0.0") == {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cali0123456789a", "mac": "ee:ee:ee:ee:ee:ee"},
            {"name": "eth0", "mac": "0a:58:0a:00:00:05", "sandbox": "/run/netns/x"},
        ],
        "ips": [
            {"address": "198.19.0.1/32", "interface": 1},
            {"address": "2001:db8::1/128", "interface": 1},
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "169.254.1.1"},
            {"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"},
        ],
        "dns": {},
    }


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_result_0_3_and_0_4_carry_ip_versions(version: str) -> None:
    doc = encode_result(RESULT, version)
    assert doc["cniVersion"] == version
    assert doc["ips"] == [
        {"version": "4", "address": "198.19.0.1/32", "interface": 1},
        {"version": "6", "address": "2001:db8::1/128", "interface": 1},
    ]
    assert len(doc["interfaces"]) == 2


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_result_legacy_format(version: str) -> None:
    assert encode_result(RESULT, version) == {
        "cniVersion": version,
        "ip4": {"ip": "198.19.0.1/32", "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]},
        "ip6": {
            "ip": "2001:db8::1/128",
            "routes": [{"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"}],
        },
        "dns": {},
    }


def test_ipam_result_has_no_interfaces() -> None:
    doc = encode_result(Result(ips=(IPConfig("198.19.0.5/26"),)), "1.0.0")
    assert doc == {"cniVersion": "1.0.0", "ips": [{"address": "198.19.0.5/26"}], "dns": {}}

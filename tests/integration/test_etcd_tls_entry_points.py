"""Every entry point against etcd with --client-cert-auth: the right files work; the wrong CA
or no client certificate fails with a line naming the TLS problem and writes nothing; and
nothing printed holds a secret (bench/etcd_tls.py runs the same cases for the figures)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def tls(bench_script: Callable[[str], ModuleType]) -> ModuleType:
    if shutil.which("etcd") is None or shutil.which("openssl") is None:
        pytest.skip("etcd and openssl needed (etcd-server, openssl)")
    return bench_script("etcd_tls")


@pytest.fixture
def setup(tls: ModuleType) -> Iterator[Any]:
    with tls.setup() as s:
        yield s


def _cases() -> list[tuple[str, str]]:
    # The same list as the script's cases(), spelled out so each is its own test.
    components = ("calicoctl", "calico node", "calico-felix", "CNI plugin",
                  "calico-dhcp-agent", "calico-neutron-resync")  # fmt: skip
    return [("calicoctl", "good")] + [
        (component, case)
        for component in components
        for case in ("wrong CA", "no client cert", "client cert of another CA")
    ]


def test_case_list_matches_the_script(tls: ModuleType) -> None:
    assert list(tls.cases()) == _cases()


@pytest.mark.parametrize(("component", "case"), _cases())
def test_entry_point(tls: ModuleType, setup: Any, component: str, case: str) -> None:
    outcome = tls.measure(setup, component, case)
    if case == "good":
        assert (outcome.returncode, outcome.written) == (0, True), outcome.output
        return
    assert outcome.returncode != 0, outcome.output
    assert not outcome.written
    if case == "wrong CA":
        assert "TLS: etcd's server certificate is not trusted by the CA file" in outcome.error
        assert str(setup.other.ca_file) in outcome.error
    elif case == "no client cert":
        assert "TLS: etcd requires a client certificate and none is configured" in outcome.error
    else:
        assert "TLS: etcd refused the client certificate" in outcome.error
        assert str(setup.other.cert("client")) in outcome.error


def test_no_secret_in_output_or_calicoctl_yaml(tls: ModuleType, setup: Any) -> None:
    outputs = [tls.measure(setup, c, case).output for c, case in tls.cases()]
    peer = tls.ctl_get_yaml(setup)
    assert "secretKeyRef" in peer and tls.BGP_PASSWORD not in peer
    values = tls.secrets(setup)
    assert tls.leaks([*outputs, peer, setup.server.log_file.read_text()], values) == 0
    assert tls.leaks([f"oops {tls.BGP_PASSWORD}"], values) == 1  # the grep does find one

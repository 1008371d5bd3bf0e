"""calicoctl against a real etcd: a multi-document file with one invalid document writes
nothing, whatever the invalid document is and wherever it sits, and the error is one clean
line naming it. Each case runs calicoctl and reads etcd's revision, so fewer cases (fuzz_examples):
200 in the full run, 20 in `make test`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from _fuzz import fuzz_examples, mutated
from click.testing import CliRunner
from hypothesis import assume, given
from hypothesis import strategies as st
from test_fuzz_manifests import VALID

from calico.ctl.main import cli
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.model import ResourceError, parse_resource
from calico.testing.etcd_server import EtcdServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def etcd() -> Iterator[tuple[CliRunner, EtcdBackend]]:
    """One etcd for the module: every case leaves it as it found it, or fails."""
    if shutil.which("etcd") is None:
        pytest.skip("etcd binary not found (install etcd-server)")
    with EtcdServer() as server:
        backend = EtcdBackend(EtcdConfig(endpoints=(server.endpoint,)))
        env = {"ETCD_ENDPOINTS": server.endpoint, "ETCD_CA_CERT_FILE": ""}
        yield CliRunner(env=env), backend
        backend.close()


def _invalid(doc: Any) -> bool:
    try:
        parse_resource(doc)
    except (ResourceError, AttributeError):  # AttributeError: not a mapping at all
        return True
    return False


@fuzz_examples(full=200, default=20)
@given(
    good=st.lists(st.sampled_from(VALID), min_size=1, max_size=4),
    bad=st.sampled_from(VALID).flatmap(mutated),
    at=st.integers(0, 4),
    verb=st.sampled_from(["create", "apply"]),
)
def test_one_bad_document_writes_nothing(
    etcd: tuple[CliRunner, EtcdBackend], good: list[Any], bad: Any, at: int, verb: str
) -> None:
    assume(isinstance(bad, dict) and _invalid(bad))
    runner, backend = etcd
    docs = [*good[:at], bad, *good[at:]]
    before = backend.list("/calico/").revision
    result = runner.invoke(cli, [verb, "-f", "-"], input=yaml.safe_dump_all(docs))
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and result.stderr.strip(), result.output
    assert backend.list("/calico/").revision == before, f"{verb} wrote: {result.output}"


def test_the_revision_shows_a_write(etcd: tuple[CliRunner, EtcdBackend]) -> None:
    """The control: the same documents without the bad one are written, and the check sees it."""
    runner, backend = etcd
    before = backend.list("/calico/").revision
    result = runner.invoke(cli, ["apply", "-f", "-"], input=yaml.safe_dump_all(VALID))
    assert result.exit_code == 0, result.output
    assert backend.list("/calico/").revision > before

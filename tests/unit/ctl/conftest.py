"""calicoctl commands run in-process over the in-memory datastore."""

from __future__ import annotations

from collections.abc import Callable

import click
import pytest
from click.testing import CliRunner, Result

from calico.ctl.context import CtlContext
from calico.datastore.client import ResourceClient
from calico.datastore.memory import MemoryBackend

Run = Callable[..., Result]  # the `run` fixture


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def resources(backend: MemoryBackend) -> ResourceClient:
    client = ResourceClient(backend)
    client.ensure_initialized()
    return client


@pytest.fixture
def ctx(resources: ResourceClient) -> CtlContext:
    context = CtlContext(None, environ={})
    context._client = resources
    return context


@pytest.fixture
def run(ctx: CtlContext) -> Run:
    """run(command, *args, ok=True): invoke one calicoctl command; asserts its exit status."""

    def invoke(command: click.Command, *args: str, ok: bool = True) -> Result:
        result = CliRunner().invoke(command, list(args), obj=ctx)
        assert (result.exit_code == 0) == ok, (args, result.output, result.exception)
        return result

    return invoke

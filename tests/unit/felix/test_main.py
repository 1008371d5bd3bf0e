"""calico-felix's command line: -c names the config file; nothing else is accepted."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from click.testing import CliRunner

from calico.felix import daemon
from calico.felix.main import felix_command


def test_config_file_flag_becomes_felix_configfile(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Mapping[str, str]] = []
    monkeypatch.setattr(daemon, "main", lambda env: seen.append(env))
    runner = CliRunner()
    assert runner.invoke(felix_command, ["-c", "/etc/felix-a.cfg"]).exit_code == 0
    assert runner.invoke(felix_command, [], env={"FELIX_CONFIGFILE": "/b.cfg"}).exit_code == 0
    assert [env.get("FELIX_CONFIGFILE") for env in seen] == ["/etc/felix-a.cfg", "/b.cfg"]
    refused = runner.invoke(felix_command, ["--config-file"])
    assert refused.exit_code == 2 and not seen[2:]

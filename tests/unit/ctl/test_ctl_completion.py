"""calicoctl completion: the scripts, and the answers calicoctl gives them."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from calico.ctl.main import cli


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o nosort -F _calicoctl_completion calicoctl"),
     ("zsh", "#compdef calicoctl"),
     ("fish", "complete --no-files --command calicoctl")],
)  # fmt: skip
def test_completion_prints_the_script_for_each_shell(shell: str, marker: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell], prog_name="calicoctl")
    assert result.exit_code == 0, result.output
    assert marker in result.output and "_CALICOCTL_COMPLETE" in result.output


def test_completion_refuses_other_shells() -> None:
    result = CliRunner().invoke(cli, ["completion", "tcsh"], prog_name="calicoctl")
    assert result.exit_code == 2 and "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.output


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("calicoctl pa", ["patch"]),
        ("calicoctl ipam c", ["check", "configure"]),
        ("calicoctl node ", ["checksystem", "diags", "diff", "status"]),
        ("calicoctl ipam release --fr", ["--from-report"]),
    ],
)
def test_the_script_is_answered_from_calicoctls_own_commands(
    words: str, expected: list[str]
) -> None:
    env = {
        "_CALICOCTL_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    result = CliRunner().invoke(cli, [], env=env, prog_name="calicoctl")
    assert result.exit_code == 0, result.output
    assert [line.split(",")[1] for line in result.output.splitlines()] == expected

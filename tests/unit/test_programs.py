"""calico/programs.txt is the one list of programs the code runs, and calico.programs the one
runner: it refuses a program not on the list, nothing else starts processes, every program
named in code is listed, and install-deps.sh installs exactly the list's packages."""

from __future__ import annotations

import ast
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico import programs

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("src", "bench", "tests", "scripts")
RUNNER = ROOT / "src/calico/programs.py"
INSTALL_DEPS = ROOT / "scripts/install-deps.sh"
DEBIAN_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")  # Debian policy 5.6.1
# Names of the runner and of the wrappers over it (testing/lab netns helpers, lab procs):
# a list literal passed to one of these is a command line.
RUNNER_CALLS = {"run", "start", "replace_process", "exec", "popen", "in_ns", "spawn", "_finish"}
COMMAND_VARIABLES = {"argv", "args", "cmd", "command"}
STRAY_OS = re.compile(r"(system|popen|exec[lv]p?e?|spawn[lv]p?e?|posix_spawnp?|fork|forkpty)")
BIN_DIRS = ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/lib/frr")


def python_files() -> Iterator[Path]:
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if ".venv" not in path.parts and path != RUNNER:
                yield path


def _name(node: ast.expr) -> str:
    return ast.unparse(node)


def stray_process_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """Lines that start a process other than through calico.programs."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, f"import {a.name}") for a in node.names if a.name == "subprocess"
            ]
        elif isinstance(node, ast.ImportFrom):
            if node.module == "subprocess":
                found.append((node.lineno, "from subprocess import ..."))
            elif node.module == "os":
                names = [a.name for a in node.names if STRAY_OS.fullmatch(a.name)]
                found += [(node.lineno, f"from os import {n}") for n in names]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner, attr = node.value.id, node.attr
            if (owner == "os" and STRAY_OS.fullmatch(attr)) or (
                owner == "asyncio" and attr.startswith("create_subprocess")
            ):
                found.append((node.lineno, f"{owner}.{attr}"))
    return found


def _literal_head(node: ast.expr | None) -> list[str | None] | None:
    """The items of a list/tuple literal starting with a string constant (None for an item
    that is not one), or None if it is no such literal."""
    if not isinstance(node, ast.List | ast.Tuple) or not node.elts:
        return None
    head = [e.value if isinstance(e, ast.Constant) and isinstance(e.value, str) else None
            for e in node.elts]  # fmt: skip
    return head if head[0] is not None else None


def named_programs(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, program) for each literal command line: list literals given to the runner or a
    wrapper of it, or assigned to argv/cmd; the program behind `ip netns exec NS` too; and
    the programs tests look up with shutil.which."""
    for node in ast.walk(tree):
        heads: list[list[str | None]] = []
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else _name(func)
            if called in RUNNER_CALLS:
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    if (head := _literal_head(arg)) is not None:
                        heads.append(head)
            elif called in ("shutil.which", "which") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    yield node.lineno, programs.name_of(arg.value)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in COMMAND_VARIABLES for t in node.targets
        ):
            head = _literal_head(node.value)
            heads += [head] if head is not None else []
        for head in heads:
            first = head[0]
            if first is None or first.startswith("-"):
                continue  # arguments, not a command line
            yield node.lineno, programs.name_of(first)
            if head[:3] == ["ip", "netns", "exec"] and len(head) > 4 and head[4] is not None:
                yield node.lineno, programs.name_of(head[4])


# -- the list --------------------------------------------------------------------------------


def test_the_list_names_programs_once_with_debian_packages() -> None:
    entries = programs.entries()
    names = [p.name for p in entries if p.name != "-"]
    assert len(names) == len(set(names)), "a program listed twice"
    for entry in entries:
        assert entry.package == programs.OWN_PACKAGE or DEBIAN_NAME.fullmatch(entry.package), entry
        assert entry.users.strip(), f"{entry.name}: say who runs it"
    for needed in ("nft", "conntrack", "ip", "iptables-nft-restore", "ipset", "etcd", "bird"):
        assert needed in programs.listed()


def test_a_malformed_line_is_refused_with_its_number() -> None:
    with pytest.raises(ValueError, match=r"programs.txt:2: want `program package users`"):
        programs.parse("# comment\nip iproute2\n")


def test_install_deps_installs_exactly_the_lists_packages() -> None:
    """install-deps.sh reads the list (plain sh + awk: no Python on a fresh machine); a second
    copy of the package names in it would drift."""
    out = programs.run(["sh", str(INSTALL_DEPS), "--list"], check=True).stdout
    assert out.split() == programs.packages()
    assert "src/calico/programs.txt" in INSTALL_DEPS.read_text()
    code = [ln for ln in INSTALL_DEPS.read_text().splitlines() if not ln.lstrip().startswith("#")]
    packages = set(programs.packages())
    for line in code:
        assert len(packages & set(re.findall(r"[\w.+-]+", line))) < 3, f"a package list: {line}"


def test_every_listed_program_is_installed_from_its_package() -> None:
    """On this machine (set up by install-deps.sh): each program exists, and where dpkg knows
    the file's package it is the listed one (or a package the listed one depends on)."""
    debian = {p.name: p.package for p in programs.entries() if p.name != "-"}
    debian = {n: pkg for n, pkg in debian.items() if pkg != programs.OWN_PACKAGE}
    missing = [
        n for n in debian if not shutil.which(n) and not any(Path(d, n).exists() for d in BIN_DIRS)
    ]
    assert not missing, f"not installed: {missing} (run scripts/install-deps.sh)"
    paths = [f"{d}/{n}" for n in debian for d in BIN_DIRS]
    out = programs.run(["dpkg-query", "-S", *paths]).stdout
    owners: dict[str, set[str]] = {}
    for line in out.splitlines():
        pkgs, sep, path = line.partition(": ")
        if sep and not pkgs.startswith("diversion by"):
            owners.setdefault(Path(path).name, set()).update(p.strip() for p in pkgs.split(","))
    wrong = {}
    for name, package in debian.items():
        found = owners.get(name)
        if not found or package in found:
            continue  # no dpkg record: an alternatives link (iptables, awk)
        fields = "${Pre-Depends}, ${Depends}"
        deps = programs.run(["dpkg-query", "-W", f"-f={fields}", package]).stdout
        if not found & set(re.findall(r"[a-z0-9][a-z0-9+.-]+", deps)):
            wrong[name] = (package, sorted(found))
    assert not wrong, f"program: (listed package, dpkg's owners): {wrong}"


# -- the runner ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["no-such-program-xyz", "--help"],
        ["/usr/bin/no-such-program-xyz"],
        ["ip", "netns", "exec", "some-ns", "no-such-program-xyz"],
        ["nsenter", "--net=/run/netns/x", "no-such-program-xyz"],
    ],
)
def test_the_runner_refuses_an_unlisted_program_before_running_it(argv: list[str]) -> None:
    with pytest.raises(
        programs.NotListed, match=r"no-such-program-xyz.*not in calico/programs\.txt"
    ):
        programs.run(argv)
    with pytest.raises(programs.NotListed):
        programs.start(argv)
    with pytest.raises(programs.NotListed):
        programs.replace_process(argv)


def test_the_runner_runs_listed_programs_by_name_or_path() -> None:
    assert programs.run(["/bin/cat"], stdin="hello").stdout == "hello"
    assert programs.run([sys.executable, "-c", "print(6 * 7)"]).stdout == "42\n"
    with pytest.raises(programs.CommandFailed, match="exited 3"):
        programs.run([sys.executable, "-c", "raise SystemExit(3)"], check=True)
    proc = programs.start(["cat"], stdin=programs.PIPE, stdout=programs.PIPE, text=True)
    assert proc.communicate("x", timeout=10)[0] == "x"


def test_the_command_runner_raises_for_a_failure_only_when_checking(tmp_path: Path) -> None:
    runner = programs.Runner(timeout=10)
    exit3 = [sys.executable, "-c", "import sys; sys.stderr.write('bad'); raise SystemExit(3)"]
    assert runner.run(exit3, check=False) == programs.CommandResult(3, "", "bad")
    with pytest.raises(programs.CommandFailed, match="exited 3: bad") as failed:
        runner.run(exit3)
    assert (failed.value.returncode, failed.value.stderr) == (3, "bad")
    missing = str(tmp_path / "cat")  # listed, but absent: it cannot run, whatever `check` says
    with pytest.raises(programs.CommandFailed, match="command not found") as failed:
        runner.run([missing], check=False)
    assert failed.value.returncode == -1
    slow = programs.Runner(timeout=0.2)
    with pytest.raises(programs.CommandFailed, match=r"python3?\S*: timed out after 0.2s"):
        slow.run([sys.executable, "-c", "import time; time.sleep(5)"], check=False)


def test_input_reaches_the_command_whole_as_a_file_not_a_pipe() -> None:
    """A pipe's reader acts on what it got so far when its writer dies (a Felix killed while
    feeding `ipset restore` would leave a truncated member added); a file is whole before the
    command starts."""
    probe = "import os, stat, sys; print(stat.S_ISREG(os.fstat(0).st_mode), len(sys.stdin.read()))"
    text = "add s 198.19.0.0/24\n" * 10_000  # more than a pipe holds
    out = programs.run([sys.executable, "-c", probe], stdin=text, check=True).stdout
    assert out.split() == ["True", str(len(text))]


def test_a_user_typed_command_is_not_checked() -> None:
    """`calico lab exec HOST -- CMD`: the project runs `ip netns exec`, the user chose CMD."""
    programs.ensure_listed(["ip", "netns", "exec", "ns"])
    with pytest.raises(programs.NotListed):
        programs.ensure_listed(["ip", "netns", "exec", "ns", "tcpdump"])


# -- the code --------------------------------------------------------------------------------


def test_nothing_starts_a_process_except_through_the_runner() -> None:
    stray = {
        f"{path.relative_to(ROOT)}:{line}": what
        for path in python_files()
        for line, what in stray_process_calls(ast.parse(path.read_text(), str(path)))
    }
    assert not stray, f"use calico.programs instead: {stray}"


def test_the_scan_finds_stray_calls() -> None:
    code = "import subprocess\nimport os\nos.execv('x', [])\nfrom os import system\n"
    assert [w for _, w in stray_process_calls(ast.parse(code))] == [
        "import subprocess",
        "from os import system",
        "os.execv",
    ]


def test_every_program_named_in_code_is_on_the_list() -> None:
    listed = programs.listed()
    unlisted = {
        f"{path.relative_to(ROOT)}:{line}": name
        for path in python_files()
        for line, name in named_programs(ast.parse(path.read_text(), str(path)))
        if name not in listed
    }
    assert not unlisted, f"add these to src/calico/programs.txt: {unlisted}"


def test_the_name_scan_sees_commands() -> None:
    code = (
        "ns.exec(host, ['tcpdump', '-i', 'eth0'])\n"
        "argv = ['ip', 'netns', 'exec', ns, 'iperf3']\n"
        "shutil.which('/usr/sbin/ss')\n"
        "main(['--config-file', 'x'])\n"
    )
    found = sorted(n for _, n in named_programs(ast.parse(code)))
    assert found == ["ip", "iperf3", "ss", "tcpdump"]

"""`calicoctl node diags`: one tarball with what a support case needs from this node.

Into `diagnostics/` (calicoctl's layout) go: the kernel's state (routes, addresses, links,
rules, iptables-save -c for both families, ipset list, conntrack count, sockets and the
sysctls Felix sets), Calico's logs (`logs/`: --log-dir), the node's files (`run/`: *.log and
config files such as BIRD's bird.cfg in CALICO_RUN_DIR), config files in /etc/calico (`etc/`,
not recursing), and the datastore's status (ClusterInformation, the count of each kind,
`node status`). A command or file that fails leaves its error in its place; the rest goes on.

Secrets stay out: the BGP password directory (CALICO_SECRETS_DIR) and the etcd key file are
never read; a file holding a PEM private key is left out whole; in everything else a value
after a word like password, secret, token or key (`password "x";`, `etcdKeyFile: ...`,
`ETCD_KEY_FILE=...`) becomes `<redacted>`. `skipped.txt` lists what was left out and why.
"""

from __future__ import annotations

import io
import re
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from calico import programs

REDACTED = "<redacted>"
# key = value, key: value, key "value", KEY=value; the key contains one of these words.
_SECRET_VALUE = re.compile(
    r"""(?ix)
    (\b[\w.-]*(?:password|passwd|secret|token|private|key)[\w.-]*["']?)  # the key
    (\s*[:=]\s*|\s+)                                              # separator
    ("[^"\n]*"|'[^'\n]*'|[^\s;,"'}]+)                             # the value
    """
)
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
COMMANDS = (
    ("ipv4_route", ["ip", "-4", "route", "show", "table", "all"]),
    ("ipv6_route", ["ip", "-6", "route", "show", "table", "all"]),
    ("ipv4_addr", ["ip", "-4", "addr"]),
    ("ipv6_addr", ["ip", "-6", "addr"]),
    ("links", ["ip", "-d", "link"]),
    ("rules", ["ip", "rule"]),
    ("ipv4_tables", ["iptables-save", "-c"]),
    ("ipv6_tables", ["ip6tables-save", "-c"]),
    ("ipsets", ["ipset", "list"]),
    ("conntrack_count", ["conntrack", "-C"]),
    ("sockets", ["ss", "-a", "-n", "-p"]),
)
SYSCTL_PREFIXES = (
    "net/ipv4/conf/all",
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all",
    "net/netfilter/nf_conntrack_count",
    "net/netfilter/nf_conntrack_max",
)


def redact(text: str) -> str:
    """`text` with every value that follows a secret-looking key replaced."""

    def hide(m: re.Match[str]) -> str:
        quote = m.group(3)[0] if m.group(3)[0] in "\"'" else ""
        return f"{m.group(1)}{m.group(2)}{quote}{REDACTED}{quote}"

    return _SECRET_VALUE.sub(hide, text)


@dataclass
class Bundle:
    """Files for the tarball, by path under diagnostics/; everything added is redacted."""

    files: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    never_read: set[Path] = field(default_factory=set)  # secrets: not even opened

    def add(self, name: str, text: str) -> None:
        if _PRIVATE_KEY.search(text):
            self.skipped.append(f"{name}: holds a private key")
            return
        self.files[name] = redact(text)

    def add_file(self, name: str, path: Path) -> None:
        resolved = path.resolve()
        if any(resolved == p or p in resolved.parents for p in self.never_read):
            self.skipped.append(f"{path}: secret (not read)")
            return
        try:
            text = path.read_bytes().decode(errors="replace")
        except OSError as exc:
            self.skipped.append(f"{path}: {exc.strerror}")
            return
        self.add(name, text)

    def add_tree(self, prefix: str, directory: Path, keep: Callable[[Path], bool]) -> None:
        """Regular files directly in `directory` that `keep` accepts."""
        try:
            entries = sorted(directory.iterdir())
        except OSError as exc:
            self.skipped.append(f"{directory}: {exc.strerror}")
            return
        for path in entries:
            if path.is_file() and keep(path):
                self.add_file(f"{prefix}/{path.name}", path)

    def tar_bytes(self, mtime: float) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            entries = dict(self.files)
            entries["skipped.txt"] = "".join(f"{s}\n" for s in self.skipped)
            for name, text in sorted(entries.items()):
                data = text.encode()
                info = tarfile.TarInfo(f"diagnostics/{name}")
                info.size, info.mtime, info.mode = len(data), int(mtime), 0o600
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()


def kernel_state(bundle: Bundle, proc_sys: Path = Path("/proc/sys")) -> Iterator[str]:
    """Run the commands and read the sysctls; yields progress lines."""
    for name, argv in COMMANDS:
        yield f"Dumping {name}"
        try:
            proc = programs.run(argv, timeout=60)
            bundle.add(name, proc.stdout + proc.stderr)
        except (OSError, programs.TimeoutExpired) as exc:
            bundle.add(name, f"{' '.join(argv)} failed: {exc}\n")
    lines = []
    for prefix in SYSCTL_PREFIXES:
        base = proc_sys / prefix
        for path in sorted(base.rglob("*")) if base.is_dir() else [base]:
            try:
                lines.append(f"{path.relative_to(proc_sys)} = {path.read_text().strip()}")
            except OSError:
                continue
    bundle.add("sysctls", "\n".join(lines) + "\n")


def _is_config(path: Path) -> bool:
    return path.suffix in (".cfg", ".conf", ".yaml", ".yml", ".json", ".toml")


def local_files(bundle: Bundle, log_dir: Path, run_dir: Path, etc_dir: Path) -> None:
    bundle.add_tree("logs", log_dir, lambda p: True)
    bundle.add_tree("run", run_dir, lambda p: p.suffix == ".log" or _is_config(p))
    bundle.add_tree("etc", etc_dir, _is_config)


def never_read(environ: Mapping[str, str], key_files: list[str]) -> set[Path]:
    """The BGP secrets directory and every TLS key file calico-py is configured with."""
    secrets = Path(environ.get("CALICO_SECRETS_DIR") or "/etc/calico/secrets")
    return {p.resolve() for p in [secrets, *(Path(k) for k in key_files if k)]}


def bundle_name(now: float) -> str:
    return f"diags-{time.strftime('%Y%m%d_%H%M%S', time.localtime(now))}.tar.gz"

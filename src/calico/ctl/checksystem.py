"""`calicoctl node checksystem`: does this host's kernel have what calico-py's Felix uses?

Each feature is looked for the way calicoctl looks for kernel modules, first hit wins: loaded
or built in with parameters (/sys/module, /proc/modules), installed (modules.dep,
modules.builtin under /lib/modules/<release>), in the kernel config (`=y` or `=m` in
/proc/config.gz, /boot/config-<release>... or --kernel-config), or -- for iptables
extensions -- registered with x_tables (/proc/net/ip_tables_matches and _targets list the
built-in ones too). Sysctls are files under /proc/sys; programs are looked up on PATH.

The list is what calico-py programs: the iptables matches and targets its rules render (set,
conntrack, mark, multiport, addrtype, comment, rpfilter, MASQUERADE, NOTRACK), IP sets, an
iptables backend (legacy ip_tables, or nf_tables with its x_tables compatibility), conntrack
with its netlink interface (flows of removed endpoints are deleted), forwarding. IPv6, VXLAN
and IPIP are needed only by pools or hosts that use them: missing, they warn. Every path is
read under `root` so tests can hand in a fake tree.
"""

from __future__ import annotations

import gzip
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

MIN_KERNEL = (2, 6, 24)  # calicoctl's minimum: network namespaces and veth pairs


@dataclass(frozen=True, slots=True)
class Feature:
    name: str  # the module name, as calicoctl prints it
    config: str  # kernel config option
    xt: str = ""  # x_tables match or target name, when it is one
    required: bool = True
    why: str = ""


FEATURES = (
    Feature("ip_set", "CONFIG_IP_SET", why="IP sets for selectors"),
    Feature("xt_set", "CONFIG_NETFILTER_XT_SET", "set"),
    Feature("nf_conntrack", "CONFIG_NF_CONNTRACK", "conntrack"),
    Feature("xt_conntrack", "CONFIG_NETFILTER_XT_MATCH_CONNTRACK", "conntrack"),
    Feature("nf_conntrack_netlink", "CONFIG_NF_CT_NETLINK", why="deleting stale flows"),
    Feature("xt_mark", "CONFIG_NETFILTER_XT_MARK", "mark"),
    Feature("xt_multiport", "CONFIG_NETFILTER_XT_MATCH_MULTIPORT", "multiport"),
    Feature("xt_addrtype", "CONFIG_NETFILTER_XT_MATCH_ADDRTYPE", "addrtype"),
    Feature("xt_comment", "CONFIG_NETFILTER_XT_MATCH_COMMENT", "comment"),
    Feature("xt_rpfilter", "CONFIG_IP_NF_MATCH_RPFILTER", "rpfilter"),
    Feature("xt_MASQUERADE", "CONFIG_NETFILTER_XT_TARGET_MASQUERADE", "MASQUERADE"),
    Feature("xt_CT", "CONFIG_NETFILTER_XT_TARGET_CT", "NOTRACK"),
    Feature("ip6_tables", "CONFIG_IP6_NF_IPTABLES", required=False, why="IPv6"),
    Feature("vxlan", "CONFIG_VXLAN", required=False, why="VXLAN pools"),
    Feature("ipip", "CONFIG_NET_IPIP", required=False, why="IPIP pools"),
)
# An iptables backend: either one will do (Felix detects which the host uses).
BACKENDS = {
    "legacy": (Feature("ip_tables", "CONFIG_IP_NF_IPTABLES"),),
    "nft": (Feature("nf_tables", "CONFIG_NF_TABLES"), Feature("nft_compat", "CONFIG_NFT_COMPAT")),
}
BACKEND_PROGRAMS = {
    "legacy": ("iptables-legacy-save", "iptables-legacy-restore"),
    "nft": ("iptables-nft-save", "iptables-nft-restore"),
}
SYSCTLS = (
    ("net.ipv4.ip_forward", True),
    ("net.netfilter.nf_conntrack_max", True),
    ("net.ipv4.conf.all.rp_filter", True),
    ("net.ipv6.conf.all.forwarding", False),
)
PROGRAMS = (("ip", True), ("ipset", True), ("conntrack", True), ("sysctl", True), ("bird", False))


@dataclass(frozen=True, slots=True)
class Result:
    section: str
    name: str
    ok: bool
    required: bool
    detail: str = ""


class SystemView:
    """The files checksystem reads, under `root` ("/" on a real host)."""

    def __init__(
        self,
        root: Path = Path("/"),
        kernel_config: Path | None = None,
        which: Callable[[str], str | None] = shutil.which,
    ) -> None:
        self.root = root
        self.which = which
        self.release = self._text("proc/sys/kernel/osrelease").strip()
        self._modules = self._module_names()
        self._config = self._read_config(kernel_config)
        self._xt = set(
            (
                self._text("proc/net/ip_tables_matches") + self._text("proc/net/ip_tables_targets")
            ).split()
        )

    def _text(self, rel: str) -> str:
        try:
            return (self.root / rel).read_text()
        except OSError:
            return ""

    def _module_names(self) -> set[str]:
        names = {line.split()[0] for line in self._text("proc/modules").splitlines() if line}
        sys_module = self.root / "sys/module"
        if sys_module.is_dir():
            names |= {p.name for p in sys_module.iterdir()}
        lib = f"lib/modules/{self.release}"
        for listing in (f"{lib}/modules.dep", f"{lib}/modules.builtin"):
            for path in re.findall(r"([^/\s:]+)\.ko", self._text(listing)):
                names.add(path)
        return {n.replace("-", "_") for n in names}

    def _read_config(self, override: Path | None) -> dict[str, str]:
        candidates = [override] if override else self._config_paths()
        for path in candidates:
            try:
                data = path.read_bytes()
            except OSError:
                continue
            text = gzip.decompress(data).decode() if path.suffix == ".gz" else data.decode()
            return dict(re.findall(r"^(CONFIG_\w+)=(\S+)$", text, re.MULTILINE))
        return {}

    def _config_paths(self) -> list[Path]:
        r = self.release
        rels = ["proc/config.gz", "usr/src/linux/.config", f"boot/config-{r}",
                f"usr/src/linux-{r}/.config", f"usr/src/linux-headers-{r}/.config",
                f"lib/modules/{r}/build/.config"]  # fmt: skip
        return [self.root / rel for rel in rels]

    def has(self, feature: Feature) -> str | None:
        """Where the feature was found; None when it was not."""
        if feature.name.replace("-", "_") in self._modules:
            return "module"
        if self._config.get(feature.config) in ("y", "m"):
            return f"{feature.config}={self._config[feature.config]}"
        if feature.xt and feature.xt in self._xt:
            return "x_tables"
        return None

    def sysctl(self, name: str) -> str | None:
        path = self.root / "proc/sys" / name.replace(".", "/")
        try:
            return path.read_text().strip()
        except OSError:
            return None


def _kernel_ok(release: str) -> bool:
    numbers = [int(n) for n in re.findall(r"\d+", release.split("-")[0])[:3]]
    return tuple(numbers) >= MIN_KERNEL


def check(view: SystemView) -> Iterator[Result]:
    """Every check, in the order they are printed."""
    yield Result("kernel version", view.release or "unknown", _kernel_ok(view.release), True)
    for feature in FEATURES:
        where = view.has(feature)
        yield Result("kernel modules", feature.name, where is not None, feature.required,
                     where or feature.why)  # fmt: skip
    usable = []
    for backend, features in BACKENDS.items():
        found = all(view.has(f) for f in features)
        programs = all(view.which(p) for p in BACKEND_PROGRAMS[backend])
        if found and programs:
            usable.append(backend)
        detail = "not in the kernel" if not found else "" if programs else (
            f"no {' or '.join(BACKEND_PROGRAMS[backend])} on PATH"
        )  # fmt: skip
        yield Result("iptables backends", backend, found and programs, False, detail)
    yield Result("iptables backends", "any backend", bool(usable), True, ",".join(usable))
    for name, required in SYSCTLS:
        value = view.sysctl(name)
        yield Result("sysctls", name, value is not None, required, value or "")
    for program, required in PROGRAMS:
        path = view.which(program)
        yield Result("programs", program, path is not None, required, path or "")


def report(results: Iterator[Result], out: Callable[[str], None]) -> bool:
    """Print like calicoctl (tab-indented name, OK/FAIL); True if nothing required failed."""
    ok = True
    section = ""
    for r in results:
        if r.section != section:
            section = r.section
            out(f"Checking {section}...")
        verdict = "OK" if r.ok else "FAIL" if r.required else "WARNING"
        out(f"\t\t{r.name:<20}\t\t\t\t\t{verdict}" + (f"  ({r.detail})" if r.detail else ""))
        ok &= r.ok or not r.required
    return ok

"""calicoctl node checksystem over fake /proc and /sys trees, and node diags' secret handling."""

from __future__ import annotations

import gzip
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from calico.ctl import checksystem as cs
from calico.ctl import diags as dg
from calico.ctl.commands.node import checksystem, diags
from calico.ctl.context import CtlContext
from calico.datastore.client import ResourceClient

Run = Callable[..., Result]
ALL_PROGRAMS = {
    "ip", "ipset", "conntrack", "sysctl", "bird",
    "iptables-nft-save", "iptables-nft-restore", "iptables-legacy-save", "iptables-legacy-restore",
}  # fmt: skip


def fake_host(root: Path, config: dict[str, str], modules: list[str], xt: list[str]) -> Path:
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/osrelease").write_text("6.1.0-18-amd64\n")
    (root / "proc/config.gz").write_bytes(
        gzip.compress("".join(f"{k}={v}\n" for k, v in config.items()).encode())
    )
    (root / "proc/net").mkdir()
    (root / "proc/net/ip_tables_matches").write_text("".join(f"{m}\n" for m in xt))
    for module in modules:
        (root / "sys/module" / module).mkdir(parents=True)
    for name in ("net/ipv4/ip_forward", "net/netfilter/nf_conntrack_max",
                 "net/ipv4/conf/all/rp_filter"):  # fmt: skip
        (root / "proc/sys" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "proc/sys" / name).write_text("1\n")
    return root


def full_config() -> dict[str, str]:
    config = {f.config: "y" for f in cs.FEATURES}
    config.update({f.config: "m" for fs in cs.BACKENDS.values() for f in fs})
    return config


def results(root: Path, programs: set[str] = ALL_PROGRAMS) -> dict[str, cs.Result]:
    view = cs.SystemView(root, which=lambda p: f"/usr/sbin/{p}" if p in programs else None)
    return {r.name: r for r in cs.check(view)}


def test_a_host_with_everything_passes(tmp_path: Path) -> None:
    lines: list[str] = []
    view = cs.SystemView(fake_host(tmp_path, full_config(), [], []), which=lambda p: p)
    assert cs.report(cs.check(view), lines.append)
    assert "\t\txt_set              \t\t\t\t\tOK  (CONFIG_NETFILTER_XT_SET=y)" in lines
    assert lines[:2] == ["Checking kernel version...", "\t\t6.1.0-18-amd64      \t\t\t\t\tOK"]


def test_each_source_of_evidence_counts(tmp_path: Path) -> None:
    config = full_config()
    for option in ("CONFIG_IP_SET", "CONFIG_NETFILTER_XT_MATCH_COMMENT", "CONFIG_VXLAN"):
        del config[option]
    found = results(fake_host(tmp_path, config, ["ip_set", "vxlan"], ["comment"]))
    assert found["ip_set"].ok and found["ip_set"].detail == "module"
    assert found["xt_comment"].ok and found["xt_comment"].detail == "x_tables"
    assert found["vxlan"].ok


def test_a_missing_required_feature_fails_and_an_optional_one_warns(tmp_path: Path) -> None:
    config = full_config()
    del config["CONFIG_NETFILTER_XT_SET"], config["CONFIG_NET_IPIP"]
    lines: list[str] = []
    view = cs.SystemView(fake_host(tmp_path, config, [], []), which=lambda p: p)
    assert not cs.report(cs.check(view), lines.append)
    assert "\t\txt_set              \t\t\t\t\tFAIL" in lines
    assert "\t\tipip                \t\t\t\t\tWARNING  (IPIP pools)" in lines


def test_one_iptables_backend_with_its_programs_is_enough(tmp_path: Path) -> None:
    config = full_config()
    del config["CONFIG_NFT_COMPAT"]
    found = results(fake_host(tmp_path, config, [], []))
    assert not found["nft"].ok and found["legacy"].ok and found["any backend"].ok
    del config["CONFIG_IP_NF_IPTABLES"]
    (tmp_path / "b").mkdir()
    found = results(fake_host(tmp_path / "b", config, [], []))
    assert not found["any backend"].ok and found["any backend"].required
    only_nft_programs = ALL_PROGRAMS - {"iptables-legacy-save"}
    config = full_config()
    del config["CONFIG_NF_TABLES"]
    (tmp_path / "c").mkdir()
    found = results(fake_host(tmp_path / "c", config, [], []), only_nft_programs)
    assert found["legacy"].detail == "no iptables-legacy-save or iptables-legacy-restore on PATH"
    assert not found["any backend"].ok


def test_missing_sysctls_programs_and_old_kernels_fail(tmp_path: Path) -> None:
    root = fake_host(tmp_path, full_config(), [], [])
    (root / "proc/sys/net/ipv4/ip_forward").unlink()
    (root / "proc/sys/kernel/osrelease").write_text("2.6.18-old\n")
    found = results(root, ALL_PROGRAMS - {"ipset", "bird"})
    for name in ("net.ipv4.ip_forward", "ipset", "2.6.18-old"):
        assert not found[name].ok and found[name].required
    assert not found["bird"].ok and not found["bird"].required


def test_checksystem_command_exit_status_follows_required_features(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_host(tmp_path / "host", full_config(), [], [])
    real = cs.SystemView

    def view(kernel_config: Path | None = None) -> cs.SystemView:
        return real(root, kernel_config, which=lambda p: p)

    monkeypatch.setattr(cs, "SystemView", view)
    assert run(checksystem).output.endswith(
        "System meets minimum system requirements to run Calico!\n"
    )
    config = full_config()
    del config["CONFIG_NETFILTER_XT_SET"]
    override = tmp_path / "config"
    override.write_text("".join(f"{k}={v}\n" for k, v in config.items()))
    out = run(checksystem, "--kernel-config", str(override), ok=False).output
    assert "\t\txt_set              \t\t\t\t\tFAIL" in out
    assert "doesn't meet one or more minimum systems requirements to run Calico" in out


# -- diags --------------------------------------------------------------------------------------

PEM_KEY = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBmWZtopsecretkeymaterial\n-----END EC PRIVATE KEY-----\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('  password "s3cr3t";  # From its secret', '  password "<redacted>";  # From its secret'),
        ("etcdKeyFile: /etc/calico/key.pem", "etcdKeyFile: <redacted>"),
        ("ETCD_KEY_FILE=/k.pem other=1", "ETCD_KEY_FILE=<redacted> other=1"),
        ('{"nodeMeshPassword": "x"}', '{"nodeMeshPassword": "<redacted>"}'),
        ("default via 198.18.0.1 dev eth0", "default via 198.18.0.1 dev eth0"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert dg.redact(text) == expected


def bundle_files(path: Path) -> dict[str, str]:
    with tarfile.open(path) as tar:
        return {
            m.name: tar.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


def test_diags_bundle_has_the_node_state_and_no_secrets(
    run: Run,
    ctx: CtlContext,
    resources: ResourceClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_dir, logs, secrets = tmp_path / "run", tmp_path / "logs", tmp_path / "secrets"
    for d in (run_dir, logs, secrets / "bgp"):
        d.mkdir(parents=True)
    (run_dir / "bird.cfg").write_text('protocol bgp peer1 {\n  password "bird-pw-1";\n}\n')
    (run_dir / "felix.log").write_text("INFO felix started\n")
    (run_dir / "tls.conf").write_text(PEM_KEY)  # a private key, whatever it is called
    (run_dir / "etcd-key.cfg").write_text("raw-key-bytes-0xdeadbeef\n")
    (secrets / "bgp" / "password").write_text("mesh-pw-2\n")
    (logs / "bird.log").write_text("bgp1: password=log-pw-3 rejected\n")
    ctx.environ = dict(ctx.environ) | (
        {
            "CALICO_RUN_DIR": str(run_dir),
            "CALICO_SECRETS_DIR": str(secrets),
            "ETCD_KEY_FILE": str(run_dir / "etcd-key.cfg"),
            "ETCD_CERT_FILE": str(run_dir / "cert.pem"),
            "ETCD_ENDPOINTS": "http://198.18.0.1:2379",
        }
    )
    monkeypatch.setattr(dg, "COMMANDS", (("links", ["ip", "-d", "link"]),))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    out = run(diags, "--log-dir", str(logs)).output
    path = Path(out.splitlines()[-1].removeprefix("Diags saved to "))
    files = bundle_files(path)
    assert "lo:" in files["diagnostics/links"]
    assert "INFO felix started" in files["diagnostics/run/felix.log"]
    assert 'password "<redacted>"' in files["diagnostics/run/bird.cfg"]
    assert "calico-py" in files["diagnostics/datastore/clusterinformation.yaml"]
    assert "IPPool: 0" in files["diagnostics/datastore/resource_counts"]
    assert files["diagnostics/node_status"].startswith("Calico process is")
    skipped = files["diagnostics/skipped.txt"]
    assert "run/tls.conf: holds a private key" in skipped
    assert f"{run_dir / 'etcd-key.cfg'}: secret (not read)" in skipped
    raw = gzip.decompress(path.read_bytes())
    for secret in ("bird-pw-1", "mesh-pw-2", "log-pw-3", "topsecretkeymaterial", "0xdeadbeef"):
        assert secret.encode() not in raw

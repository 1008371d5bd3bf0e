"""etcd with TLS and client certificates: every entry point given the right files, the wrong CA,
or no client certificate; and a grep of everything they printed for the secrets they held.

One etcd (calico.testing.etcd_server) with --client-cert-auth, a CA and certificates from
calico.lab.pki, and a second CA that signed nothing etcd trusts. Each entry point runs as the
real executable; a failure must exit non-zero with one line naming the TLS problem (the CA
file, or the missing client certificate) and leave etcd's revision where it was. The daemons
(calico node, Felix, the DHCP agent) run only in the failure cases here: a good start would
program this machine's root namespace; the lab e2e test (tests/e2e/test_lab_etcd_tls.py) is
their good case. Writes the `tls` section of docs/reliability.md.

    python bench/etcd_tls.py [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from calico import programs
from calico.datastore.config import EtcdConfig
from calico.datastore.etcd import EtcdBackend
from calico.lab.pki import Pki, local_pair
from calico.testing.doc_sections import write_section
from calico.testing.etcd_server import EtcdServer, EtcdTls

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
BIN = Path(sys.executable).parent
COMPONENTS = ("calicoctl", "calico node", "calico-felix", "CNI plugin", "calico-dhcp-agent",
              "calico-neutron-resync")  # fmt: skip
CASES = ("good", "wrong CA", "no client cert", "client cert of another CA")
DAEMONS = ("calico node", "calico-felix", "calico-dhcp-agent")  # good case: the lab e2e test
BGP_PASSWORD = "bgp-secret-7f3e9a"  # in CALICO_SECRETS_DIR, named by a BGPPeer's secretKeyRef
KEYSTONE_PASSWORD = "keystone-secret-41c2d8"  # in the neutron config file's auth section
RUN_TIMEOUT = 30.0
POLICY = """apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: tls-check}
spec: {selector: all(), types: [Ingress]}
"""
PEER = """apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tls-peer}
spec:
  peerIP: 198.18.0.250
  asNumber: 64513
  password: {secretKeyRef: {name: bgp-peer, key: password}}
"""


@dataclass(frozen=True, slots=True)
class Setup:
    """The etcd under test, its CA and the files each case hands to a component."""

    server: EtcdServer
    pki: Pki
    other: Pki
    work: Path

    def files(self, case: str) -> tuple[str, str | None, str | None]:
        """(CA file, client certificate, client key) for a case."""
        ca = self.other.ca_file if case == "wrong CA" else self.pki.ca_file
        if case == "no client cert":
            return str(ca), None, None
        signer = self.other if case == "client cert of another CA" else self.pki
        return str(ca), str(signer.cert("client")), str(signer.key("client"))

    def revision(self) -> int:
        backend = EtcdBackend(_config(self, "good"))
        try:
            return backend.list("/calico/").revision
        finally:
            backend.close()


@dataclass(frozen=True, slots=True)
class Outcome:
    component: str
    case: str
    returncode: int
    error: str  # the line naming the failure ("" when it worked)
    written: bool  # etcd's revision moved
    output: str  # everything the run printed, for the secrets grep


@contextlib.contextmanager
def setup() -> Iterator[Setup]:
    """etcd with client-cert-auth, its CA, a client certificate, and a CA it does not know."""
    work = Path(tempfile.mkdtemp(prefix="calico-etcd-tls-"))
    pki, other = local_pair(work)
    cni_bin = work / "cni-bin"
    programs.run([str(BIN / "calico"), "cni", "install", "--bin-dir", str(cni_bin)], check=True)
    secret = work / "secrets" / "bgp-peer"
    secret.mkdir(parents=True, mode=0o700)
    (secret / "password").write_text(BGP_PASSWORD)
    (secret / "password").chmod(0o600)
    tls = EtcdTls(pki.ca_file, pki.cert("etcd"), pki.key("etcd"), pki.cert("client"),
                  pki.key("client"))  # fmt: skip
    try:
        with EtcdServer(tls=tls) as server:
            yield Setup(server, pki, other, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _config(s: Setup, case: str) -> EtcdConfig:
    ca, cert, key = s.files(case)
    return EtcdConfig(endpoints=(s.server.endpoint,), ca_cert_file=ca, cert_file=cert,
                      key_file=key)  # fmt: skip


def _env(s: Setup, case: str, run: Path) -> dict[str, str]:
    ca, cert, key = s.files(case)
    return {
        **os.environ,
        "ETCD_ENDPOINTS": s.server.endpoint,
        "ETCD_CA_CERT_FILE": ca,
        "ETCD_CERT_FILE": cert or "",
        "ETCD_KEY_FILE": key or "",
        "NODENAME": "tls-host",
        "CALICO_RUN_DIR": str(run),
        "CALICO_SECRETS_DIR": str(s.work / "secrets"),
        "IP": "198.18.0.1/24",
        "IP6": "none",
    }


def _neutron_conf(s: Setup, case: str, run: Path) -> Path:
    ca, cert, key = s.files(case)
    lines = ["[calico]", "etcd_host = 127.0.0.1", f"etcd_port = {s.server.client_port}",
             f"etcd_ca_cert_file = {ca}"]  # fmt: skip
    if cert and key:
        lines += [f"etcd_cert_file = {cert}", f"etcd_key_file = {key}"]
    lines += ["[keystone_authtoken]", f"password = {KEYSTONE_PASSWORD}"]
    path = run / "neutron.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cni_conf(s: Setup, case: str) -> str:
    ca, cert, key = s.files(case)
    conf = {"cniVersion": "1.0.0", "name": "net", "type": "calico", "ipam": {"type": "calico-ipam"},
            "etcd_endpoints": s.server.endpoint, "etcd_ca_cert_file": ca}  # fmt: skip
    if cert and key:
        conf |= {"etcd_cert_file": cert, "etcd_key_file": key}
    return json.dumps(conf)


def run_component(s: Setup, component: str, case: str) -> programs.CompletedProcess[str]:
    """The entry point as an operator would run it, with the case's files."""
    run = Path(tempfile.mkdtemp(dir=s.work, prefix="run-"))
    env = _env(s, case, run)
    if component == "calicoctl":
        (run / "policy.yaml").write_text(POLICY)
        argv = [str(BIN / "calicoctl"), "apply", "-f", str(run / "policy.yaml")]
    elif component == "calico node":
        argv = [str(BIN / "calico"), "node", "run"]
    elif component == "calico-felix":
        argv = [str(BIN / "calico-felix")]
    elif component == "CNI plugin":
        cni_bin = s.work / "cni-bin"
        env |= {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "tls-check", "CNI_IFNAME": "eth0",
                "CNI_NETNS": str(run / "no-netns"), "CNI_PATH": str(cni_bin)}  # fmt: skip
        return programs.run([str(cni_bin / "calico")], stdin=_cni_conf(s, case), env=env,
                            timeout=RUN_TIMEOUT)  # fmt: skip
    else:
        conf = str(_neutron_conf(s, case, run))
        argv = [str(BIN / component), "--config-file", conf]
        argv += ["--timeout", "2"] if component == "calico-neutron-resync" else []
    return programs.run(argv, env=env, timeout=RUN_TIMEOUT)


def error_line(output: str) -> str:
    """The line that names the failure: the one mentioning TLS, else the last one."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    tls = [line for line in lines if "TLS:" in line]
    return (tls or lines or [""])[-1]


def measure(s: Setup, component: str, case: str) -> Outcome:
    before = s.revision()
    proc = run_component(s, component, case)
    output = proc.stdout + proc.stderr
    written = s.revision() != before
    error = "" if proc.returncode == 0 else error_line(output)
    return Outcome(component, case, proc.returncode, error, written, output)


def cases() -> Iterator[tuple[str, str]]:
    for component in COMPONENTS:
        for case in CASES:
            if case != "good" or component == "calicoctl":
                yield component, case


def ctl_get_yaml(s: Setup) -> str:
    """Apply a BGPPeer whose password is a secretKeyRef and read it back as YAML."""
    run = Path(tempfile.mkdtemp(dir=s.work, prefix="peer-"))
    (run / "peer.yaml").write_text(PEER)
    env = _env(s, "good", run)
    ctl = str(BIN / "calicoctl")
    programs.run([ctl, "apply", "-f", str(run / "peer.yaml")], env=env, check=True)
    return programs.run([ctl, "get", "bgppeer", "tls-peer", "-o", "yaml"], env=env,
                        check=True).stdout  # fmt: skip


def secrets(s: Setup) -> list[str]:
    """Values that must never be printed: passwords and every line of the private keys."""
    values = [BGP_PASSWORD, KEYSTONE_PASSWORD]
    keys = [s.pki.key("client"), s.pki.key("etcd"), s.pki.key("ca"), s.other.key("client")]
    for key in keys:
        values += [line for line in key.read_text().splitlines() if "-----" not in line]
    return values


def leaks(texts: list[str], values: list[str]) -> int:
    return sum(text.count(value) for text in texts for value in values)


def _cell(error: str, work: Path) -> str:
    """The error from its TLS sentence on, with the run's temp dir shortened."""
    if not error:
        return "(worked)"
    text = error[error.index("TLS:") :] if "TLS:" in error else error
    text = text.removesuffix(")") if "answered (" in error else text  # the endpoint list's
    return text.replace(str(work), "…").replace("|", "/")


def section(outcomes: list[Outcome], leaked: int, peer_yaml_clean: bool, work: Path) -> str:
    date = time.strftime("%Y-%m-%d", time.gmtime())
    machine = f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs)"
    rows = [
        f"| {o.component} | {o.case} | {o.returncode} | {'yes' if o.written else 'no'} |"
        f" {_cell(o.error, work)} |"
        for o in outcomes
    ]
    failed = [o for o in outcomes if o.case != "good"]
    clean = sum(1 for o in failed if o.returncode != 0 and not o.written and "TLS:" in o.error)
    return "\n".join([
        "## etcd with TLS and client certificates (bench/etcd_tls.py)",
        "",
        f"{date}, {machine}. One etcd with `--client-cert-auth`; each entry point run as its",
        "executable with the right files, a CA that did not sign etcd's certificate, or no",
        "client certificate. The daemons' good case is the lab e2e test",
        "(tests/e2e/test_lab_etcd_tls.py: `etcd: {tls: true}`, workloads reach each other; it",
        "also greps every lab log, BGP agent's included, for a peer's BGP password and the keys).",
        "Secrets grepped here: every private key's lines, a BGP password (CALICO_SECRETS_DIR),",
        "a Keystone password in the Neutron config file; in every run's output and etcd's log.",
        "",
        "| entry point | case | exit | etcd written | error line |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "| figure | value | goal |",
        "|---|---|---|",
        f"| bad-TLS runs failing with a TLS line and etcd unchanged | {clean}/{len(failed)}"
        f" | {len(failed)}/{len(failed)} |",
        f"| secret values found in logs and output | {leaked} | 0 |",
        "| `calicoctl get bgppeer -o yaml` shows the secretKeyRef, not the password |"
        f" {'yes' if peer_yaml_clean else 'NO'} | yes |",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    opts = parser.parse_args()
    with setup() as s:
        outcomes = [measure(s, component, case) for component, case in cases()]
        peer = ctl_get_yaml(s)
        leaked = leaks([o.output for o in outcomes] + [peer, s.server.log_file.read_text()],
                       secrets(s))  # fmt: skip
        peer_clean = "secretKeyRef" in peer and BGP_PASSWORD not in peer
        text = section(outcomes, leaked, peer_clean, s.work)
    print(text)
    if not opts.no_write:
        write_section(DOC, "tls", text)


if __name__ == "__main__":
    main()

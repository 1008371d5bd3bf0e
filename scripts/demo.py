"""`make demo`: a throwaway etcd, the example manifests applied with calicoctl, and what
calicoctl then shows. Everything it starts is stopped again, also on failure.

The multi-host lab (hosts as network namespaces running Felix and BIRD) will replace this
once those parts exist; today it shows the datastore, validation and the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from calico.testing.etcd_server import EtcdServer

ROOT = Path(__file__).resolve().parent.parent
CALICOCTL = str(Path(sys.executable).parent / "calicoctl")

STEPS: list[tuple[str, list[str], bool]] = [
    ("Validate the example manifests offline", ["validate", "-f", "examples/"], True),
    ("Apply them to the datastore", ["apply", "-f", "examples/"], True),
    ("IP pools", ["get", "ippools", "-o", "wide"], True),
    ("Tiers (the default tier is built in)", ["get", "tiers", "-o", "wide"], True),
    ("Global network policies", ["get", "globalnetworkpolicies", "-o", "wide"], True),
    ("Network policies in every namespace", ["get", "networkpolicies", "-A", "-o", "wide"], True),
    ("Workload endpoints in namespace shop", ["get", "wep", "-n", "shop", "-o", "wide"], True),
    ("Nodes and BGP", ["get", "nodes", "-o", "wide"], True),
    (
        "One policy as YAML (defaults filled in)",
        ["get", "np", "allow-web", "-n", "shop", "-o", "yaml"],
        True,
    ),
    ("A bad manifest is refused with the field and the reason", ["apply", "-f", "-"], False),
    ("Label a resource", ["label", "ippool", "default-ipv4-ippool", "env=demo"], True),
    ("Cluster information", ["version"], True),
]

BAD_MANIFEST = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-db
spec:
  selector: role == 'db'
  ingress:
  - action: Deny
    protocol: TCP
    destination:
      ports: [5432, "80:70"]
"""


def run_step(title: str, args: list[str], expect_ok: bool, env: dict[str, str]) -> bool:
    print(f"\n=== {title}\n$ calicoctl {' '.join(args)}", flush=True)
    stdin = BAD_MANIFEST if args[-1] == "-" else None
    if stdin is not None:
        print(BAD_MANIFEST, end="", flush=True)
    proc = subprocess.run(
        [CALICOCTL, *args], input=stdin, text=True, env=env, cwd=ROOT, check=False
    )
    if (proc.returncode == 0) != expect_ok:
        print(f"demo: unexpected exit code {proc.returncode}", file=sys.stderr)
        return False
    return True


def main() -> int:
    print("Starting a throwaway etcd ...", flush=True)
    with EtcdServer() as etcd:
        print(f"etcd is listening on {etcd.endpoint} (pid {etcd.pid})")
        env = {**os.environ, "ETCD_ENDPOINTS": etcd.endpoint}
        ok = all(run_step(title, args, expect, env) for title, args, expect in STEPS)
    print("\netcd stopped; its data directory was removed.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

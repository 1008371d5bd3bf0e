"""`calico` entry point (node bring-up, CNI install, the lab). Not built yet: say so."""

from __future__ import annotations

import sys


def main() -> None:
    print(
        "calico: node, cni and lab commands are not implemented yet in calico-py "
        "(see issues #4 and #5); use calicoctl for resources",
        file=sys.stderr,
    )
    sys.exit(1)

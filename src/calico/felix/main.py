"""calico-felix entry point. The agent is not built yet (issue #3); say so plainly."""

from __future__ import annotations

import sys


def main() -> None:
    print(
        "calico-felix: the per-host agent is not implemented yet in calico-py "
        "(it will program routes, interfaces and iptables policy; see issue #3)",
        file=sys.stderr,
    )
    sys.exit(1)

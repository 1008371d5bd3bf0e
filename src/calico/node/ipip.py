"""IPIP at node start: say clearly that an IPIP pool in the datastore is not served.

calico-py has no IPIP dataplane: the model refuses `ipipMode` Always/CrossSubnet, so a pool
written with it by another tool is skipped by every reader (no addresses, no routes; VXLAN is
the kernel-independent alternative). Many kernels (this project's test machines included) lack
the ipip module altogether. `calico node run` therefore starts as usual, serving every other
pool, and logs an error per IPIP pool naming it, saying whether this kernel could do IPIP at
all (`ipip_available`). Refusing to start would take every valid pool's networking down for
a pool that is ignored anyway.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from calico.datastore.client import ResourceClient
from calico.model.keys import parse_key
from calico.model.network import IPPool

log = logging.getLogger(__name__)
SYS_MODULE = Path("/sys/module/ipip")  # present when ipip is loaded or built in
IPIP_FIELD = "spec.ipipMode"  # where the model's refusal points


def try_ipip_link() -> bool:
    """Create and delete a throwaway ipip link in this network namespace (the kernel loads
    the module on demand if it can); False if the kernel refuses the link type."""
    name = f"calipip{os.getpid() % 100000}"
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=name, kind="ipip")
        except NetlinkError:
            return False
        ipr.link("del", ifname=name)
    return True


def ipip_available(
    sys_module: Path = SYS_MODULE, probe: Callable[[], bool] = try_ipip_link
) -> bool:
    """True if this kernel can make IPIP tunnels."""
    return sys_module.exists() or probe()


def report_ipip_pools(
    client: ResourceClient, available: Callable[[], bool] = ipip_available
) -> list[str]:
    """Log an error for each stored IPIP pool (refused by the model); returns their names."""
    names = []
    for skipped in client.list(IPPool).skipped:
        key = parse_key(skipped.key)
        if IPIP_FIELD in skipped.reason and key is not None:
            names.append(key.name)
    if not names:
        return []
    kernel = "has ipip support" if available() else "has no ipip support either"
    for name in names:
        log.error(
            "IPPool %r asks for IPIP (ipipMode), which calico-py does not implement (this "
            "kernel %s): the pool is ignored, so nothing gets addresses or routes from it; "
            "use vxlanMode: Always or CrossSubnet (VXLAN) instead",
            name,
            kernel,
        )
    return names

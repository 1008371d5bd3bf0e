"""The `calico-ipam` IPAM plugin, for main plugins that delegate IPAM (e.g. `bridge`).

ADD answers with Calico IPAM addresses in the IPAM result format (addresses keep their block's
prefix length, as Calico's calico-ipam returns them; no interfaces). DEL releases by handle
`<network>.<containerID>` and by the legacy workload handle; releasing nothing is success.
CHECK succeeds when the handle still holds addresses.
"""

from __future__ import annotations

from typing import Any

from calico.cni.addresses import allocate, release
from calico.cni.runner import Call
from calico.cni.runner import main as run_main
from calico.cni.services import datastore_errors
from calico.cni.spec import CniError, Code, IPConfig, Result, encode_result


def cmd_add(call: Call) -> dict[str, Any]:
    cidrs = allocate(call.services.ipam, call.conf, call.ident, call.inv)
    result = Result(ips=tuple(IPConfig(cidr) for cidr in cidrs))
    return encode_result(result, call.conf.cni_version)


def cmd_del(call: Call) -> None:
    release(call.services.ipam, call.conf, call.ident)


def cmd_check(call: Call) -> None:
    handle = call.ident.handle_id(call.conf.name)
    with datastore_errors("reading IPAM"):
        held = call.services.ipam.ips_by_handle(handle)
    if not held:
        raise CniError(Code.CHECK_FAILED, f"no addresses are allocated to handle {handle}")


HANDLERS = {"ADD": cmd_add, "DEL": cmd_del, "CHECK": cmd_check}


def main() -> None:
    run_main(__name__)


if __name__ == "__main__":
    main()

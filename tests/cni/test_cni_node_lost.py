"""A calico node that takes a plugin's call and dies before answering: the plugin reports CNI
error 11 ("try again later": the call may be half done, and a runtime follows a failed ADD with
a DEL) and does not run the call a second time itself."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from calico import programs
from calico.testing.netns import Namespaces

pytestmark = pytest.mark.fv

# Stands in for a node that dies mid-call: takes one call, reads it, closes without a reply.
DYING_NODE = """
import socket
from calico.cni.node_socket import SOCKET_NAME
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(SOCKET_NAME)
listener.listen(1)
print("listening", flush=True)
conn, _ = listener.accept()
conn.recv(65536)
conn.close()
"""


def test_a_node_that_dies_mid_call_is_try_again_later(cni_bin_dir: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces")
    log = tmp_path / "cni.log"
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "calico", "log_file_path": str(log),
            "etcd_endpoints": "http://198.18.0.1:2379", "ipam": {"type": "calico-ipam"}}  # fmt: skip
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": "ADD",
           "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/absent", "CNI_IFNAME": "eth0",
           "CNI_PATH": str(cni_bin_dir)}  # fmt: skip
    with Namespaces() as ns:
        host = ns.add("host")
        enter = ["nsenter", f"--net=/run/netns/{host}"]
        node = programs.start(
            [*enter, sys.executable, "-I", "-c", DYING_NODE], stdout=programs.PIPE, text=True
        )
        try:
            assert node.stdout is not None and node.stdout.readline() == "listening\n"
            proc = programs.run(
                [*enter, str(cni_bin_dir / "calico")], stdin=json.dumps(conf), env=env, timeout=60
            )
        finally:
            node.kill()
            node.wait(timeout=30)
    assert proc.returncode == 1, proc
    error = json.loads(proc.stdout)
    assert error["code"] == 11 and "did not answer" in error["msg"]
    assert not log.exists()  # nothing ran the call in the plugin's own process

"""What a plugin process loads for an ADD or DEL stays cut (`bench/cni_exec.py` measures the
cost): no httpx (the plugin's etcd transport is http.client), no PyYAML, no registry of every
kind (and so no FelixConfiguration or BGP validators), no selector parser for pools whose
nodeSelector is the default `all()`, no importlib.metadata (pydantic's plugin loader)."""

from __future__ import annotations

import json
import sys

from calico import programs

# What DefaultServices and the handlers import, and the models an ADD validates.
PROBE = """
import json, sys
from calico.cni import runner
runner._skip_unused_startup_work()  # as runner.main does first
import calico.cni.ipam_plugin, calico.cni.netsetup, calico.cni.plugin
import calico.datastore.client, calico.datastore.etcd, calico.datastore.etcd_stdlib
import calico.ipam.allocator
from calico.model.codec import parse_as
from calico.model.network import IPPool
pool = parse_as(IPPool, {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                  "metadata": {"name": "p"}, "spec": {"cidr": "198.19.0.0/24"}})
parse_as(IPPool, pool.to_dict())  # as stored: with the default nodeSelector
from calico.ipam.pools import select_pools
select_pools([pool], 4, [], "node-1", {})
print(json.dumps(sorted(sys.modules)))
"""
UNWANTED = (
    "httpx", "httpcore", "yaml", "calico.model.registry", "calico.model.felixconfig",
    "calico.selector", "importlib.metadata",
)  # fmt: skip


def test_plugin_path_imports_no_httpx_yaml_or_registry() -> None:
    out = programs.run([sys.executable, "-I", "-c", PROBE], check=True)
    loaded = set(json.loads(out.stdout))
    assert not [name for name in UNWANTED if name in loaded]


def test_the_plugin_scripts_entry_module_loads_only_the_standard_library() -> None:
    """An ADD handed to calico node costs the plugin process only this import."""
    probe = (
        "import json, sys\nimport calico.cni.node_socket\nprint(json.dumps(sorted(sys.modules)))"
    )
    out = programs.run([sys.executable, "-I", "-c", probe], check=True)
    ours = {name for name in json.loads(out.stdout) if name.startswith(("calico", "pydantic"))}
    assert ours == {"calico", "calico.cni", "calico.cni.node_socket"}

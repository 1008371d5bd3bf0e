"""Status Felix reports: its heartbeat (with a lease), endpoint status keys (up, down,
removed), /readiness and /liveness; and how it refuses an invalid configuration."""

from __future__ import annotations

import json
import sys
import time

import pytest

from calico import programs
from calico.datastore.api import KeyValue
from calico.model.endpoints import HostEndpoint, WorkloadEndpoint
from calico.testing.workloads import ping

from .conftest import FELIX, IN_SYNC, Cluster, FelixHost, wait_until

pytestmark = pytest.mark.fv
PREFIX = "/calico/felix/v2/no-region/host/h1/"

_HTTP_GET = """
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
except OSError as e:
    print(0); print(e)
"""


def http_get(host: FelixHost, url: str) -> tuple[int, str]:
    out = host.exec([sys.executable, "-c", _HTTP_GET, url]).stdout
    code, _, body = out.partition("\n")
    return int(code), body


def test_heartbeat_and_endpoint_status(cluster: Cluster) -> None:
    host = cluster.host("h1", FELIX_ENDPOINTREPORTINGENABLED="true", FELIX_REPORTINGTTLSECS="5")
    a = host.add_workload("cali1a", "198.19.0.1", "2001:db8:100::1")
    b = host.add_workload("cali1b", "198.19.0.2", None)
    c = host.add_workload("cali1c", "198.19.0.3", None)
    wep = cluster.add_endpoint(host, a, "pod-a")
    # Same pod name in another namespace: a status key of its own (Calico's workload ID is
    # "<namespace>/<pod>", escaped as "%2f").
    cluster.add_endpoint(host, b, "pod-a", "other")
    wep_c = cluster.add_endpoint(host, c, "pod-c")
    host.start()
    host.wait_ready()

    def get(key: str) -> KeyValue | None:
        return cluster.backend.get(key)

    wait_until(lambda: get(PREFIX + "status") is not None, what="heartbeat")
    status = get(PREFIX + "status")
    assert status is not None and status.lease != 0  # expires if Felix stops reporting
    first = json.loads(status.value)
    assert set(first) == {"time", "uptime", "first_update"}
    wait_until(
        lambda: json.loads(get(PREFIX + "status").value)["uptime"] > first["uptime"],  # type: ignore[union-attr]
        what="heartbeat refreshed",
    )
    assert json.loads(get(PREFIX + "last_reported_status").value)["first_update"] is False  # type: ignore[union-attr]

    def key_of(namespace: str, pod: str) -> str:
        return f"{PREFIX}workload/k8s/{namespace}%2f{pod}/endpoint/eth0"

    def endpoint_status(key: str) -> str | None:
        kv = get(key)
        return None if kv is None else str(json.loads(kv.value)["status"])

    key, other, key_c = (
        key_of("default", "pod-a"),
        key_of("other", "pod-a"),
        key_of("default", "pod-c"),
    )
    for k in (key, other, key_c):
        wait_until(lambda k=k: endpoint_status(k) == "up", what=f"{k} up")
    host.exec(["ip", "link", "set", "cali1a", "down"])
    wait_until(lambda: endpoint_status(key) == "down", what="endpoint down")
    assert not ping(cluster.ns, a.netns, "198.19.0.2")
    host.exec(["ip", "link", "set", "cali1a", "up"])
    wait_until(lambda: endpoint_status(key) == "up", what="endpoint up again")
    wait_until(lambda: ping(cluster.ns, a.netns, "198.19.0.2"), what="routes back after up")
    cluster.delete(WorkloadEndpoint, wep.name, "default")
    wait_until(lambda: get(key) is None, what="endpoint status removed")
    assert endpoint_status(other) == "up"

    # Host endpoints: up when their interface exists, down when it does not.
    for name, iface in (("uplink", "eth1"), ("spare", "eth9")):
        cluster.apply({
            "kind": "HostEndpoint", "metadata": {"name": name},
            "spec": {"node": "h1", "interfaceName": iface},
        })  # fmt: skip
    wait_until(lambda: endpoint_status(PREFIX + "endpoint/uplink") == "up", what="hep up")
    wait_until(lambda: endpoint_status(PREFIX + "endpoint/spare") == "down", what="hep down")
    cluster.ns.veth(host.netns, "eth9", host.upstream, "eth9")
    wait_until(lambda: endpoint_status(PREFIX + "endpoint/spare") == "up", what="hep up")
    cluster.delete(HostEndpoint, "spare")
    wait_until(lambda: get(PREFIX + "endpoint/spare") is None, what="hep status removed")

    # An endpoint deleted while Felix is down: its status is swept when Felix is back.
    host.kill()
    cluster.delete(WorkloadEndpoint, wep_c.name, "default")
    assert endpoint_status(key_c) == "up"
    host.start()
    host.wait_ready()
    wait_until(lambda: get(key_c) is None, what="stale endpoint status swept")
    assert endpoint_status(other) == "up"

    # Felix gone: the heartbeat expires with its lease (TTL 5 s), the last report stays.
    host.kill()
    wait_until(lambda: get(PREFIX + "status") is None, 15.0, "heartbeat expired")
    assert get(PREFIX + "last_reported_status") is not None


def test_health_endpoints(cluster: Cluster) -> None:
    host = cluster.host("h1", FELIX_HEALTHENABLED="true", FELIX_HEALTHHOST="127.0.0.1")
    host.start()
    url = "http://127.0.0.1:9099"
    wait_until(lambda: http_get(host, f"{url}/readiness")[0] == 200, what="ready")
    code, body = http_get(host, f"{url}/liveness")
    assert code == 200
    assert json.loads(body)["InternalDataplaneMainLoop"] == {"live": True, "ready": True}
    assert http_get(host, f"{url}/nothing")[0] == 404


def test_health_not_ready_until_datastore_ready(cluster: Cluster) -> None:
    """Felix waits for ClusterInformation datastoreReady; meanwhile it is not ready."""
    from calico.model.network import ClusterInformation

    info = cluster.client.get(ClusterInformation, "default")
    info.spec.datastoreReady = False
    cluster.client.replace(info)
    host = cluster.host("h1", FELIX_HEALTHENABLED="true", FELIX_HEALTHHOST="127.0.0.1")
    host.start()
    wait_until(
        lambda: "waiting for the datastore to be ready" in host.log_since_start(),
        what="Felix waits for the datastore",
    )
    code, _ = http_get(host, "http://127.0.0.1:9099/readiness")
    assert code != 200
    info = cluster.client.get(ClusterInformation, "default")
    info.spec.datastoreReady = True
    cluster.client.replace(info)
    host.wait_ready()
    wait_until(lambda: http_get(host, "http://127.0.0.1:9099/readiness")[0] == 200, what="ready")


@pytest.mark.parametrize(
    ("name", "value"),
    [("FELIX_REPORTINGINTERVALSECS", "soon"), ("FELIX_IPV6SUPPORT", "maybe")],
)
def test_invalid_config_exits_quickly_with_one_clear_line(
    cluster: Cluster, name: str, value: str
) -> None:
    host = cluster.host("h1")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NODENAME": "h1"}
    env |= {"ETCD_ENDPOINTS": cluster.etcd.unix_endpoint, "CALICO_RUN_DIR": str(host.run_dir)}
    start = time.monotonic()
    proc = programs.run(
        ["ip", "netns", "exec", host.netns, FELIX], env={**env, name: value}, timeout=30
    )
    assert time.monotonic() - start < 10
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    param = name.removeprefix("FELIX_").lower()
    assert param in lines[0].lower() and value in lines[0], lines[0]


def test_invalid_felix_configuration_in_datastore_does_not_stop_felix(cluster: Cluster) -> None:
    """A FelixConfiguration that does not validate (written behind calicoctl's back) is
    ignored with an error; once fixed, Felix restarts itself with it."""
    doc = {
        "apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
        "metadata": {"name": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"reportingInterval": "soon"},
    }  # fmt: skip
    key = "/calico/resources/v3/projectcalico.org/felixconfigurations/default"
    cluster.backend.put(key, json.dumps(doc).encode())
    host = cluster.host("h1")
    host.start()
    host.wait_ready()
    assert "ignoring invalid FelixConfiguration default" in host.log_since_start()
    cluster.backend.delete(key)
    cluster.apply({
        "kind": "FelixConfiguration", "metadata": {"name": "default"},
        "spec": {"defaultEndpointToHostAction": "Accept"},
    })  # fmt: skip
    wait_until(
        lambda: host.log_since_start().count(IN_SYNC) == 2, what="restarted with the fixed config"
    )
    assert host.proc is not None and host.proc.poll() is None

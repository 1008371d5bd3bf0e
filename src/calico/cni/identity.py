"""Who a CNI call is about, and every name derived from that (pure).

As in Calico's plugin (`utils.GetIdentifiers`): a call is Kubernetes-style when CNI_ARGS carry
both K8S_POD_NAMESPACE and K8S_POD_NAME (orchestrator `k8s`, the pod's namespace), otherwise
plain CNI (orchestrator `cni`, namespace `default`, the container ID names the workload).

- WorkloadEndpoint name: `<node>-k8s-<pod>-<ifname>` or `<node>-cni-<containerID>-<ifname>`.
- Host veth: `cali` + the first 11 hex digits of SHA-1("<namespace>.<pod>") for k8s (stable
  across sandbox restarts, like Calico's VethNameForWorkload), else `cali` + containerID[:11].
- IPAM handle `<network>.<containerID>`; the legacy "workload" handle Calico also releases on
  DEL is the containerID, or `<namespace>.<pod>` for k8s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from calico.cni.spec import Invocation
from calico.model.names import workload_endpoint_name

HOST_VETH_PREFIX = "cali"
K8S = "k8s"
CNI = "cni"
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True, slots=True)
class WorkloadIdentity:
    node: str
    orchestrator: str
    namespace: str
    container_id: str
    endpoint: str  # CNI_IFNAME
    pod: str | None = None

    @property
    def is_k8s(self) -> bool:
        return self.orchestrator == K8S

    @property
    def workload(self) -> str:
        return self.pod if self.is_k8s and self.pod else self.container_id

    @property
    def wep_name(self) -> str:
        return workload_endpoint_name(self.node, self.orchestrator, self.workload, self.endpoint)

    @property
    def host_veth(self) -> str:
        if self.is_k8s:
            digest = hashlib.sha1(f"{self.namespace}.{self.pod}".encode()).hexdigest()
            return HOST_VETH_PREFIX + digest[:11]
        return HOST_VETH_PREFIX + self.container_id[:11]

    def handle_id(self, network: str) -> str:
        return f"{network}.{self.container_id}"

    @property
    def legacy_handle_id(self) -> str:
        return f"{self.namespace}.{self.pod}" if self.is_k8s else self.container_id


def identify(inv: Invocation, node: str, namespace: str | None = None) -> WorkloadIdentity:
    """`namespace` (e.g. from a Mesos label) applies to plain CNI calls only."""
    pod_ns = inv.args.get("K8S_POD_NAMESPACE", "")
    pod = inv.args.get("K8S_POD_NAME", "")
    if pod_ns and pod:
        return WorkloadIdentity(node, K8S, pod_ns, inv.container_id, inv.ifname, pod)
    return WorkloadIdentity(node, CNI, namespace or DEFAULT_NAMESPACE, inv.container_id, inv.ifname)

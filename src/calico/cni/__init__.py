"""The Calico CNI plugins (`calico`, `calico-ipam`): container networking through Calico IPAM,
a veth per workload and a WorkloadEndpoint that Felix then secures and routes."""

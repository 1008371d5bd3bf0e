"""The Calico DHCP agent (`calico-dhcp-agent`): dnsmasq for this host's OpenStack VMs, driven
by the endpoint and subnet data in etcd, never by Neutron's database or RPC.

Layers: `config` (pure: endpoints + subnets -> per-network dnsmasq arguments and files),
`dnsmasq` (processes, files and the `ns-` interfaces), `agent` (etcd list+watch, debounced
reconcile), `main` (command line).
"""

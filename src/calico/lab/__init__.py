"""The lab: multi-host Calico deployments on one machine, hosts as network namespaces."""

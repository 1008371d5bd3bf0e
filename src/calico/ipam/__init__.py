"""Calico IPAM: IP pools carved into host-affine blocks, allocations by handle, CAS writes."""

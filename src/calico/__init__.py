"""calico-py: Project Calico's routed networking and host-enforced policy, in Python."""

__version__ = "0.1.0"

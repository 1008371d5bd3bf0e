"""calico-py: Project Calico's routed networking and host-enforced policy, in Python."""

__version__ = "0.1.0"


def version_line(prog: str) -> str:
    """What every command prints for --version."""
    return f"{prog} v{__version__} (calico-py)"

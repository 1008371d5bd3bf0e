"""Name rules shared by resources and their users, without pydantic (pure and cheap to import,
so a CNI plugin can check labels and derive endpoint names before it needs any model).

DNS-1123 labels and subdomains and Kubernetes qualified names, as Kubernetes and Calico
define them, and Calico's WorkloadEndpoint name.
"""

from __future__ import annotations

import functools
import re

DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = DNS_LABEL + r"(\." + DNS_LABEL + r")*"
_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_SUBDOMAIN_RE = re.compile("^" + DNS_SUBDOMAIN + "$")


def is_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_SUBDOMAIN_RE.match(name))


# Label keys (and many values) repeat across the cluster's resources: Felix checks every
# resource's labels at start-up; the cache bounds the work by the distinct texts.
@functools.lru_cache(maxsize=4096)
def check_qualified_name(key: str) -> str | None:
    """Kubernetes label/annotation key rule; returns the reason it is invalid, or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not prefix:
        return f"label key {key!r}: prefix must not be empty"
    if prefix and not is_subdomain(prefix):
        return f"label key {key!r}: prefix must be a DNS subdomain"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return (
            f"label key {key!r} is not valid: a name of at most 63 characters, alphanumerics,"
            " '-', '_' or '.', starting and ending with an alphanumeric"
        )
    return None


@functools.lru_cache(maxsize=4096)
def check_label_value(value: str) -> str | None:
    if value and (len(value) > 63 or not _QUALIFIED_NAME.match(value)):
        return (
            f"label value {value!r} is not valid: at most 63 characters, alphanumerics,"
            " '-', '_' or '.', starting and ending with an alphanumeric"
        )
    return None


def workload_endpoint_name(node: str, orchestrator: str, workload: str, endpoint: str) -> str:
    """Calico's WorkloadEndpoint name: identifiers joined by '-', with '-' doubled inside."""
    # Spelled out: Felix derives the name of every endpoint in the cluster at start-up.
    return "-".join((node.replace("-", "--"), orchestrator.replace("-", "--"),
                     workload.replace("-", "--"), endpoint.replace("-", "--")))  # fmt: skip

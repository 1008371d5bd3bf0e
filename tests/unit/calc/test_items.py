"""normalise_cidr's fast path for single addresses agrees with ipaddress everywhere."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from calico.calc.items import normalise_cidr

ADDRESSES = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded.upper()),
    st.sampled_from(["::ffff:1.2.3.4", "fe80::1%eth0", "010.0.0.1", "1.2.3", "x", ""]),
)
SUFFIXES = st.sampled_from(["", "/32", "/128", "/032", "/24", "/64", "/0", "/33", "/x", "/"])


def reference(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError as exc:
        return f"error: {exc}"


@settings(max_examples=400, deadline=None)
@given(address=ADDRESSES, suffix=SUFFIXES)
def test_normalise_cidr_agrees_with_ip_network(address: str, suffix: str) -> None:
    try:
        ours = normalise_cidr(address + suffix)
    except ValueError as exc:
        ours = f"error: {exc}"
    assert ours == reference(address + suffix)

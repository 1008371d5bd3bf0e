"""The fast path for plain addresses agrees with ipaddress on every text it accepts.

`plain_cidr` (and through it `parse_network`, `is_single_address` and the calc graph's
`normalise_cidr`) judges plain IPv4/IPv6 texts without ipaddress; a text it accepts that
ipaddress refuses would let garbage through validation. Checked on hand-picked edge cases
and on a seeded corpus of random and mutated texts.
"""

from __future__ import annotations

import ipaddress
import random

import pytest

from calico.calc.items import normalise_cidr
from calico.model.fields import is_single_address, parse_network, plain_cidr

EDGES = [
    "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3.04", "1.2.3", "1.2.3.4.5",
    "1.2.3.4/0", "1.2.3.4/32", "1.2.3.4/33", "1.2.3.4/032", "1.2.3.4/", "1.2.3.4//32",
    "1.2.3.4/255.255.255.0", "1.2.3.4 ", " 1.2.3.4", "\uff11.2.3.4", "1.2.3.\u0664", "10.0.0.0/8",
    "::", ":::", "::1", "1::", ":1::", "1::2:", "1:::2", "1::2::3", "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7", "1:2:3:4:5:6:7::8",
    "1:2:3:4:5:6:7:8::", "::0:1:2:3:4:5:6", "12345::", "0001:0002::", "ABCD::ef01",
    "::ffff:1.2.3.4", "::1.2.3.4", "fe80::1%eth0", "2001:db8::/32", "2001:db8::1/128",
    "2001:db8::1/129", "2001:db8::1/0128", "2001:db8::1/12a", "::ffff:102:304", "0:0::",
    "1:0:0:2::", "1:0:0:2:0:0:0:3", "0:0:0:0:0:0:0:0", "1:0:0:0:0:0:0:0", ":", "",
    "/32", "1.2.3.4\n", "2001:db8:1::a/128", "198.18.0.1/32",
]  # fmt: skip


def _random_v6(rng: random.Random) -> str:
    words = [rng.choice([0, 0, 0, rng.randrange(1 << 16)]) for _ in range(8)]
    text = str(ipaddress.IPv6Address(b"".join(w.to_bytes(2, "big") for w in words)))
    style = rng.randrange(4)
    if style == 1:
        text = ipaddress.IPv6Address(text).exploded
    elif style == 2:
        text = text.upper()
    elif style == 3:
        text = ":".join(f"{w:x}" for w in words)
    return text


def _corpus() -> list[str]:
    rng = random.Random(20261207)
    alphabet = "0123456789abcdefABCDEF:./% x"
    out = list(EDGES)
    for _ in range(4000):
        if rng.random() < 0.5:
            text = ".".join(str(rng.choice([0, 1, 255, 256, rng.randrange(300)])) for _ in range(4))
        else:
            text = _random_v6(rng)
        if rng.random() < 0.5:
            text += f"/{rng.choice([0, 8, 32, 33, 64, 127, 128, 129, rng.randrange(140)])}"
        for _ in range(rng.choice([0, 0, 1, 2])):  # a mutation: insert, delete or replace
            at = rng.randrange(len(text) + 1)
            cut = rng.choice([0, 1])
            text = text[:at] + rng.choice(["", rng.choice(alphabet)]) + text[at + cut :]
        out.append(text)
    return out


CORPUS = _corpus()


def _reference(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def test_the_corpus_has_both_outcomes() -> None:
    accepted = sum(plain_cidr(t) is not None for t in CORPUS)
    refused = sum(_reference(t) is None for t in CORPUS)
    assert accepted > 1000 and refused > 500


def test_plain_cidr_accepts_only_what_ipaddress_accepts() -> None:
    wrong = []
    for text in CORPUS:
        plain = plain_cidr(text)
        if plain is None:
            continue
        try:
            reference = ipaddress.ip_interface(text)
        except ValueError:
            wrong.append((text, "refused by ipaddress"))
            continue
        ip, prefix = reference.ip, reference.network.prefixlen
        if plain != (ip.version, int(ip), prefix):
            wrong.append((text, f"{plain} != {reference}"))
    assert wrong == []


def test_parse_and_normalise_match_ipaddress() -> None:
    wrong = []
    for text in CORPUS:
        reference = _reference(text)
        if reference is None:
            with pytest.raises(ValueError, match="is not a valid IP address or CIDR"):
                parse_network(text)
            continue
        net = parse_network(text)
        if (type(net), net) != (type(reference), reference):
            wrong.append((text, f"parse_network: {net!r}"))
        if normalise_cidr(text) != str(reference):
            wrong.append((text, f"normalise_cidr: {normalise_cidr(text)}"))
        if is_single_address(text) != (reference.prefixlen == reference.max_prefixlen):
            wrong.append((text, f"is_single_address: {is_single_address(text)}"))
    assert wrong == []

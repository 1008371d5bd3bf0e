"""Felix's configuration: the environment, the config file and FelixConfiguration specs give a
FelixConfig or a ConfigError naming the source and parameter; a bad datastore value is logged
and ignored (never fatal, never another exception)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from _fuzz import clean, fuzz, json_values, mutated
from hypothesis import given
from hypothesis import strategies as st

from calico.felix.config import PARAMS, ConfigError, build_config, file_layer
from calico.model import ResourceError, parse_resource
from calico.model.felixconfig import FelixConfiguration
from calico.model.support import FELIX, FELIX_LOCAL

NAMES = sorted({p.name for p in PARAMS} | set(FELIX) | set(FELIX_LOCAL))
VALUES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "true",
            "false",
            "none",
            "0",
            "-1",
            "65536",
            "1e9",
            "10s",
            "1h2m",
            "tcp:22",
            "udp:198.18.0.0/16:68",
            "tcp:22,",
            "198.18.0.1",
            "2001:db8::1",
            "Drop",
            "1000:999",
            "cali",
            ",",
            "%",
            "%(x)s",
            "x" * 10_000,
        ]
    ),
)
CONFIG = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "FelixConfiguration",
    "metadata": {"name": "default"},
    "spec": {
        "logSeverityScreen": "Info",
        "reportingInterval": "30s",
        "defaultEndpointToHostAction": "Drop",
        "failsafeInboundHostPorts": [{"protocol": "TCP", "port": 22}],
        "interfacePrefix": "cali",
        "natPortRange": "32768:65535",
        "healthPort": 9099,
        "ipv6Support": True,
        "routeRefreshInterval": "90s",
    },
}


@fuzz
@given(st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=4))
def test_environment(params: dict[str, str]) -> None:
    env = {"NODENAME": "h", **{f"FELIX_{k.upper()}": v for k, v in params.items()}}
    clean(lambda: build_config(env), ConfigError)


@fuzz
@given(
    st.one_of(
        st.binary(),
        st.text().map(str.encode),
        st.lists(st.tuples(st.sampled_from([*NAMES, "[x]", "%", " "]), VALUES), max_size=4).map(
            lambda items: ("[global]\n" + "".join(f"{k} = {v}\n" for k, v in items)).encode()
        ),
    )
)
def test_config_file(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "felix.cfg"
        path.write_bytes(content)
        clean(lambda: build_config({"NODENAME": "h"}, file_layer(str(path))), ConfigError)


@fuzz
@given(st.one_of(mutated(CONFIG), json_values().map(lambda v: {**CONFIG, "spec": v})))
def test_datastore_specs(doc: Any) -> None:
    try:
        resource = parse_resource(doc)
    except ResourceError:
        return  # refused before Felix sees it
    assert isinstance(resource, FelixConfiguration)
    spec = resource.spec_values()
    # Values from the datastore are never fatal: a bad one is logged and left at its default.
    build_config({"NODENAME": "h"}, None, spec, spec)

"""FelixConfiguration: Felix's parameters as a v3 resource (`default` or `node.<name>`).

The schema is generated from the field table in `felix_fields` (Calico's 190-odd fields), so
an operator's existing FelixConfiguration manifest validates field by field: unknown names
are refused, enums and patterns are checked, durations must parse. Fields removed from
recent Calico releases are still accepted so older manifests keep applying.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, cast

from pydantic import Field, PlainValidator, create_model

from calico.model.base import Model, Resource
from calico.model.felix_fields import FELIX_FIELDS, REMOVED_FELIX_FIELDS, FelixField
from calico.model.fields import duration_seconds, parse_port, parse_protocol
from calico.model.network import _default_or_node

Check = Callable[[Any], Any]


def _fail(value: Any, why: str) -> ValueError:
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    return ValueError(f"{shown} {why}")


def _check_str(spec: FelixField, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(value, "is not a string")
    if spec.pattern.startswith("(?i)"):
        if not re.fullmatch(spec.pattern, value):
            raise _fail(value, f"is not one of {', '.join(spec.choices)}")
    elif spec.choices and value not in spec.choices:
        raise _fail(value, f"is not one of {', '.join(spec.choices)}")
    elif spec.pattern and not re.fullmatch(spec.pattern, value):
        raise _fail(value, f"does not match the pattern {spec.pattern}")
    if spec.item_kind == "cidr":
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise _fail(value, "is not a valid CIDR") from None
    return value


def _check_int(spec: FelixField, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(value, "is not an integer")
    if spec.minimum is not None and value < spec.minimum:
        raise _fail(value, f"is less than the minimum {spec.minimum}")
    if spec.maximum is not None and value > spec.maximum:
        raise _fail(value, f"is greater than the maximum {spec.maximum}")
    return value


def _check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(value, "is not a boolean (true or false)")
    return value


def _check_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(value, "is not a number")
    return value


def _check_duration(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(value, 'is not a valid duration (e.g. "90s", "1m30s", "500ms")')
    try:
        duration_seconds(value)
    except ValueError:
        raise _fail(value, 'is not a valid duration (e.g. "90s", "1m30s", "500ms")') from None
    return value


def _check_list(spec: FelixField, value: Any, item: Check) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(value, "is not a list")
    return [item(v) for v in value]


def _check_object(spec: FelixField, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(value, "is not a mapping")
    unknown = [k for k in value if spec.keys and k not in spec.keys]
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (expected {', '.join(spec.keys)})")
    for key, item in value.items():
        if spec.pattern and isinstance(item, str) and not re.fullmatch(spec.pattern, item):
            raise _fail(item, f"({key}) does not match the pattern {spec.pattern}")
    return value


def _check_proto_port(spec: FelixField, value: Any) -> dict[str, Any]:
    entry = _check_object(spec, value)
    if "port" not in entry:
        raise ValueError(f"{entry} needs a port")
    entry = dict(entry)
    entry["port"] = _check_int(FelixField("int", minimum=0, maximum=65535), entry["port"])
    entry["protocol"] = parse_protocol(entry.get("protocol", "TCP"))
    if "net" in entry:
        _check_str(FelixField("str", item_kind="cidr"), entry["net"])
    return entry


def _check_int_or_str(spec: FelixField, value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return _check_int(spec, value)
    return _check_str(spec, value)


def _checker(spec: FelixField) -> Check:
    kind = spec.kind
    simple: dict[str, Check] = {
        "bool": _check_bool,
        "int": lambda v: _check_int(spec, v),
        "float": _check_float,
        "str": lambda v: _check_str(spec, v),
        "duration": _check_duration,
        "str_list": lambda v: _check_list(spec, v, lambda i: _check_str(spec, i)),
        "int_list": lambda v: _check_list(spec, v, lambda i: _check_int(spec, i)),
        "port_list": lambda v: _check_list(spec, v, parse_port),
        "proto_port_list": lambda v: _check_list(spec, v, lambda i: _check_proto_port(spec, i)),
        "str_map": lambda v: _check_object(spec, v),
        "object": lambda v: _check_object(spec, v),
        "object_list": lambda v: _check_list(spec, v, lambda i: _check_object(spec, i)),
        "int_or_str": lambda v: _check_int_or_str(spec, v),
    }
    return simple[kind]


def _build_spec_model() -> type[Model]:
    fields: dict[str, Any] = {}
    for name, spec in {**REMOVED_FELIX_FIELDS, **FELIX_FIELDS}.items():
        fields[name] = (Annotated[Any, PlainValidator(_checker(spec))] | None, None)
    return cast(type[Model], create_model("FelixConfigurationSpec", __base__=Model, **fields))


FelixConfigurationSpec = _build_spec_model()


class FelixConfiguration(Resource):
    KIND: ClassVar[str] = "FelixConfiguration"
    PLURAL: ClassVar[str] = "felixconfigurations"
    spec: FelixConfigurationSpec = Field(default_factory=FelixConfigurationSpec)  # type: ignore[valid-type]

    def check_name(self) -> str | None:
        return _default_or_node(self)

    def spec_values(self) -> dict[str, Any]:
        """The fields set in spec, by their JSON names."""
        spec = cast(Model, self.spec)
        return spec.model_dump(exclude_none=True)

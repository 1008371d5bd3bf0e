"""etcd keys of v3 resources, both directions (pure).

`/calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>`
"""

from __future__ import annotations

from dataclasses import dataclass

from calico.model.base import Resource

RESOURCES_PREFIX = "/calico/resources/v3/projectcalico.org/"


@dataclass(frozen=True, slots=True)
class ResourceKey:
    kind: type[Resource]
    name: str
    namespace: str | None = None

    @property
    def path(self) -> str:
        if self.kind.NAMESPACED:
            return f"{RESOURCES_PREFIX}{self.kind.PLURAL}/{self.namespace or 'default'}/{self.name}"
        return f"{RESOURCES_PREFIX}{self.kind.PLURAL}/{self.name}"

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.kind.NAMESPACED and self.namespace else ""
        return f'{self.kind.KIND} "{ns}{self.name}"'


def key_of(resource: Resource) -> ResourceKey:
    return ResourceKey(type(resource), resource.name, resource.namespace)


def kind_prefix(kind: type[Resource], namespace: str | None = None) -> str:
    """Prefix listing every resource of a kind (in one namespace if given)."""
    base = f"{RESOURCES_PREFIX}{kind.PLURAL}/"
    return f"{base}{namespace}/" if kind.NAMESPACED and namespace else base


def parse_key(path: str, kind: type[Resource] | None = None) -> ResourceKey | None:
    """The ResourceKey a path names, or None if it is not a well-formed resource key (of
    `kind`, when given: then the other kinds' classes are not loaded)."""
    if not path.startswith(RESOURCES_PREFIX):
        return None
    parts = path[len(RESOURCES_PREFIX) :].split("/")
    if kind is None:
        from calico.model.registry import by_plural

        kind = by_plural(parts[0])
    elif parts[0] != kind.PLURAL:
        return None
    if kind is None:
        return None
    if kind.NAMESPACED and len(parts) == 3 and parts[1] and parts[2]:
        return ResourceKey(kind, parts[2], parts[1])
    if not kind.NAMESPACED and len(parts) == 2 and parts[1]:
        return ResourceKey(kind, parts[1])
    return None

"""ObjectMeta and the base class every projectcalico.org/v3 resource shares.

Resources are pydantic models in strict mode with unknown fields forbidden, so a typo or
a wrong type in an operator's manifest is an error naming the field, never silently ignored.
Optional fields default to None and are omitted on output, so what comes out is what went
in plus Calico's defaults, and output parses back to an equal resource.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from calico.model.errors import FieldError
from calico.model.fields import Labels, check_qualified_name, is_subdomain
from calico.model.support import first_refusal

API_VERSION = "projectcalico.org/v3"
DEFAULT_NAMESPACE = "default"
ANNOTATIONS_MAX_BYTES = 256 * 1024


class Model(BaseModel):
    """Strict, closed schema shared by every resource part. Validators are built on a class's
    first use (defer_build): a process pays only for the kinds it handles (a CNI ADD uses 5 of
    the ~55 classes; building them all took ~40 ms of its start-up)."""

    model_config = ConfigDict(
        strict=True, extra="forbid", validate_assignment=False, defer_build=True
    )


class ObjectMeta(Model):
    name: str | None = None
    generateName: str | None = None
    namespace: str | None = None
    labels: Labels | None = None
    annotations: dict[str, str] | None = None
    resourceVersion: str | None = None
    uid: str | None = None
    creationTimestamp: str | None = None
    generation: int | None = None
    ownerReferences: list[dict[str, Any]] | None = None
    finalizers: list[str] | None = None
    deletionTimestamp: str | None = None
    deletionGracePeriodSeconds: int | None = None
    managedFields: list[dict[str, Any]] | None = None
    selfLink: str | None = None

    @field_validator("annotations")
    @classmethod
    def _check_annotations(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        for key in value:
            problem = check_qualified_name(key.lower())
            if problem:
                raise ValueError(problem.replace("label key", "annotation key"))
        size = sum(len(k) + len(v) for k, v in value.items())
        if size > ANNOTATIONS_MAX_BYTES:
            excess = size - ANNOTATIONS_MAX_BYTES
            raise ValueError(f"total size of annotations is too large by {excess} bytes")
        return value


class Resource(Model):
    """A v3 resource: apiVersion, kind, metadata, spec.

    Subclasses set `KIND`, `PLURAL`, `NAMESPACED` and declare `spec`. The hooks
    `check_name`, `check_spec` and `apply_defaults` carry Calico's per-kind name rules,
    cross-field checks and defaulting; they run on every validation, so a resource object
    that exists is always valid and defaulted. Before them, a value anywhere in the resource
    that asks for behaviour calico-py does not have is refused (`calico.model.support`).
    """

    KIND: ClassVar[str]
    PLURAL: ClassVar[str]
    NAMESPACED: ClassVar[bool] = False

    apiVersion: str = API_VERSION
    kind: str = ""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @field_validator("apiVersion")
    @classmethod
    def _check_api_version(cls, value: str) -> str:
        if value != API_VERSION:
            raise ValueError(f"{value!r} is not supported: use apiVersion {API_VERSION}")
        return value

    @model_validator(mode="after")
    def _finish(self) -> Self:
        if not self.kind:
            self.kind = self.KIND
        elif self.kind != self.KIND:
            raise FieldError("kind", f"{self.kind!r} does not match resource type {self.KIND}")
        if self.metadata.name is None:
            self.metadata.name = self.default_name()
        if not self.metadata.name:
            raise FieldError("metadata.name", "required field is missing")
        problem = self.check_name()
        if problem:
            raise FieldError("metadata.name", problem)
        if self.NAMESPACED and not self.metadata.namespace:
            self.metadata.namespace = DEFAULT_NAMESPACE
        elif not self.NAMESPACED and self.metadata.namespace:
            raise FieldError("metadata.namespace", f"{self.KIND} is not namespaced")
        refusal = first_refusal(self)
        if refusal is not None:
            raise FieldError(*refusal)
        self.check_spec()
        self.apply_defaults()
        return self

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    def display_name(self) -> str:
        """How error messages name this resource: Kind "ns/name" or Kind "name"."""
        ns = f"{self.namespace}/" if self.NAMESPACED and self.namespace else ""
        return f'{self.KIND} "{ns}{self.name}"'

    def check_name(self) -> str | None:
        """Return why metadata.name is invalid for this kind, or None if it is fine."""
        if not is_subdomain(self.name):
            return (
                f"{self.name!r} is not a valid name: lower case alphanumerics, '-' or '.', "
                "starting and ending with an alphanumeric, at most 253 characters"
            )
        return None

    def default_name(self) -> str | None:
        """A name derived from the spec when metadata.name is absent (WorkloadEndpoint)."""
        return None

    def check_spec(self) -> None:
        """Cross-field checks; raise FieldError naming the sub-field at fault."""

    def apply_defaults(self) -> None:
        """Fill Calico's defaults in place (called once, after validation)."""

    def to_dict(self) -> dict[str, Any]:
        """The resource as JSON-ready data, omitting absent fields, keys in Calico's order."""
        return self.model_dump(mode="json", exclude_none=True)

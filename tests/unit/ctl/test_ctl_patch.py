"""calicoctl patch: merge semantics, validation before any write, CAS on the revision read."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

from calico.ctl.commands.patch import merge_patch, patch
from calico.ctl.context import CtlContext
from calico.datastore.client import ResourceClient, encode
from calico.datastore.memory import MemoryBackend
from calico.model.keys import ResourceKey
from calico.model.network import IPPool, Node
from calico.model.policy import NetworkPolicy

Run = Callable[..., Result]


@pytest.fixture
def pool(resources: ResourceClient) -> IPPool:
    return resources.create(
        IPPool.model_validate(
            {
                "metadata": {"name": "pods", "labels": {"team": "net"}},
                "spec": {"cidr": "10.1.0.0/16", "natOutgoing": True, "nodeSelector": "all()"},
            }
        )
    )


def stored_revision(backend: MemoryBackend, name: str) -> int:
    kv = backend.get(ResourceKey(IPPool, name).path)
    assert kv is not None
    return kv.mod_revision


@pytest.mark.parametrize(
    ("target", "patch_doc", "expected"),
    [  # RFC 7386's own examples, and a nested merge
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({"a": {"b": 1, "c": 2}}, {"a": {"c": None, "d": 3}}, {"a": {"b": 1, "d": 3}}),
    ],
)
def test_merge_patch_follows_rfc_7386(
    target: dict[str, object], patch_doc: dict[str, object], expected: dict[str, object]
) -> None:
    before = json.dumps(target)
    assert merge_patch(target, patch_doc) == expected
    assert json.dumps(target) == before  # the input is not modified


def test_patch_changes_only_the_named_fields(
    run: Run, resources: ResourceClient, pool: IPPool
) -> None:
    out = run(
        patch, "ippool", "pods", "-p", '{"spec": {"natOutgoing": false, "nodeSelector": null}}'
    )
    assert out.output == "Successfully patched 1 'IPPool' resource\n"
    now = resources.get(IPPool, "pods")
    assert now.spec.natOutgoing is False
    assert now.spec.nodeSelector == "all()"  # removed, so the default comes back
    assert now.spec.cidr == "10.1.0.0/16" and now.metadata.labels == {"team": "net"}
    assert now.metadata.uid == pool.metadata.uid
    assert int(now.metadata.resourceVersion or 0) > int(pool.metadata.resourceVersion or 0)


@pytest.mark.parametrize(
    ("patch_text", "message"),
    [
        ('{"spec": {"cidr": "10.1.0.0/33"}}', "spec.cidr"),
        ('{"spec": {"ipipMode": "Sometimes"}}', "spec.ipipMode"),
        ('{"spec": {"bogus": 1}}', "spec.bogus"),
        ('{"metadata": {"name": "other"}}', "metadata.name: cannot be changed by a patch"),
        ('{"kind": "Tier"}', "kind: cannot be changed by a patch"),
        ('{"spec": ', "patch is not valid JSON"),
        ('["spec"]', "patch must be a JSON object"),
        ('{"metadata": {"resourceVersion": "1"}}', "resourceVersion 1 is out of date"),
    ],
)
def test_a_bad_patch_or_result_names_the_problem_and_writes_nothing(
    run: Run, backend: MemoryBackend, pool: IPPool, patch_text: str, message: str
) -> None:
    before = stored_revision(backend, "pods")
    result = run(patch, "ippool", "pods", "-p", patch_text, ok=False)
    assert message in result.output
    assert stored_revision(backend, "pods") == before


def test_patch_refuses_json_patch_and_missing_resources(run: Run, pool: IPPool) -> None:
    json_patch = '[{"op": "replace", "path": "/spec/natOutgoing", "value": false}]'
    out = run(patch, "ippool", "pods", "--type", "json", "-p", json_patch, ok=False).output
    assert "--type json (RFC 6902 JSON Patch) is not implemented" in out
    out = run(patch, "node", "nowhere", "-p", '{"spec": {}}', ok=False).output
    assert out.startswith("Failed to patch 'Node' resource:") and "nowhere" in out


def test_patch_finds_namespaced_resources_in_their_namespace(
    run: Run, resources: ResourceClient
) -> None:
    resources.create(
        NetworkPolicy.model_validate(
            {"metadata": {"name": "web", "namespace": "shop"}, "spec": {"selector": "all()"}}
        )
    )
    run(patch, "networkpolicy", "web", "-p", '{"spec": {"order": 5}}', ok=False)  # default ns
    run(patch, "networkpolicy", "web", "-n", "shop", "-p", '{"spec": {"order": 5}}')
    assert resources.get(NetworkPolicy, "web", "shop").spec.order == 5


class RacingBackend(MemoryBackend):
    """Lets another writer change a key between the patch's read and its write, once."""

    def __init__(self) -> None:
        super().__init__()
        self.race: tuple[str, bytes] | None = None

    def update(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> int:
        if self.race is not None and key == self.race[0]:
            _, other = self.race
            self.race = None
            super().update(key, other, mod_revision)
        return super().update(key, value, mod_revision, lease)


def test_a_concurrent_write_is_kept_and_the_patch_applied_on_top() -> None:
    backend = RacingBackend()
    resources = ResourceClient(backend)
    resources.create(Node.model_validate({"metadata": {"name": "n1"}, "spec": {}}))
    raced = resources.get(Node, "n1").model_copy(deep=True)
    raced.metadata.labels = {"rack": "r7"}
    key = ResourceKey(Node, "n1").path
    backend.race = (key, encode(raced))
    ctx = CtlContext(None, environ={})
    ctx._client = resources
    patch_doc = '{"spec": {"bgp": {"ipv4Address": "198.18.0.1/24"}}}'
    result = CliRunner().invoke(patch, ["node", "n1", "-p", patch_doc], obj=ctx)
    assert result.exit_code == 0, result.output
    node = resources.get(Node, "n1")
    assert node.metadata.labels == {"rack": "r7"}  # the other writer's change survived
    assert node.spec.bgp is not None and node.spec.bgp.ipv4Address == "198.18.0.1/24"

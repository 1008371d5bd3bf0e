"""The BGP agent (confd's role): datastore -> bird.cfg -> `birdc configure`.

    syncers (Node, BGPPeer, BGPConfiguration, IPPool; this host's IPAM affinities)
      -> cache -> [all in sync, burst debounced] -> build_view -> render
      -> changed? -> `bird -p -c <tmp>` -> atomic replace of run_dir/bird.cfg
      -> `birdc -s run_dir/bird.ctl configure` (retried until BIRD answers; never a restart)

BIRD is started by someone else (the node runner) as
`bird -f -c run_dir/bird.cfg -s run_dir/bird.ctl -P run_dir/bird.pid`; `render_now()` gives it
a valid file before it starts. Nothing is rendered from a partial view: the worker waits
until every syncer is in sync. A config BIRD rejects is logged and never installed; a reload
that fails because BIRD is not (yet) running is retried every `retry_interval` seconds.

BGP passwords (`bgp.secrets`): each render reads the secret files its peers name from
`secrets_dir`; a peer whose secret is unusable is left out and logged (naming the peer and
the file, never a value). While any peer names a secret, the files are read again every
`secret_interval` seconds, so a secret that appears or changes takes effect without a
datastore change. bird.cfg holds the passwords: it is written mode 0600 (mkstemp's mode,
kept by the rename) and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from calico import programs
from calico.bgp.render import render
from calico.bgp.secrets import DEFAULT_SECRETS_DIR, SecretRef, read_secrets
from calico.bgp.view import BgpInputs, BgpView, affine_blocks, build_view
from calico.datastore.api import Backend, SyncStatus, Update
from calico.datastore.client import ResourceClient
from calico.datastore.resource_syncer import ResourceUpdate, resource_syncer
from calico.datastore.syncer import Syncer
from calico.ipam.keys import affinities_prefix
from calico.model.base import Resource
from calico.model.network import BGPConfiguration, BGPPeer, IPPool, Node

_log = logging.getLogger(__name__)
KINDS: tuple[type[Resource], ...] = (Node, BGPPeer, BGPConfiguration, IPPool)
CONFIG_FILE = "bird.cfg"
CONTROL_SOCKET = "bird.ctl"


class _State:
    """What the syncers have delivered; guarded by `lock`."""

    def __init__(self, sources: int) -> None:
        self.lock = threading.Lock()
        self.resources: dict[type[Resource], dict[str, Resource]] = {k: {} for k in KINDS}
        self.affinities: dict[str, bytes] = {}
        self.in_sync = [False] * sources

    def inputs(self, node: str) -> BgpInputs | None:
        """A consistent snapshot, or None until every source is in sync."""
        with self.lock:
            if not all(self.in_sync):
                return None
            return make_inputs(
                [r for table in self.resources.values() for r in table.values()],
                affine_blocks(self.affinities.items(), node),
            )


def make_inputs(resources: Sequence[Resource], blocks: Sequence[str]) -> BgpInputs:
    ordered = sorted(resources, key=lambda r: (r.KIND, r.name))
    return BgpInputs(
        nodes=[r for r in ordered if isinstance(r, Node)],
        peers=[r for r in ordered if isinstance(r, BGPPeer)],
        configs={r.name: r for r in ordered if isinstance(r, BGPConfiguration)},
        pools=[r for r in ordered if isinstance(r, IPPool)],
        blocks=tuple(blocks),
    )


class _ResourceSource:
    """ResourceCallbacks for one kind's syncer."""

    def __init__(self, agent: BGPAgent, index: int) -> None:
        self._agent, self._index = agent, index

    def on_status(self, status: SyncStatus) -> None:
        self._agent._on_status(self._index, status)

    def on_resource_updates(self, updates: Sequence[ResourceUpdate]) -> None:
        state = self._agent._state
        with state.lock:
            for u in updates:
                table = state.resources[u.key.kind]
                if u.resource is None:
                    table.pop(u.key.name, None)
                else:
                    table[u.key.name] = u.resource
        self._agent._wake.set()


class _AffinitySource:
    """SyncerCallbacks for the raw syncer of this host's block affinities."""

    def __init__(self, agent: BGPAgent, index: int) -> None:
        self._agent, self._index = agent, index

    def on_status(self, status: SyncStatus) -> None:
        self._agent._on_status(self._index, status)

    def on_updates(self, updates: Sequence[Update]) -> None:
        state = self._agent._state
        with state.lock:
            for u in updates:
                if u.value is None:
                    state.affinities.pop(u.key, None)
                else:
                    state.affinities[u.key] = u.value
        self._agent._wake.set()


class BGPAgent:
    """Keeps `run_dir/bird.cfg` equal to the datastore's intent for `node_name`."""

    def __init__(
        self,
        backend: Backend,
        node_name: str,
        run_dir: Path,
        *,
        bird: str = "bird",
        birdc: str = "birdc",
        runner: programs.CommandRunner | None = None,
        router_id: str | None = None,
        debounce: float = 0.2,
        retry_interval: float = 2.0,
        secrets_dir: Path = DEFAULT_SECRETS_DIR,
        secret_interval: float = 10.0,
    ) -> None:
        """router_id: CALICO_ROUTER_ID (an address, or "hash"); default the node's IPv4.
        secrets_dir: CALICO_SECRETS_DIR, where BGP password files live."""
        self.backend = backend
        self.node_name = node_name
        self.run_dir = Path(run_dir)
        self.config_path = self.run_dir / CONFIG_FILE
        self.control_socket = self.run_dir / CONTROL_SOCKET
        self._bird, self._birdc = bird, birdc
        self._runner: programs.CommandRunner = runner or programs.Runner(timeout=30.0)
        self._router_id = router_id
        self._debounce, self._retry_interval = debounce, retry_interval
        self.secrets_dir = Path(secrets_dir)
        self._secret_interval = secret_interval
        self._uses_secrets = False  # the last render needed a password: re-read the files
        self._withheld_logged: frozenset[str] = frozenset()
        self._state = _State(len(KINDS) + 1)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._write_lock = threading.Lock()
        self._written: str | None = None  # text of the file we last wrote or found
        self._rejected: str | None = None  # last text BIRD refused (not retried)
        self._reload_pending = False
        self._reload_failures = 0
        self._syncers: list[Syncer] = []
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None
        self.renders = 0  # passes that rendered an in-sync snapshot (and reloaded if needed)

    # ---- public API -------------------------------------------------------------------

    def render_now(self) -> bool:
        """Render from one datastore snapshot and write bird.cfg if it changed.

        Synchronous, no reload: for the node runner before it starts BIRD. Raises the
        datastore's error if the datastore cannot be read. Invalid entries are left for the
        watches `start` opens to report, so each is logged once.
        """
        client = ResourceClient(self.backend)
        resources = [r for kind in KINDS for r in client.list(kind, log_skipped=False).items]
        listing = self.backend.list(affinities_prefix(self.node_name))
        blocks = affine_blocks(((kv.key, kv.value) for kv in listing.items), self.node_name)
        return self._install(self._render(make_inputs(resources, blocks)))

    def start(self) -> None:
        """Start watching; bird.cfg is rewritten and BIRD reloaded on every change."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._syncers = [
            resource_syncer(
                self.backend, [kind], _ResourceSource(self, i), name=f"bgp-{kind.PLURAL}"
            )
            for i, kind in enumerate(KINDS)
        ]
        self._syncers.append(
            Syncer(
                self.backend,
                [affinities_prefix(self.node_name)],
                _AffinitySource(self, len(KINDS)),
                name="bgp-affinities",
            )
        )
        self._thread = threading.Thread(target=self._run, name="bgp-agent", daemon=True)
        self._thread.start()
        for syncer in self._syncers:
            syncer.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        for syncer in self._syncers:
            syncer.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        """False once the worker or a syncer has died (a supervisor should restart).

        `failure` keeps the last unexpected error of the worker (which carries on).
        """
        threads_ok = self._thread is not None and self._thread.is_alive()
        return threads_ok and all(s.is_alive() for s in self._syncers)

    # ---- worker -------------------------------------------------------------------------

    def _on_status(self, index: int, status: SyncStatus) -> None:
        with self._state.lock:
            self._state.in_sync[index] = status is SyncStatus.IN_SYNC
        if status is SyncStatus.IN_SYNC:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            timeout = self._retry_interval if self._reload_pending else None
            if self._uses_secrets:
                timeout = min(timeout or self._secret_interval, self._secret_interval)
            woken = self._wake.wait(timeout)
            try:
                rendered = False
                if woken:
                    self._settle()
                if woken or self._uses_secrets:
                    inputs = self._state.inputs(self.node_name)
                    rendered = inputs is not None
                    if inputs is not None and self._install(self._render(inputs)):
                        self._reload_pending = True
                if self._reload_pending and not self._stopping.is_set():
                    self._reload()
                self.renders += rendered
            except Exception as exc:  # a bug must not silently end BGP updates: log, go on
                _log.exception("BGP agent: rendering or reloading failed")
                self.failure = exc
                self._stopping.wait(self._retry_interval)

    def _settle(self) -> None:
        """Debounce: wait until no update arrived for `debounce` seconds (at most 5x)."""
        deadline = time.monotonic() + 5 * self._debounce
        self._wake.clear()
        while self._wake.wait(self._debounce) and time.monotonic() < deadline:
            self._wake.clear()
        self._wake.clear()

    def _render(self, inputs: BgpInputs) -> str:
        view = self._view(inputs)
        refs = {p.password_ref for p in view.withheld if p.password_ref is not None}
        self._uses_secrets = bool(refs)
        if refs:
            passwords, unusable = read_secrets(refs, self.secrets_dir)
            view = self._view(replace(inputs, passwords=passwords))
            self._log_withheld(view, unusable)
        elif self._withheld_logged:
            self._withheld_logged = frozenset()
        return render(view)

    def _view(self, inputs: BgpInputs) -> BgpView:
        return build_view(inputs, self.node_name, router_id=self._router_id)

    def _log_withheld(self, view: BgpView, unusable: Mapping[SecretRef, str]) -> None:
        """One line per unusable secret naming its peers, when that set of lines changes."""
        lines = frozenset(
            f"BGP password secret {ref} unusable ({why}); not configuring "
            + ", ".join(p.name for p in view.withheld if p.password_ref == ref)
            for ref, why in unusable.items()
        )
        if lines != self._withheld_logged:
            for line in sorted(lines - self._withheld_logged):
                _log.error("%s", line)
            if self._withheld_logged and not lines:
                _log.info("BGP password secrets are all readable again")
            self._withheld_logged = lines

    def _install(self, text: str) -> bool:
        """Validate and atomically write `text` if it differs; True if the file changed."""
        with self._write_lock:
            if self._written is None and self.config_path.exists():
                self._written = self.config_path.read_text()
            if text == self._written or text == self._rejected:
                return False
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".bird.cfg.", dir=self.run_dir)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                if not self._valid(tmp, text):
                    return False
                os.replace(tmp, self.config_path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            self._written = text
            _log.info("wrote %s for node %s", self.config_path, self.node_name)
            return True

    def _command(self, args: list[str]) -> programs.CommandResult:
        """Run via the runner, never raising: callers read failure from the returncode. A
        command that cannot run (missing, timed out) or a runner that raises becomes rc -1."""
        try:
            return self._runner.run(args, check=False)
        except programs.CommandFailed as exc:
            return programs.CommandResult(exc.returncode, exc.stdout, exc.stderr)
        except Exception as exc:
            return programs.CommandResult(-1, "", f"{args[0]}: {exc}")

    def _valid(self, path: str, text: str) -> bool:
        result = self._command([self._bird, "-p", "-c", path])
        if result.returncode == 0:
            return True
        detail = (result.stderr or result.stdout).strip()
        if result.returncode < 0 or "not found" in detail or "No such file" in detail:
            _log.warning("cannot validate bird.cfg (%s); installing it unchecked", detail)
            return True
        _log.error("BIRD rejects the rendered config; keeping the old one: %s", detail)
        self._rejected = text
        return False

    def _reload(self) -> None:
        args = [self._birdc, "-s", str(self.control_socket), "configure"]
        result = self._command(args)
        out = f"{result.stdout}\n{result.stderr}".strip()
        if result.returncode == 0 and "Reconfigur" in out:
            self._reload_pending = False
            self._reload_failures = 0
            _log.info("BIRD reloaded %s", self.config_path)
            return
        self._reload_failures += 1
        if "Unable to connect" in out or result.returncode < 0:
            level = logging.WARNING if self._reload_failures == 1 else logging.DEBUG
            _log.log(
                level,
                "BIRD is not running (no answer on %s); will reload it when it is: %s",
                self.control_socket,
                out.splitlines()[-1] if out else "no output",
            )
            return
        self._reload_pending = False
        _log.error("BIRD refused to reload %s: %s", self.config_path, out)

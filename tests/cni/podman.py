"""podman as a real CNI runtime, confined to a scratch directory and a test host namespace.

Every piece of podman state lives under `root` (containers.conf, storage.conf, the CNI
network config dir, runroot/graphroot, tmp and event files) and podman runs inside the test
host's network namespace (`nsenter --net`, not `ip netns exec`, which remounts /sys and hides
the cgroup mounts runc needs), so the host side of each veth lands there and never in the root
namespace. Containers run from busybox-static root filesystems (`--rootfs`), so no image or
registry is involved. A podman command is always allowed to finish, even when the test is
interrupted meanwhile, so no `runc init` or cgroup is left half set up.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from calico import programs

BUSYBOX = "/bin/busybox"
_APPLETS = ("sh", "sleep", "ping", "ping6", "ip", "nc", "cat", "true")
_FINISH_GRACE = 120.0


class Podman:
    def __init__(self, root: Path, host_netns: str, plugin_dir: Path) -> None:
        self.root = root
        self.host_netns = host_netns
        self.net_dir = root / "net.d"
        self.net_dir.mkdir(parents=True)
        self.containers: list[str] = []
        self._write_configs(plugin_dir)

    def _write_configs(self, plugin_dir: Path) -> None:
        r = self.root
        (r / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'runtime = "runc"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{r}/events.log"\n'
            f'tmp_dir = "{r}/tmp"\n'
            f'static_dir = "{r}/storage/libpod"\n'
            f'volume_path = "{r}/storage/volumes"\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f'cni_plugin_dirs = ["{plugin_dir}", "/usr/lib/cni"]\n'
            f'network_config_dir = "{self.net_dir}"\n'
        )
        (r / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\nrunroot = "{r}/run"\ngraphroot = "{r}/storage"\n'
        )

    def add_network(self, conflist: dict[str, Any]) -> None:
        path = self.net_dir / f"{conflist['name']}.conflist"
        path.write_text(json.dumps(conflist, indent=2))

    def rootfs(self, name: str) -> Path:
        """A minimal root filesystem: busybox-static and the applets the tests use."""
        rootfs = self.root / "rootfs" / name
        for sub in ("bin", "etc", "proc", "sys", "dev", "tmp", "run"):
            (rootfs / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in _APPLETS:
            (rootfs / "bin" / applet).symlink_to("busybox")
        (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
        (rootfs / "etc" / "group").write_text("root:x:0:\n")
        return rootfs

    def run(self, name: str, network: str, *command: str) -> str:
        """`podman run -d`: returns the container ID (CNI_CONTAINERID of the plugin calls)."""
        options = ["-d", "--name", name, "--network", network, "--cap-add", "NET_RAW"]
        self.containers.append(name)  # before: a failed run can leave a created container
        out = self.podman("run", *options, "--rootfs", str(self.rootfs(name)), *command)
        return out.stdout.strip()

    def podman(self, *args: str, check: bool = True) -> programs.CompletedProcess[str]:
        argv = ["nsenter", f"--net=/run/netns/{self.host_netns}", "podman", *args]
        proc = _finish(argv, self._env())
        if check and proc.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
            )
        return proc

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.root),
            "CONTAINERS_CONF": str(self.root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.root / "storage.conf"),
            "TMPDIR": str(self.root / "tmp"),
        }

    def close(self) -> None:
        """Remove every container this instance started (each `rm` runs to completion), then
        the scratch directory, unless something is still mounted under it."""
        for name in reversed(self.containers):
            self.podman("rm", "-f", "-t", "0", name, check=False)
        self.containers.clear()
        mounts = Path("/proc/self/mountinfo").read_text().split("\n")
        busy = [m for m in mounts if f" {self.root}/" in m or f" {self.root} " in m]
        if busy:
            raise AssertionError(f"podman left mounts under {self.root}: {busy}")
        shutil.rmtree(self.root)


def _finish(argv: list[str], env: dict[str, str]) -> programs.CompletedProcess[str]:
    """Run to completion in its own session (a ^C to the test does not reach it); if the test
    is interrupted meanwhile, wait for podman to finish first, then let the interruption on."""
    Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    proc = programs.start(
        argv, env=env, stdout=programs.PIPE, stderr=programs.PIPE, text=True, new_session=True
    )
    interrupted: BaseException | None = None
    deadline = time.monotonic() + _FINISH_GRACE
    while True:
        try:
            stdout, stderr = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            break
        except programs.TimeoutExpired:
            os.killpg(proc.pid, 9)  # hung for two minutes: only then give up on it
        except BaseException as exc:
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted
    return programs.CompletedProcess(argv, proc.returncode, stdout, stderr)

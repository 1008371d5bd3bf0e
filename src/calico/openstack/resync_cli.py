"""`calico-neutron-resync`: ask the leading neutron-server's Calico driver for a resync now.

Reads the `[calico]` options from neutron's config files (no oslo or Neutron needed),
writes a resync request to etcd and prints the leader's report, e.g.
`resync: created 1 WorkloadEndpoint; deleted 2 subnet`. Exit status 0 when the resync
ran; 1, with one line on stderr, when the config is bad, etcd is unreachable, no
neutron-server answered in time, or the resync itself failed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from calico.datastore.api import DatastoreError
from calico.datastore.etcd import EtcdBackend
from calico.openstack.resync_request import request_resync
from calico.openstack.settings import read_config_files
from calico.version import add_version_option

PROG = "calico-neutron-resync"
DEFAULT_CONFIG_FILES = ("/etc/neutron/neutron.conf", "/etc/neutron/plugins/ml2/ml2_conf.ini")
DEFAULT_TIMEOUT = 300.0


@click.command(
    name=PROG,
    help="Make etcd match the Neutron database now (run by the leading neutron-server's"
    " Calico driver) and print what changed.",
)
@click.option(
    "--config-file",
    "config_files",
    multiple=True,
    metavar="PATH",
    help="neutron config file with a [calico] section; repeatable, later files win"
    f" (default: those of {', '.join(DEFAULT_CONFIG_FILES)} that exist)",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="seconds to wait for the resync to finish",
)
def resync_command(config_files: tuple[str, ...], timeout: float) -> int:
    paths = list(config_files) or [p for p in DEFAULT_CONFIG_FILES if os.path.exists(p)]
    try:
        options = read_config_files(paths)
        config = options.etcd_config(os.environ)
    except ValueError as exc:
        return _fail(str(exc))
    backend = EtcdBackend(config)
    try:
        result = request_resync(backend, options.region_string, timeout)
    except TimeoutError as exc:
        return _fail(str(exc))
    except DatastoreError as exc:
        return _fail(f"cannot reach etcd at {', '.join(config.endpoints)}: {exc}")
    except ValueError as exc:
        return _fail(f"unreadable answer from the neutron-server: {exc}")
    finally:
        backend.close()
    if "error" in result:
        return _fail(f"the resync failed in the neutron-server: {result['error']}")
    click.echo(result.get("summary", "resync: done"))
    return 0


add_version_option(resync_command, PROG)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0 when the resync ran, 1 on any failure (one line on stderr), 2 on usage."""
    try:
        code = resync_command.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return int(code)


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

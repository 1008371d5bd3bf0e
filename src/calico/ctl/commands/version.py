"""calicoctl version: client version, and the cluster's when the datastore answers."""

from __future__ import annotations

import click

from calico import __version__
from calico.ctl.context import CtlContext, CtlError
from calico.datastore.api import DatastoreError
from calico.datastore.client import ResourceNotFound
from calico.model.network import ClusterInformation


@click.command()
@click.option("--client", "client_only", is_flag=True, help="Show only the client version.")
@click.pass_obj
def version(ctx: CtlContext, client_only: bool) -> None:
    """Show client and cluster versions."""
    click.echo(f"Client Version:    v{__version__} (calico-py)")
    if client_only:
        return
    try:
        info = ctx.client().get(ClusterInformation, "default")
    except ResourceNotFound:
        info = ClusterInformation()
    except (DatastoreError, CtlError) as exc:
        message = exc.message if isinstance(exc, CtlError) else str(exc)
        raise CtlError(f"Unable to retrieve Cluster Version or Type: {message}") from None
    click.echo(f"Cluster Version:   {info.spec.calicoVersion or 'unknown'}")
    click.echo(f"Cluster Type:      {info.spec.clusterType or 'unknown'}")

"""Read what the node has now: link, device, table, node-list files."""

from __future__ import annotations

import logging
from pathlib import Path

from netsetup import link, nodelist
from netsetup.errors import NodeListError
from netsetup.firewall import Nft
from netsetup.plan import Observed
from netsetup.settings import Settings
from netsetup.spec import Cluster, Node
from netsetup.wireguard import Backend

log = logging.getLogger(__name__)


def observe(
    cluster: Cluster, node: Node, backend: Backend, nft: Nft, settings: Settings
) -> Observed:
    """Return the node's current state, as far as netsetup manages it."""
    interface = cluster.interface
    link_state = link.read(interface)
    device = backend.read(interface) if link_state is not None else None
    route_mtu = None
    if cluster.mtu is None:
        route_mtu = link.route_mtu([str(p.address) for p in cluster.peers_of(node)])
    files = {path: read_nodelist(path) for path in cluster.nodelist}
    originals = {}
    for path, data in files.items():
        original = None if data is None else nodelist.saved_original(
            path, settings.nodelist_state, data)
        if original is not None:
            originals[path] = original
    return Observed(
        link=link_state,
        device=device,
        table=nft.read(),
        recorded_listing=_read_text(settings.firewall_state),
        route_mtu=route_mtu,
        files=files,
        authorized_keys=None if node.is_master
        else _read_bytes(settings.authorized_keys),
        originals=originals,
    )


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def read_nodelist(path: Path) -> bytes | None:
    """Return a node-list file's bytes, None if absent; refuse a link.

    Files are replaced by rename, which would turn a symbolic link into a
    plain file: better to say so before changing anything.
    """
    if path.is_symlink():
        raise NodeListError(f"{path}: is a symbolic link; name its target "
                            "in the cluster file's nodelist")
    return _read_bytes(path)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None

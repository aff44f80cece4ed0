"""The lockout guard: refuse an apply that would shut out the caller's SSH.

Rules only ever drop new connections, so the session running `apply`
survives; but the administrator's next login would not. Pure logic: the
environment comes in as a mapping.
"""

from __future__ import annotations

import ipaddress
from typing import Mapping, NamedTuple

from netsetup.spec import Cluster, IPAddress, Node


class SshSession(NamedTuple):
    client: IPAddress
    client_port: int
    server: IPAddress
    server_port: int


def ssh_session(environ: Mapping[str, str]) -> SshSession | None:
    """Return the SSH session this process runs in, from SSH_CONNECTION."""
    fields = environ.get("SSH_CONNECTION", "").split()
    if len(fields) != 4:
        return None
    try:
        client, server = (ipaddress.ip_address(f.split("%")[0])
                          for f in (fields[0], fields[2]))
        return SshSession(client, int(fields[1]), server, int(fields[3]))
    except ValueError:
        return None


def lockout_reason(
    cluster: Cluster, node: Node, session: SshSession | None
) -> str | None:
    """Say why the new rules would refuse this session's next login."""
    if session is None or node.is_master:
        return None
    port = session.server_port
    if port not in cluster.protected_ports:
        return None
    client = unmapped(session.client)
    if client == cluster.master.vpn_address and \
            unmapped(session.server) == node.vpn_address:
        return None  # it came through the tunnel from the master
    if port == cluster.ssh_port and any(client in net for net in
                                        cluster.admin_sources):
        return None
    return (
        f"this SSH session comes from {client} to port {port}; after apply, "
        f"port {port} on {node.name} takes new connections only from "
        f"{cluster.master.vpn_address} through {cluster.interface}"
        + (" or admin_sources" if port == cluster.ssh_port else "")
        + f". This session would survive but the next login from {client} "
        "would be refused. Add it to admin_sources in the cluster file, or "
        "pass --allow-lockout if you have another way in (console, the VPN)")


def unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address

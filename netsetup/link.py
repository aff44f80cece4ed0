"""Links and addresses through rtnetlink.

Thin calls only, over `netsetup.rtnl` (a plain socket); only creating a
kernel WireGuard link takes pyroute2. Each function turns a netlink error
into LinkError naming the interface.
"""

from __future__ import annotations

import ipaddress
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from netsetup import netlink, rtnl
from netsetup.errors import LinkError

log = logging.getLogger(__name__)

ENODEV = 19
IFF_UP = 0x1
WIREGUARD_OVERHEAD = 80  # what wg-quick subtracts: IPv6 + UDP + WireGuard


@dataclass(frozen=True)
class LinkState:
    index: int
    kind: str | None
    mtu: int
    up: bool
    addresses: tuple[str, ...]  # "address/prefixlen", sorted


@contextmanager
def _socket(interface: str, doing: str) -> Iterator[rtnl.Socket]:
    """An rtnetlink socket; its errors become LinkError naming `interface`."""
    try:
        with rtnl.Socket() as sock:
            yield sock
    except OSError as exc:
        raise LinkError(f"{interface}: {doing} failed: {exc}") from exc


def is_link_local(cidr: str) -> bool:
    """Say whether an "address/prefix" is IPv6 link-local (the kernel's)."""
    return ipaddress.ip_interface(cidr).ip.is_link_local


def read(interface: str) -> LinkState | None:
    """Return the link's state, or None if no such link exists."""
    with _socket(interface, "reading the link") as sock:
        found = rtnl.link(sock, name=interface)
        if found is None:
            return None
        addresses = sorted(f"{addr.address}/{addr.prefixlen}"
                           for addr in rtnl.addresses(sock, found.ifindex))
    return LinkState(found.ifindex, found.kind, found.mtu,
                     bool(found.flags & IFF_UP), tuple(addresses))


def create_wireguard(interface: str) -> None:
    """Create a kernel WireGuard link (pyroute2, as the kernel backend)."""
    ipr = netlink.iproute()
    try:
        ipr.link("add", ifname=interface, kind="wireguard")
    except netlink.netlink_error() as exc:
        raise LinkError(
            f"{interface}: creating the wireguard link failed: {exc}") from exc
    finally:
        ipr.close()


def delete(interface: str) -> None:
    """Remove the link; a missing link is not an error."""
    with _socket(interface, "deleting the link") as sock:
        try:
            rtnl.delete_link(sock, interface)
        except rtnl.NetlinkError as exc:
            if exc.errno != ENODEV:
                raise


def set_mtu(interface: str, mtu: int) -> None:
    with _socket(interface, f"setting MTU {mtu}") as sock:
        rtnl.set_mtu(sock, interface, mtu)


def set_up(interface: str) -> None:
    with _socket(interface, "bringing the link up") as sock:
        rtnl.set_flags(sock, interface, IFF_UP, IFF_UP)


def add_address(interface: str, cidr: str) -> None:
    address, prefix = cidr.split("/")
    with _socket(interface, f"adding {cidr}") as sock:
        rtnl.add_address(sock, _index(sock, interface), address, int(prefix))


def del_address(interface: str, cidr: str) -> None:
    address, prefix = cidr.split("/")
    with _socket(interface, f"removing {cidr}") as sock:
        rtnl.delete_address(sock, _index(sock, interface), address, int(prefix))


def _index(sock: rtnl.Socket, interface: str) -> int:
    found = rtnl.link(sock, name=interface)
    if found is None:
        raise rtnl.NetlinkError(ENODEV, "no such link")
    return found.ifindex


def local_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Return every address configured in this network namespace."""
    try:
        with rtnl.Socket() as sock:
            found = rtnl.addresses(sock)
    except OSError as exc:
        raise LinkError(f"reading the local addresses failed: {exc}") from exc
    return [ipaddress.ip_address(addr.address) for addr in found]


def route_mtu(destinations: list[str]) -> int | None:
    """Return the largest MTU of the links that route to `destinations`.

    wg-quick derives the tunnel MTU this way; None if no route is known.
    """
    best = None
    link_mtus: dict[int, int] = {}  # a big cluster routes via few links
    try:
        with rtnl.Socket() as sock:
            for route in rtnl.routes(sock, list(dict.fromkeys(destinations))):
                if route is None or route.oif is None:
                    continue
                if route.oif not in link_mtus:
                    out = rtnl.link(sock, index=route.oif)
                    if out is None:
                        continue
                    link_mtus[route.oif] = out.mtu
                mtu = route.mtu or link_mtus[route.oif]
                best = mtu if best is None else max(best, mtu)
    except OSError as exc:
        raise LinkError(f"looking up the routes to the peers failed: {exc}") from exc
    return best

"""Links and addresses through rtnetlink (pyroute2's IPRoute).

Thin calls only: each function does one netlink exchange and turns
pyroute2's NetlinkError into LinkError naming the interface.
"""

from __future__ import annotations

import ipaddress
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from netsetup import netlink
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
def _iproute() -> Iterator[Any]:
    ipr = netlink.iproute()
    try:
        yield ipr
    finally:
        ipr.close()


@contextmanager
def _errors(interface: str, doing: str) -> Iterator[None]:
    try:
        yield
    except netlink.netlink_error() as exc:
        raise LinkError(f"{interface}: {doing} failed: {exc}") from exc


def is_link_local(cidr: str) -> bool:
    """Say whether an "address/prefix" is IPv6 link-local (the kernel's)."""
    return ipaddress.ip_interface(cidr).ip.is_link_local


def read(interface: str) -> LinkState | None:
    """Return the link's state, or None if no such link exists."""
    with _iproute() as ipr:
        indexes = ipr.link_lookup(ifname=interface)
        if not indexes:
            return None
        index = indexes[0]
        (msg,) = ipr.link("get", index=index)
        info = msg.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        addresses = sorted(
            f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}"
            for addr in ipr.get_addr(index=index)
        )
    return LinkState(index, kind, msg.get_attr("IFLA_MTU"),
                     bool(msg["flags"] & IFF_UP), tuple(addresses))


def create_wireguard(interface: str) -> None:
    with _iproute() as ipr, _errors(interface, "creating the wireguard link"):
        ipr.link("add", ifname=interface, kind="wireguard")


def delete(interface: str) -> None:
    """Remove the link; a missing link is not an error."""
    with _iproute() as ipr:
        try:
            ipr.link("del", ifname=interface)
        except netlink.netlink_error() as exc:
            if getattr(exc, "code", None) != ENODEV:
                raise LinkError(f"{interface}: delete failed: {exc}") from exc


def set_mtu(interface: str, mtu: int) -> None:
    with _iproute() as ipr, _errors(interface, f"setting MTU {mtu}"):
        ipr.link("set", ifname=interface, mtu=mtu)


def set_up(interface: str) -> None:
    with _iproute() as ipr, _errors(interface, "bringing the link up"):
        ipr.link("set", ifname=interface, state="up")


def add_address(interface: str, cidr: str) -> None:
    address, prefix = cidr.split("/")
    with _iproute() as ipr, _errors(interface, f"adding {cidr}"):
        (index,) = ipr.link_lookup(ifname=interface)
        ipr.addr("add", index=index, address=address, prefixlen=int(prefix))


def del_address(interface: str, cidr: str) -> None:
    address, prefix = cidr.split("/")
    with _iproute() as ipr, _errors(interface, f"removing {cidr}"):
        (index,) = ipr.link_lookup(ifname=interface)
        ipr.addr("del", index=index, address=address, prefixlen=int(prefix))


def local_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Return every address configured in this network namespace."""
    with _iproute() as ipr:
        return [ipaddress.ip_address(addr.get_attr("IFA_ADDRESS"))
                for addr in ipr.get_addr()]


def route_mtu(destinations: list[str]) -> int | None:
    """Return the largest MTU of the links that route to `destinations`.

    wg-quick derives the tunnel MTU this way; None if no route is known.
    """
    best = None
    link_mtus: dict[int, int] = {}  # a big cluster routes via few links
    with _iproute() as ipr:
        for destination in dict.fromkeys(destinations):
            try:
                (route,) = ipr.route("get", dst=destination)
                index = route.get_attr("RTA_OIF")
                if index not in link_mtus:
                    (msg,) = ipr.link("get", index=index)
                    link_mtus[index] = msg.get_attr("IFLA_MTU")
            except (netlink.netlink_error(), ValueError):
                continue
            metrics = route.get_attr("RTA_METRICS")
            mtu = link_mtus[index]
            if metrics is not None and metrics.get_attr("RTAX_MTU"):
                mtu = metrics.get_attr("RTAX_MTU")
            best = mtu if best is None else max(best, mtu)
    return best

"""Kernel WireGuard: pyroute2 creates the link (`IPRoute`) and sets keys
and peers (its `WireGuard` generic-netlink class); reading the device, which
every apply and status does, is one WG_CMD_GET_DEVICE dump over a plain
socket (`netsetup.rtnl`), so a run that changes nothing never imports
pyroute2. Attribute names follow linux/wireguard.h."""

from __future__ import annotations

import base64
import ipaddress
import logging
import socket
import struct
from dataclasses import replace
from typing import Any

from netsetup import link, netlink, rtnl
from netsetup.errors import BackendError
from netsetup.wireguard import DeviceChange, DeviceState, PeerConfig, PeerState

log = logging.getLogger(__name__)

ENODEV = 19

WG_GENL_NAME = "wireguard"
WG_CMD_GET_DEVICE = 0
WGDEVICE_A_IFNAME = 2
WGDEVICE_A_PRIVATE_KEY = 3
WGDEVICE_A_LISTEN_PORT = 6
WGDEVICE_A_PEERS = 8
WGPEER_A_PUBLIC_KEY = 1
WGPEER_A_ENDPOINT = 4
WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL = 5
WGPEER_A_LAST_HANDSHAKE_TIME = 6
WGPEER_A_RX_BYTES = 7
WGPEER_A_TX_BYTES = 8
WGPEER_A_ALLOWEDIPS = 9
WGALLOWEDIP_A_FAMILY = 1
WGALLOWEDIP_A_IPADDR = 2
WGALLOWEDIP_A_CIDR_MASK = 3


class KernelBackend:
    name = "kernel"

    def create(self, interface: str) -> None:
        link.create_wireguard(interface)

    def read(self, interface: str) -> DeviceState | None:
        if link.read(interface) is None:
            return None
        try:
            with rtnl.Socket(rtnl.NETLINK_GENERIC) as sock:
                family = rtnl.genl_family_id(sock, WG_GENL_NAME)
                if family is None:
                    raise BackendError(f"{interface}: the kernel has no "
                                       "WireGuard (generic-netlink family "
                                       "wireguard)")
                body = rtnl.GENLMSGHDR.pack(WG_CMD_GET_DEVICE, 1, 0)
                body += rtnl.attribute(WGDEVICE_A_IFNAME,
                                       interface.encode() + b"\0")
                messages = sock.request(family, rtnl.NLM_F_DUMP, body)
        except rtnl.NetlinkError as exc:
            if exc.errno == ENODEV:
                return None
            raise BackendError(f"{interface}: reading the device failed: "
                               f"{exc}") from exc
        except OSError as exc:
            raise BackendError(f"{interface}: reading the device failed: "
                               f"{exc}") from exc
        return parse_device(messages)

    def configure(self, interface: str, change: DeviceChange) -> None:
        if not change:
            return
        wg = netlink.wireguard()
        try:
            # FIXME: pyroute2's set() carries one peer per message, so a
            # change to many peers is several netlink transactions.
            if change.private_key is not None or change.listen_port is not None:
                wg.set(interface, private_key=change.private_key,
                       listen_port=change.listen_port)
            remove = list(change.remove_peers)
            if change.replace_peers:
                current = self.read(interface)
                remove = list(current.peers) if current is not None else []
            for key in remove:
                wg.set(interface, peer={"public_key": key, "remove": True})
            for peer in change.set_peers:
                wg.set(interface, peer=_peer_request(peer))
        except netlink.netlink_error() as exc:
            raise BackendError(f"{interface}: configuring the device failed: "
                               f"{exc}") from exc
        finally:
            wg.close()

    def delete(self, interface: str) -> None:
        link.delete(interface)


def _peer_request(peer: PeerConfig) -> dict[str, Any]:
    request: dict[str, Any] = {
        "public_key": peer.public_key,
        "persistent_keepalive": peer.persistent_keepalive,
        "replace_allowed_ips": True,
        "allowed_ips": list(peer.allowed_ips),
    }
    if peer.endpoint is not None:
        request["endpoint_addr"], request["endpoint_port"] = peer.endpoint
    return request


def parse_device(messages: list[bytes]) -> DeviceState:
    """Turn the payloads of a WG_CMD_GET_DEVICE dump into a DeviceState.

    A device with many peers is split over several messages, and so may be
    one peer's allowed IPs: a peer that comes again continues the last one.
    """
    private_key = None
    listen_port = 0
    peers: dict[str, PeerState] = {}
    for payload in messages:
        device = rtnl.attributes(payload, rtnl.GENLMSGHDR.size)
        if WGDEVICE_A_PRIVATE_KEY in device:
            private_key = base64.b64encode(device[WGDEVICE_A_PRIVATE_KEY]).decode()
        if WGDEVICE_A_LISTEN_PORT in device:
            (listen_port,) = struct.unpack("=H", device[WGDEVICE_A_LISTEN_PORT])
        for _, nested in rtnl.attribute_list(device.get(WGDEVICE_A_PEERS, b"")):
            peer = _peer_state(rtnl.attributes(nested))
            earlier = peers.get(peer.public_key)
            if earlier is not None:
                peer = replace(earlier, allowed_ips=tuple(sorted(
                    earlier.allowed_ips + peer.allowed_ips)))
            peers[peer.public_key] = peer
    return DeviceState(private_key, listen_port, peers)


def _peer_state(peer: dict[int, bytes]) -> PeerState:
    allowed = []
    for _, nested in rtnl.attribute_list(peer.get(WGPEER_A_ALLOWEDIPS, b"")):
        entry = rtnl.attributes(nested)
        (family,) = struct.unpack("=H", entry[WGALLOWEDIP_A_FAMILY])
        address = socket.inet_ntop(family, entry[WGALLOWEDIP_A_IPADDR])
        allowed.append(str(ipaddress.ip_network(
            f"{address}/{entry[WGALLOWEDIP_A_CIDR_MASK][0]}", strict=False)))
    handshake = 0.0
    if WGPEER_A_LAST_HANDSHAKE_TIME in peer:
        seconds, nanoseconds = struct.unpack(
            "=qq", peer[WGPEER_A_LAST_HANDSHAKE_TIME])
        handshake = seconds + nanoseconds / 1e9
    return PeerState(
        public_key=base64.b64encode(peer[WGPEER_A_PUBLIC_KEY]).decode(),
        endpoint=_endpoint(peer.get(WGPEER_A_ENDPOINT)),
        allowed_ips=tuple(sorted(allowed)),
        persistent_keepalive=_number(
            "=H", peer.get(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL)),
        last_handshake=handshake,
        rx_bytes=_number("=Q", peer.get(WGPEER_A_RX_BYTES)),
        tx_bytes=_number("=Q", peer.get(WGPEER_A_TX_BYTES)),
    )


def _endpoint(sockaddr: bytes | None) -> tuple[str, int] | None:
    """Decode a struct sockaddr_in or sockaddr_in6 (port in network order)."""
    if not sockaddr:
        return None
    (family,) = struct.unpack_from("=H", sockaddr)
    (port,) = struct.unpack_from("!H", sockaddr, 2)
    if family == socket.AF_INET:
        return socket.inet_ntop(family, sockaddr[4:8]), port
    if family == socket.AF_INET6:
        return socket.inet_ntop(family, sockaddr[8:24]), port
    return None


def _number(layout: str, payload: bytes | None) -> int:
    return struct.unpack(layout, payload)[0] if payload else 0

"""Kernel WireGuard: pyroute2's IPRoute creates the link; keys and peers
travel over a plain generic-netlink socket (`netsetup.rtnl`).

pyroute2's WireGuard class sends one peer per message: at 1000 peers that
made a cold apply in the qemu tier 9 times slower than `wg setconf`, which
packs peers into as few messages as fit. Here the device is read with one
WG_CMD_GET_DEVICE dump and changed with as few WG_CMD_SET_DEVICE messages
as fit, and a run that changes nothing never imports pyroute2. Attribute
names follow linux/wireguard.h."""

from __future__ import annotations

import base64
import ipaddress
import logging
import socket
import struct
from contextlib import contextmanager
from typing import Iterator

from netsetup import link, rtnl
from netsetup.errors import BackendError
from netsetup.wireguard import DeviceChange, DeviceState, PeerConfig, PeerState

log = logging.getLogger(__name__)

ENODEV = 19

WG_GENL_NAME = "wireguard"
WG_CMD_GET_DEVICE = 0
WG_CMD_SET_DEVICE = 1
WGDEVICE_A_IFNAME = 2
WGDEVICE_A_PRIVATE_KEY = 3
WGDEVICE_A_FLAGS = 5
WGDEVICE_A_LISTEN_PORT = 6
WGDEVICE_A_PEERS = 8
WGDEVICE_F_REPLACE_PEERS = 1
WGPEER_A_PUBLIC_KEY = 1
WGPEER_A_FLAGS = 3
WGPEER_F_REMOVE_ME = 1
WGPEER_F_REPLACE_ALLOWEDIPS = 2
WGPEER_A_ENDPOINT = 4
WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL = 5
WGPEER_A_LAST_HANDSHAKE_TIME = 6
WGPEER_A_RX_BYTES = 7
WGPEER_A_TX_BYTES = 8
WGPEER_A_ALLOWEDIPS = 9
WGALLOWEDIP_A_FAMILY = 1
WGALLOWEDIP_A_IPADDR = 2
WGALLOWEDIP_A_CIDR_MASK = 3
NLA_F_NESTED = 0x8000
# Peers per WG_CMD_SET_DEVICE message: well inside the socket's send buffer
# (212992 bytes by default); about 270 of netsetup's peers.
MESSAGE_LIMIT = 32768


class KernelBackend:
    name = "kernel"

    def create(self, interface: str) -> None:
        link.create_wireguard(interface)

    def read(self, interface: str) -> DeviceState | None:
        if link.read(interface) is None:
            return None
        body = rtnl.GENLMSGHDR.pack(WG_CMD_GET_DEVICE, 1, 0)
        body += rtnl.attribute(WGDEVICE_A_IFNAME, interface.encode() + b"\0")
        try:
            with _wireguard_socket(interface) as (sock, family):
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
        """Send `change` in as few WG_CMD_SET_DEVICE messages as fit.

        Like `wg setconf`, a change too big for one message goes in several,
        which the kernel applies one after the other.
        """
        if not change:
            return
        try:
            messages = set_device_messages(interface, change)
            with _wireguard_socket(interface) as (sock, family):
                for body in messages:
                    sock.request(family, rtnl.NLM_F_ACK, body)
        except (OSError, ValueError) as exc:
            raise BackendError(f"{interface}: configuring the device failed: "
                               f"{exc}") from exc

    def delete(self, interface: str) -> None:
        link.delete(interface)


@contextmanager
def _wireguard_socket(interface: str) -> Iterator[tuple[rtnl.Socket, int]]:
    """A generic-netlink socket and the id of the wireguard family."""
    with rtnl.Socket(rtnl.NETLINK_GENERIC) as sock:
        family = rtnl.genl_family_id(sock, WG_GENL_NAME)
        if family is None:
            raise BackendError(f"{interface}: the kernel has no WireGuard "
                               "(generic-netlink family wireguard)")
        yield sock, family


def set_device_messages(interface: str, change: DeviceChange,
                        limit: int = MESSAGE_LIMIT) -> list[bytes]:
    """Return the WG_CMD_SET_DEVICE bodies that carry `change`, in order.

    The first carries the key, the port and the flag that drops every peer;
    peers fill messages up to about `limit` bytes (one peer never spans two:
    netsetup's peers have a handful of allowed IPs).
    """
    head = (rtnl.GENLMSGHDR.pack(WG_CMD_SET_DEVICE, 1, 0)
            + rtnl.attribute(WGDEVICE_A_IFNAME, interface.encode() + b"\0"))
    first = head
    if change.private_key is not None:
        first += rtnl.attribute(WGDEVICE_A_PRIVATE_KEY, _key(change.private_key))
    if change.listen_port is not None:
        first += rtnl.attribute(WGDEVICE_A_LISTEN_PORT,
                                struct.pack("=H", change.listen_port))
    if change.replace_peers:
        first += rtnl.attribute(WGDEVICE_A_FLAGS,
                                struct.pack("=I", WGDEVICE_F_REPLACE_PEERS))
    peers = [_nested(0, rtnl.attribute(WGPEER_A_PUBLIC_KEY, _key(key))
                     + rtnl.attribute(WGPEER_A_FLAGS,
                                      struct.pack("=I", WGPEER_F_REMOVE_ME)))
             for key in change.remove_peers]
    peers += [_peer(peer) for peer in change.set_peers]
    messages = []
    current, batch = first, b""
    for peer in peers:
        if batch and len(current) + len(batch) + len(peer) > limit:
            messages.append(current + _nested(WGDEVICE_A_PEERS, batch))
            current, batch = head, b""
        batch += peer
    messages.append(current + (_nested(WGDEVICE_A_PEERS, batch) if batch else b""))
    return messages


def _peer(peer: PeerConfig) -> bytes:
    attrs = (rtnl.attribute(WGPEER_A_PUBLIC_KEY, _key(peer.public_key))
             + rtnl.attribute(WGPEER_A_FLAGS,
                              struct.pack("=I", WGPEER_F_REPLACE_ALLOWEDIPS))
             + rtnl.attribute(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL,
                              struct.pack("=H", peer.persistent_keepalive)))
    if peer.endpoint is not None:
        attrs += rtnl.attribute(WGPEER_A_ENDPOINT, _sockaddr(*peer.endpoint))
    allowed = b""
    for cidr in peer.allowed_ips:
        network = ipaddress.ip_network(cidr, strict=False)
        family = socket.AF_INET6 if network.version == 6 else socket.AF_INET
        allowed += _nested(0, rtnl.attribute(WGALLOWEDIP_A_FAMILY,
                                             struct.pack("=H", family))
                           + rtnl.attribute(WGALLOWEDIP_A_IPADDR,
                                            network.network_address.packed)
                           + rtnl.attribute(WGALLOWEDIP_A_CIDR_MASK,
                                            bytes([network.prefixlen])))
    return _nested(0, attrs + _nested(WGPEER_A_ALLOWEDIPS, allowed))


def _nested(kind: int, payload: bytes) -> bytes:
    return rtnl.attribute(kind | NLA_F_NESTED, payload)


def _key(text: str) -> bytes:
    key = base64.b64decode(text, validate=True)
    if len(key) != 32:
        raise ValueError(f"a WireGuard key is 32 bytes, not {len(key)}")
    return key


def _sockaddr(host: str, port: int) -> bytes:
    """Encode a struct sockaddr_in or sockaddr_in6 (port in network order)."""
    address = ipaddress.ip_address(host)
    if address.version == 4:
        return (struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
                + address.packed + bytes(8))
    return (struct.pack("=H", socket.AF_INET6) + struct.pack("!H", port)
            + bytes(4) + address.packed + bytes(4))


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
                peer = earlier._replace(allowed_ips=tuple(sorted(
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

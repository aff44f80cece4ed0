"""Kernel WireGuard through pyroute2: `IPRoute` for the link, the
`WireGuard` generic-netlink class for keys and peers."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from netsetup import link, netlink
from netsetup.errors import BackendError
from netsetup.wireguard import DeviceChange, DeviceState, PeerConfig, PeerState

log = logging.getLogger(__name__)

ENODEV = 19


class KernelBackend:
    name = "kernel"

    def create(self, interface: str) -> None:
        link.create_wireguard(interface)

    def read(self, interface: str) -> DeviceState | None:
        if link.read(interface) is None:
            return None
        wg = netlink.wireguard()
        try:
            messages = list(wg.info(interface))
        except netlink.netlink_error() as exc:
            if getattr(exc, "code", None) == ENODEV:
                return None
            raise BackendError(f"{interface}: reading the device failed: "
                               f"{exc}") from exc
        finally:
            wg.close()
        return parse_info(messages)

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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_info(messages: list[Any]) -> DeviceState:
    """Turn the messages of a WG_CMD_GET_DEVICE dump into a DeviceState.

    A device with many peers is split over several messages; the device
    attributes repeat in each.
    """
    private_key = None
    listen_port = 0
    peers: dict[str, PeerState] = {}
    for msg in messages:
        key = msg.get_attr("WGDEVICE_A_PRIVATE_KEY")
        if key is not None:
            private_key = _text(key)
        listen_port = msg.get_attr("WGDEVICE_A_LISTEN_PORT") or listen_port
        for peer in msg.get_attr("WGDEVICE_A_PEERS") or ():
            state = _peer_state(peer)
            peers[state.public_key] = state
    return DeviceState(private_key, listen_port, peers)


def _peer_state(peer: Any) -> PeerState:
    endpoint = peer.get_attr("WGPEER_A_ENDPOINT")
    handshake = peer.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME")
    allowed = [
        str(ipaddress.ip_network(entry["addr"], strict=False))
        for entry in peer.get_attr("WGPEER_A_ALLOWEDIPS") or ()
        if "addr" in entry
    ]
    return PeerState(
        public_key=_text(peer.get_attr("WGPEER_A_PUBLIC_KEY")),
        endpoint=(endpoint["addr"], endpoint["port"]) if endpoint else None,
        allowed_ips=tuple(sorted(allowed)),
        persistent_keepalive=peer.get_attr(
            "WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") or 0,
        last_handshake=(handshake["tv_sec"] + handshake["tv_nsec"] / 1e9
                        if handshake else 0.0),
        rx_bytes=peer.get_attr("WGPEER_A_RX_BYTES") or 0,
        tx_bytes=peer.get_attr("WGPEER_A_TX_BYTES") or 0,
    )

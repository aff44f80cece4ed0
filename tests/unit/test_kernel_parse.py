"""netsetup.wireguard.kernel.parse_device on hand-built WG_CMD_GET_DEVICE
payloads: the framing the kernel uses (linux/wireguard.h)."""

from __future__ import annotations

import base64
import socket
import struct

from netsetup import rtnl
from netsetup.wireguard import DeviceChange, PeerConfig
from netsetup.wireguard import kernel as k

PRIVATE = bytes(range(32))
PEER_A = bytes([1] * 32)
PEER_B = bytes([2] * 32)


def allowed(address: str, cidr: int) -> bytes:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return rtnl.attribute(0, rtnl.attribute(k.WGALLOWEDIP_A_FAMILY,
                                            struct.pack("=H", family))
                          + rtnl.attribute(k.WGALLOWEDIP_A_IPADDR,
                                           socket.inet_pton(family, address))
                          + rtnl.attribute(k.WGALLOWEDIP_A_CIDR_MASK, bytes([cidr])))


def peer(key: bytes, *attrs: bytes) -> bytes:
    return rtnl.attribute(0, rtnl.attribute(k.WGPEER_A_PUBLIC_KEY, key) + b"".join(attrs))


def message(*attrs: bytes) -> bytes:
    return rtnl.GENLMSGHDR.pack(k.WG_CMD_GET_DEVICE, 1, 0) + b"".join(attrs)


def sockaddr_in(host: str, port: int) -> bytes:
    return (struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
            + socket.inet_pton(socket.AF_INET, host) + bytes(8))


def sockaddr_in6(host: str, port: int) -> bytes:
    return (struct.pack("=H", socket.AF_INET6) + struct.pack("!H", port)
            + bytes(4) + socket.inet_pton(socket.AF_INET6, host) + bytes(4))


def test_a_peer_split_over_two_messages_is_one_peer() -> None:
    first = message(
        rtnl.attribute(k.WGDEVICE_A_PRIVATE_KEY, PRIVATE),
        rtnl.attribute(k.WGDEVICE_A_LISTEN_PORT, struct.pack("=H", 51820)),
        rtnl.attribute(k.WGDEVICE_A_PEERS, peer(
            PEER_A,
            rtnl.attribute(k.WGPEER_A_ENDPOINT, sockaddr_in("192.0.2.10", 51820)),
            rtnl.attribute(k.WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL,
                           struct.pack("=H", 25)),
            rtnl.attribute(k.WGPEER_A_LAST_HANDSHAKE_TIME,
                           struct.pack("=qq", 1700000000, 500_000_000)),
            rtnl.attribute(k.WGPEER_A_RX_BYTES, struct.pack("=Q", 7)),
            rtnl.attribute(k.WGPEER_A_ALLOWEDIPS, allowed("10.77.0.1", 32)))))
    second = message(rtnl.attribute(k.WGDEVICE_A_PEERS, peer(
        PEER_A, rtnl.attribute(k.WGPEER_A_ALLOWEDIPS, allowed("fd00::1", 128)))
        + peer(PEER_B, rtnl.attribute(
            k.WGPEER_A_ENDPOINT, sockaddr_in6("2001:db8::12", 51821)))))

    state = k.parse_device([first, second])

    assert state.private_key == base64.b64encode(PRIVATE).decode()
    assert state.listen_port == 51820
    a = state.peers[base64.b64encode(PEER_A).decode()]
    assert a.allowed_ips == ("10.77.0.1/32", "fd00::1/128")
    assert a.endpoint == ("192.0.2.10", 51820)
    assert a.persistent_keepalive == 25
    assert a.last_handshake == 1700000000.5 and a.rx_bytes == 7 and a.tx_bytes == 0
    b = state.peers[base64.b64encode(PEER_B).decode()]
    assert b.endpoint == ("2001:db8::12", 51821)
    assert b.allowed_ips == () and b.last_handshake == 0.0


def test_a_device_without_key_or_peers() -> None:
    state = k.parse_device([message(
        rtnl.attribute(k.WGDEVICE_A_LISTEN_PORT, struct.pack("=H", 0)))])
    assert state.private_key is None and state.listen_port == 0
    assert state.peers == {}


def _peer_config(index: int) -> PeerConfig:
    key = base64.b64encode(bytes([index % 256, index // 256]) * 16).decode()
    endpoint = (f"2001:db8::{index:x}", 51820) if index % 2 else (
        f"192.0.2.{index % 250 + 1}", 51820)
    return PeerConfig(key, endpoint, (f"10.77.{index // 250}.{index % 250 + 1}/32",
                                      f"fd00::{index + 1:x}/128"), 25)


def test_set_messages_carry_every_peer_and_fit_the_limit() -> None:
    change = DeviceChange(private_key=base64.b64encode(PRIVATE).decode(),
                          listen_port=51820, replace_peers=True,
                          set_peers=tuple(_peer_config(i) for i in range(1000)),
                          remove_peers=(base64.b64encode(bytes([255] * 32)).decode(),))
    bodies = k.set_device_messages("wg0", change, limit=8192)

    assert len(bodies) > 10 and all(len(body) <= 8192 for body in bodies)
    heads = [rtnl.attributes(body, rtnl.GENLMSGHDR.size) for body in bodies]
    assert all(head[k.WGDEVICE_A_IFNAME] == b"wg0\0" for head in heads)
    # key, port and "drop every peer" once, in the first message only
    assert [k.WGDEVICE_A_FLAGS in head for head in heads] == [True] + [False] * (
        len(heads) - 1)
    assert sum(k.WGDEVICE_A_PRIVATE_KEY in head for head in heads) == 1
    # read back with the dump parser, the peers are the ones sent
    state = k.parse_device(bodies)
    assert state.private_key == change.private_key and state.listen_port == 51820
    wanted = {p.public_key: p for p in change.set_peers}
    assert {key: p.config() for key, p in state.peers.items() if key in wanted} \
        == {key: PeerConfig(p.public_key, p.endpoint, tuple(sorted(p.allowed_ips)),
                            p.persistent_keepalive) for key, p in wanted.items()}
    (removed,) = set(state.peers) - set(wanted)
    assert removed == base64.b64encode(bytes([255] * 32)).decode()


def test_nothing_but_a_port_is_one_message_without_peers() -> None:
    (body,) = k.set_device_messages("wg0", DeviceChange(listen_port=1))
    assert k.WGDEVICE_A_PEERS not in rtnl.attributes(body, rtnl.GENLMSGHDR.size)

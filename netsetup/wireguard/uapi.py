"""WireGuard's cross-platform UAPI text protocol: pure encode and parse.

Keys are hex on this protocol and base64 everywhere else, so conversion
happens here and nowhere else.
"""

from __future__ import annotations

import base64
import ipaddress

from netsetup.errors import BackendError
from netsetup.wireguard import DeviceChange, DeviceState, PeerState


def b64_to_hex(key: str) -> str:
    return base64.b64decode(key).hex()


def hex_to_b64(key: str) -> str:
    return base64.b64encode(bytes.fromhex(key)).decode()


def format_endpoint(host: str, port: int) -> str:
    """`host` is an address as ipaddress prints it: only IPv6 has a colon."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def parse_endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    # A link-local endpoint may carry a zone ("fe80::1%eth0").
    host = host.split("%", 1)[0]
    return str(ipaddress.ip_address(host)), int(port)


def encode_set(change: DeviceChange) -> bytes:
    """Return the `set=1` request that applies `change` in one message."""
    lines = ["set=1"]
    if change.private_key is not None:
        lines.append(f"private_key={b64_to_hex(change.private_key)}")
    if change.listen_port is not None:
        lines.append(f"listen_port={change.listen_port}")
    if change.replace_peers:
        lines.append("replace_peers=true")
    for key in change.remove_peers:
        lines += [f"public_key={b64_to_hex(key)}", "remove=true"]
    for peer in change.set_peers:
        lines.append(f"public_key={b64_to_hex(peer.public_key)}")
        if peer.endpoint is not None:
            lines.append(f"endpoint={format_endpoint(*peer.endpoint)}")
        lines.append(f"persistent_keepalive_interval={peer.persistent_keepalive}")
        lines.append("replace_allowed_ips=true")
        lines += [f"allowed_ip={cidr}" for cidr in peer.allowed_ips]
    return ("\n".join(lines) + "\n\n").encode()


def parse_errno(reply: str) -> int:
    """Return the errno of a reply; raise if the reply has none."""
    for line in reply.splitlines():
        if line.startswith("errno="):
            return int(line[len("errno="):])
    raise BackendError(f"UAPI reply without errno: {reply[:80]!r}")


def parse_get(reply: str) -> DeviceState:
    """Parse the reply to `get=1` into a DeviceState."""
    private_key: str | None = None
    listen_port = 0
    peers: list[dict[str, object]] = []
    for line in reply.splitlines():
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise BackendError(f"malformed UAPI line: {line!r}")
        if key == "errno":
            if value != "0":
                raise BackendError(f"UAPI get failed: errno={value}")
        elif key == "public_key":
            peers.append({"public_key": hex_to_b64(value), "allowed_ips": []})
        elif peers:
            _peer_field(peers[-1], key, value)
        elif key == "private_key":
            private_key = hex_to_b64(value)
        elif key == "listen_port":
            listen_port = int(value)
    states = {}
    for peer in peers:
        state = _peer_state(peer)
        states[state.public_key] = state
    return DeviceState(private_key, listen_port, states)


def _peer_field(peer: dict[str, object], key: str, value: str) -> None:
    if key == "endpoint":
        peer["endpoint"] = parse_endpoint(value)
    elif key == "allowed_ip":
        allowed = peer["allowed_ips"]
        assert isinstance(allowed, list)
        allowed.append(str(ipaddress.ip_network(value, strict=False)))
    elif key in ("last_handshake_time_sec", "last_handshake_time_nsec",
                 "rx_bytes", "tx_bytes", "persistent_keepalive_interval"):
        peer[key] = int(value)


def _peer_state(peer: dict[str, object]) -> PeerState:
    def number(key: str) -> int:
        value = peer.get(key, 0)
        assert isinstance(value, int)
        return value

    allowed = peer["allowed_ips"]
    endpoint = peer.get("endpoint")
    assert isinstance(allowed, list)
    assert endpoint is None or isinstance(endpoint, tuple)
    return PeerState(
        public_key=str(peer["public_key"]),
        endpoint=endpoint,
        allowed_ips=tuple(sorted(allowed)),
        persistent_keepalive=number("persistent_keepalive_interval"),
        last_handshake=number("last_handshake_time_sec")
        + number("last_handshake_time_nsec") / 1e9,
        rx_bytes=number("rx_bytes"),
        tx_bytes=number("tx_bytes"),
    )

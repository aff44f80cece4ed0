"""WireGuard device configuration behind one small interface.

Two backends: `kernel` (pyroute2's generic-netlink `WireGuard` class) and
`userspace` (wireguard-go, driven over its UAPI unix socket). Both speak in
the same value types below, so planning never knows which one runs.
They are NamedTuples rather than dataclasses: a frozen dataclass costs
about 1 ms to create at import, and every command imports these.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from netsetup.errors import BackendError


class PeerConfig(NamedTuple):
    """What we set on a peer."""

    public_key: str  # base64, as in `wg` and config files
    endpoint: tuple[str, int] | None
    allowed_ips: tuple[str, ...]  # normalised CIDRs, sorted
    persistent_keepalive: int = 0


class PeerState(NamedTuple):
    """A peer as the device reports it, with its counters."""

    public_key: str
    endpoint: tuple[str, int] | None
    allowed_ips: tuple[str, ...]
    persistent_keepalive: int = 0
    last_handshake: float = 0.0  # seconds since the epoch; 0 means never
    rx_bytes: int = 0
    tx_bytes: int = 0

    def config(self) -> PeerConfig:
        """Return the configurable part, for comparison with a desired peer."""
        return PeerConfig(self.public_key, self.endpoint, self.allowed_ips,
                          self.persistent_keepalive)


class DeviceState(NamedTuple):
    private_key: str | None
    listen_port: int
    peers: dict[str, PeerState]


class DeviceChange(NamedTuple):
    """One configuration message: what differs, nothing else."""

    private_key: str | None = None
    listen_port: int | None = None
    set_peers: tuple[PeerConfig, ...] = ()
    remove_peers: tuple[str, ...] = ()
    # Drop every peer first, so set_peers start afresh. Used when the
    # private key changes: a peer that sent a handshake in the last 5 s
    # (REKEY_TIMEOUT) would otherwise wait to send one with the new key.
    replace_peers: bool = False

    def __bool__(self) -> bool:
        return bool(self.private_key or self.listen_port or self.set_peers
                    or self.remove_peers or self.replace_peers)


class Backend(Protocol):
    name: str

    def create(self, interface: str) -> None:
        """Create the WireGuard link `interface` (down, unconfigured)."""

    def read(self, interface: str) -> DeviceState | None:
        """Return the device's configuration, or None if it does not exist."""

    def configure(self, interface: str, change: DeviceChange) -> None:
        """Apply `change` to the device in as few messages as it allows."""

    def delete(self, interface: str) -> None:
        """Remove the link and anything that serves it."""


BACKENDS = ("kernel", "userspace")


def kernel_available() -> bool:
    """Say whether the kernel's `wireguard` generic-netlink family exists."""
    from netsetup import rtnl

    return rtnl.genl_family_exists("wireguard")


def select(name: str | None, wireguard_go: str, run_dir: str) -> Backend:
    """Return the backend called `name`, or the best one available."""
    if name is None:
        name = "kernel" if kernel_available() else "userspace"
    if name == "kernel":
        from netsetup.wireguard.kernel import KernelBackend

        return KernelBackend()
    if name == "userspace":
        from netsetup.wireguard.userspace import UserspaceBackend

        return UserspaceBackend(wireguard_go, run_dir)
    raise BackendError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")

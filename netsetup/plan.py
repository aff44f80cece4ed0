"""Desired state + observed state -> the actions that close the gap.

Everything here is pure: no netlink, no files, no nftables. A converged
node gives an empty plan, and `apply` then touches nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from netsetup import nodelist, sshkeys
from netsetup.errors import NetsetupError
from netsetup.firewall import Ruleset, TableState
from netsetup.link import WIREGUARD_OVERHEAD, LinkState, is_link_local
from netsetup.spec import Cluster, Node
from netsetup.wireguard import DeviceChange, DeviceState, PeerConfig

DEFAULT_MTU = 1420
LAYERS = ("firewall", "interface", "peers", "addresses", "files")


class PlanError(NetsetupError):
    """The node is in a state the plan cannot safely change."""


@dataclass(frozen=True)
class Desired:
    interface: str
    private_key: str
    public_key: str
    listen_port: int
    mtu: int | None  # None: derive from the route to the peers
    addresses: tuple[str, ...]
    peers: tuple[PeerConfig, ...]
    ruleset: Ruleset
    nodelist_map: dict[str, str]
    # Other keys a peer may be using (re-keying), by its listed key. Each is
    # configured too, without allowed IPs, so its handshakes are accepted;
    # the allowed IPs go to whichever key shook hands most recently.
    alternates: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The file and line that let the master's agent key in (workers only).
    authorized_keys: Path | None = None
    agent_entry: str | None = None
    cluster_name: str = ""


@dataclass(frozen=True)
class Observed:
    link: LinkState | None
    device: DeviceState | None
    table: TableState | None
    recorded_listing: str | None  # listing digest saved by the last load
    route_mtu: int | None
    files: dict[Path, bytes | None] = field(default_factory=dict)
    authorized_keys: bytes | None = None
    # Saved originals of the files that still hold our own last rewrite.
    originals: dict[Path, bytes] = field(default_factory=dict)


class Action(NamedTuple):
    """One change to the node. `data` is what apply needs to carry it out."""

    layer: str
    kind: str
    summary: str
    data: Any = None

    def to_json(self) -> dict[str, str]:
        return {"layer": self.layer, "action": self.kind, "summary": self.summary}


def desired_state(
    cluster: Cluster, node: Node, private_key: str, public_key: str,
    ruleset: Ruleset, authorized_keys: Path | None = None,
    agent_entry: str | None = None,
) -> Desired:
    """Return what `node` should look like according to `cluster`."""
    texts = address_texts(cluster)
    peers = []
    alternates = {}
    for peer in cluster.peers_of(node):
        lan, vpn = texts[peer.name]
        peers.append(PeerConfig(
            public_key=peer.public_key,
            endpoint=(lan, cluster.listen_port),
            allowed_ips=(f"{vpn}/{peer.vpn_address.max_prefixlen}",),
            persistent_keepalive=cluster.persistent_keepalive,
        ))
        standby = peer.candidate_keys[1:]
        if standby:
            alternates[peer.public_key] = standby
    return Desired(
        interface=cluster.interface,
        private_key=private_key,
        public_key=public_key,
        listen_port=cluster.listen_port,
        mtu=cluster.mtu,
        addresses=(f"{node.vpn_address}/{cluster.network.prefixlen}",),
        peers=tuple(peers),
        ruleset=ruleset,
        nodelist_map=nodelist_mapping(cluster, texts),
        alternates=alternates,
        authorized_keys=None if node.is_master else authorized_keys,
        agent_entry=agent_entry,
        cluster_name=cluster.name,
    )


def address_texts(cluster: Cluster) -> dict[str, tuple[str, str]]:
    """Return each node's LAN and VPN address as text, by node name.

    Formatting an ipaddress object is pure Python: at 1000 workers,
    doing it once per address rather than once per use saves milliseconds.
    """
    return {node.name: (str(node.address), str(node.vpn_address))
            for node in cluster.nodes}


def nodelist_mapping(cluster: Cluster,
                     texts: dict[str, tuple[str, str]] | None = None
                     ) -> dict[str, str]:
    """Return the token -> VPN address map used on node-list files."""
    if texts is None:
        texts = address_texts(cluster)
    mapping = {}
    for node in cluster.nodes:
        lan, vpn = texts[node.name]
        mapping[lan] = vpn
        for host in node.hostnames:
            mapping[host] = vpn
    return mapping


def plan(desired: Desired, observed: Observed) -> list[Action]:
    """Return the actions, in apply order, that make observed = desired."""
    _check_conflicts(desired, observed)
    return [
        *_firewall(desired, observed),
        *_interface(desired, observed),
        *_peers(desired, observed),
        *_addresses(desired, observed),
        *_link_up(desired, observed),
        *_files(desired, observed),
        *_agent_entry(desired, observed),
    ]


def _check_conflicts(desired: Desired, observed: Observed) -> None:
    if observed.link is not None and observed.device is None:
        raise PlanError(
            f"{desired.interface}: a link of that name exists (kind "
            f"{observed.link.kind or 'unknown'}) but is not a WireGuard device "
            "this backend can manage; remove it or pick another --backend")


def _firewall(desired: Desired, observed: Observed) -> list[Action]:
    table = observed.table
    if table is None:
        why = "table inet netsetup: create"
    elif table.digest != desired.ruleset.digest:
        why = "table inet netsetup: replace (rules differ)"
    elif table.listing_digest != observed.recorded_listing:
        why = "table inet netsetup: replace (edited since netsetup loaded it)"
    else:
        return []
    return [Action("firewall", "load-table", why, desired.ruleset)]


def target_mtu(desired: Desired, observed: Observed) -> int:
    """Return the MTU the interface should have: the file's, else wg-quick's."""
    if desired.mtu is not None:
        return desired.mtu
    if observed.route_mtu is None:
        return DEFAULT_MTU
    return observed.route_mtu - WIREGUARD_OVERHEAD


def _interface(desired: Desired, observed: Observed) -> list[Action]:
    name = desired.interface
    actions = []
    if observed.link is None:
        actions.append(Action("interface", "create", f"{name}: create"))
    device = observed.device
    if device is None or device.private_key != desired.private_key:
        actions.append(Action(
            "interface", "set-private-key",
            f"{name}: set private key (public {desired.public_key})"))
    if device is None or device.listen_port != desired.listen_port:
        actions.append(Action(
            "interface", "set-listen-port",
            f"{name}: listen on UDP {desired.listen_port}", desired.listen_port))
    mtu = target_mtu(desired, observed)
    if observed.link is None or observed.link.mtu != mtu:
        actions.append(Action("interface", "set-mtu", f"{name}: MTU {mtu}", mtu))
    return actions


def active_key(keys: tuple[str, ...], observed: Observed) -> str:
    """Return the key of `keys` that shook hands last; the first if none did."""
    peers = observed.device.peers if observed.device is not None else {}
    handshakes = [(peers[k].last_handshake, -i, k) for i, k in enumerate(keys)
                  if k in peers and peers[k].last_handshake]
    return max(handshakes)[2] if handshakes else keys[0]


def wanted_peers(desired: Desired, observed: Observed) -> dict[str, PeerConfig]:
    """Return every peer to configure, standby keys first in each group."""
    wanted = {}
    for peer in desired.peers:
        keys = (peer.public_key, *desired.alternates.get(peer.public_key, ()))
        active = active_key(keys, observed)
        for key in keys:
            if key != active:
                wanted[key] = peer._replace(public_key=key, allowed_ips=(),
                                            persistent_keepalive=0)
        wanted[active] = peer if active == peer.public_key else \
            peer._replace(public_key=active)
    return wanted


def _peers(desired: Desired, observed: Observed) -> list[Action]:
    current = observed.device.peers if observed.device is not None else {}
    wanted = wanted_peers(desired, observed)
    device = observed.device
    if device is not None and device.peers and \
            device.private_key not in (None, desired.private_key):
        # A new private key: every peer starts afresh (see DeviceChange).
        return [Action("peers", "reset-peers", f"{desired.interface}: set "
                       f"{len(wanted)} peer(s) afresh for the new key",
                       tuple(wanted.values()))]
    actions = []
    for key, peer in wanted.items():
        state = current.get(key)
        if state is None:
            verb, kind = "add", "add-peer"
        elif state.config() != peer:
            verb, kind = "update", "update-peer"
        else:
            continue
        actions.append(Action("peers", kind, f"{desired.interface}: {verb} peer "
                              f"{key} {_describe_peer(peer)}", peer))
    for key in sorted(set(current) - set(wanted)):
        actions.append(Action("peers", "remove-peer",
                              f"{desired.interface}: remove peer {key}", key))
    return actions


def _describe_peer(peer: PeerConfig) -> str:
    endpoint = "none" if peer.endpoint is None else "%s:%d" % peer.endpoint
    allowed = ", ".join(peer.allowed_ips) or "none (standby key)"
    return (f"(endpoint {endpoint}, allowed IPs {allowed}, "
            f"keepalive {peer.persistent_keepalive or 'off'})")


def _addresses(desired: Desired, observed: Observed) -> list[Action]:
    have = set() if observed.link is None else set(observed.link.addresses)
    want = set(desired.addresses)
    name = desired.interface
    # Removals first: an IPv4 address added in the subnet of one already
    # there is a secondary, and the kernel deletes secondaries with their
    # primary. The kernel may give the link an IPv6 link-local address; it
    # is not ours to remove.
    actions = [Action("addresses", "remove-address",
                      f"{name}: remove address {cidr}", cidr)
               for cidr in sorted(have - want) if not is_link_local(cidr)]
    actions += [Action("addresses", "add-address", f"{name}: add address {cidr}",
                       cidr) for cidr in sorted(want - have)]
    return actions


def _link_up(desired: Desired, observed: Observed) -> list[Action]:
    if observed.link is not None and observed.link.up:
        return []
    return [Action("interface", "set-up", f"{desired.interface}: set link up")]


def _files(desired: Desired, observed: Observed) -> list[Action]:
    actions = []
    for path, data in sorted(observed.files.items()):
        if data is None:
            continue
        try:
            change = nodelist.file_change(path, data, desired.nodelist_map,
                                          observed.originals.get(path))
        except ValueError as exc:
            raise PlanError(f"{path}: cannot rewrite: {exc}") from exc
        if change is None:
            continue
        lines = "; ".join(change.diff_lines())
        actions.append(Action("files", "rewrite-nodelist",
                              f"{path}: {lines}", change))
    return actions


def _agent_entry(desired: Desired, observed: Observed) -> list[Action]:
    path = desired.authorized_keys
    if path is None:
        return []
    new = sshkeys.with_entry(observed.authorized_keys, desired.agent_entry,
                             desired.cluster_name)
    if new == (observed.authorized_keys or b""):
        return []
    verb = "remove" if desired.agent_entry is None else "set"
    return [Action("files", "authorize-agent",
                   f"{path}: {verb} the master's re-keying entry", new)]


def device_change(desired: Desired, actions: list[Action]) -> DeviceChange:
    """Fold the key, port and peer actions into one device message."""
    private_key = None
    listen_port = None
    set_peers = []
    remove_peers = []
    for action in actions:
        if action.kind == "set-private-key":
            private_key = desired.private_key
        elif action.kind == "set-listen-port":
            listen_port = action.data
        elif action.kind in ("add-peer", "update-peer"):
            set_peers.append(action.data)
        elif action.kind == "remove-peer":
            remove_peers.append(action.data)
        elif action.kind == "reset-peers":
            return DeviceChange(private_key, listen_port, action.data,
                                replace_peers=True)
    return DeviceChange(private_key, listen_port, tuple(set_peers),
                        tuple(remove_peers))

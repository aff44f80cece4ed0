"""The cluster file: load it, validate every field, and answer "who am I".

The same TOML file sits on every node. Validation is strict: an unknown key
is an error, because a typo in a firewall tool's input must not silently
mean "use the default".
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import tomli

from netsetup.errors import IdentityError, SpecError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ROLES = ("master", "worker")
IFNAMSIZ = 16  # the kernel's limit includes the trailing NUL
NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})\Z")
INTERFACE_RE = re.compile(r"^(?!\.\.?\Z)[A-Za-z0-9_.-]+\Z")  # not "." or ".."
DEFAULT_NODELIST = "/usr/local/mascot/config/nodelist.txt"

CLUSTER_KEYS = {
    "name", "interface", "network", "listen_port", "protected_ports",
    "ssh_port", "admin_sources", "nodelist", "mtu", "persistent_keepalive",
    "rekey_interval_days", "rekey_timeout", "rekey_ssh_key",
}
NODE_KEYS = {"name", "role", "address", "vpn_address", "public_key", "hostnames",
             "next_public_key", "previous_public_key"}
SSH_KEY_RE = re.compile(r"^ssh-ed25519 [A-Za-z0-9+/=]{40,100}( [\x21-\x7e]*)?\Z")


class Node(NamedTuple):
    name: str
    role: str
    address: IPAddress
    vpn_address: IPAddress
    public_key: str
    hostnames: tuple[str, ...] = ()
    # Re-keying: the master's key announced for the next rotation, and the
    # key a node had before the last one. Each is accepted for handshakes,
    # so a node that missed a rotation still finds its peer.
    next_public_key: str | None = None
    previous_public_key: str | None = None

    @property
    def is_master(self) -> bool:
        return self.role == "master"

    @property
    def candidate_keys(self) -> tuple[str, ...]:
        """Every key this node may be using: the listed one first."""
        keys = [self.public_key, self.next_public_key, self.previous_public_key]
        return tuple(dict.fromkeys(k for k in keys if k is not None))


class Cluster(NamedTuple):
    path: str
    name: str
    interface: str
    network: IPNetwork
    listen_port: int
    protected_ports: tuple[int, ...]
    ssh_port: int
    admin_sources: tuple[IPNetwork, ...]
    nodelist: tuple[Path, ...]
    mtu: int | None
    persistent_keepalive: int
    rekey_interval_days: int
    rekey_timeout: int
    rekey_ssh_key: str | None
    nodes: tuple[Node, ...] = ()

    @property
    def master(self) -> Node:
        return next(node for node in self.nodes if node.is_master)

    @property
    def workers(self) -> tuple[Node, ...]:
        return tuple(node for node in self.nodes if not node.is_master)

    def node(self, name: str) -> Node:
        """Return the node called `name`, or raise IdentityError."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise IdentityError(f"{self.path}: no node named {name!r}")

    def peers_of(self, node: Node) -> tuple[Node, ...]:
        """Return the peers of `node` in the star: master <-> every worker."""
        if node.is_master:
            return self.workers
        return (self.master,)


def load(path: Path, require_keys: bool = True) -> Cluster:
    """Read and validate the cluster file at `path`.

    With `require_keys` false (a draft for `netsetup bootstrap`) a node may
    lack its public key; it is then the empty string.
    """
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(where, f"cannot read: {exc.strerror}") from exc
    return parse(decode(raw, where), where, require_keys)


def decode(raw: bytes | str, where: str) -> dict[str, Any]:
    """Return the TOML document in `raw`, not yet validated.

    tomli rather than the standard library's tomllib (the same parser):
    its compiled wheels read a 1000-node file in a third of the time.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise SpecError(where, "not UTF-8 text") from exc
    try:
        return tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        raise SpecError(where, f"not valid TOML: {exc}") from exc


def parse(data: dict[str, Any], where: str, require_keys: bool = True) -> Cluster:
    """Validate a decoded cluster file; `where` names it in errors."""
    _reject_unknown(data, {"cluster", "nodes"}, where, None, "")
    cluster = data.get("cluster")
    if not isinstance(cluster, dict):
        raise SpecError(where, "missing [cluster] table", field="cluster")
    _reject_unknown(cluster, CLUSTER_KEYS, where, None, "cluster.")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise SpecError(where, "missing [[nodes]] entries", field="nodes")

    fields = _cluster_fields(cluster, where)
    nodes = tuple(
        _node(raw, index, fields["network"], where, require_keys)
        for index, raw in enumerate(raw_nodes)
    )
    _check_nodes(nodes, where)
    return Cluster(path=where, nodes=nodes, **fields)


def _cluster_fields(cluster: dict[str, Any], where: str) -> dict[str, Any]:
    def get(key: str, kind: type, default: Any = None) -> Any:
        return _typed(cluster, key, kind, default, where, None, "cluster.")

    name = get("name", str)
    if name is None or not NAME_RE.match(name):
        raise SpecError(where, "must be a short name ([A-Za-z0-9._-])",
                        field="cluster.name")

    interface = get("interface", str)
    if interface is None:
        raise SpecError(where, "is required", field="cluster.interface")
    if len(interface.encode()) >= IFNAMSIZ or not INTERFACE_RE.match(interface):
        raise SpecError(
            where, f"{interface!r} is not a valid interface name "
            f"(1-{IFNAMSIZ - 1} bytes of A-Z a-z 0-9 _ . -)",
            field="cluster.interface",
        )

    network_text = get("network", str)
    if network_text is None:
        raise SpecError(where, "is required", field="cluster.network")
    try:
        network = ipaddress.ip_network(network_text, strict=True)
    except ValueError as exc:
        raise SpecError(where, str(exc), field="cluster.network") from exc

    ssh_port = _port(get("ssh_port", int, 22), where, None, "cluster.ssh_port")
    ports = get("protected_ports", list, list(dict.fromkeys([ssh_port, 5001])))
    protected = tuple(
        _port(port, where, None, f"cluster.protected_ports[{i}]")
        for i, port in enumerate(ports)
    )
    if not protected:
        raise SpecError(where, "must not be empty", field="cluster.protected_ports")
    if len(set(protected)) != len(protected):
        raise SpecError(where, "lists a port twice", field="cluster.protected_ports")

    return {
        "name": name,
        "interface": interface,
        "network": network,
        "listen_port": _port(get("listen_port", int, 51820), where, None,
                             "cluster.listen_port"),
        "protected_ports": protected,
        "ssh_port": ssh_port,
        "admin_sources": _admin_sources(get("admin_sources", list, []), where),
        "nodelist": _nodelist(cluster.get("nodelist", DEFAULT_NODELIST), where),
        "mtu": _bounded(get("mtu", int), 1280, 9000, where, "cluster.mtu"),
        "persistent_keepalive": _bounded(
            get("persistent_keepalive", int, 25), 0, 65535, where,
            "cluster.persistent_keepalive"),
        "rekey_interval_days": _bounded(
            get("rekey_interval_days", int, 7), 1, 3650, where,
            "cluster.rekey_interval_days"),
        "rekey_timeout": _bounded(
            get("rekey_timeout", int, 120), 5, 3600, where,
            "cluster.rekey_timeout"),
        "rekey_ssh_key": _ssh_key(get("rekey_ssh_key", str), where),
    }


def _node(raw: Any, index: int, network: IPNetwork, where: str,
          require_keys: bool = True) -> Node:
    # Runs once per node, a thousand times on a big master: no closure per
    # node, no work for a key that is absent. The checks and their order
    # are what errors depend on.
    if not isinstance(raw, dict):
        raise SpecError(where, "must be a table", field=f"nodes[{index}]")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise SpecError(where, "must be a host name ([A-Za-z0-9._-], "
                        "starting with a letter or digit)",
                        field=f"nodes[{index}].name")
    _reject_unknown(raw, NODE_KEYS, where, name, "")

    role = _typed(raw, "role", str, "worker", where, name, "")
    if role not in ROLES:
        raise SpecError(where, f"{role!r} is not one of {', '.join(ROLES)}",
                        node=name, field="role")
    text = _typed(raw, "address", str, None, where, name, "")
    address = _address(text, where, name, "address")
    text = _typed(raw, "vpn_address", str, None, where, name, "")
    vpn_address = _address(text, where, name, "vpn_address")
    _check_vpn_address(vpn_address, network, where, name)
    if address in network:
        # The tunnel's own packets to this node would be routed into it.
        raise SpecError(where, f"{address} is inside the VPN network {network}; "
                        "a node's LAN address must be outside it",
                        node=name, field="address")
    if not require_keys and "public_key" not in raw:
        public_key = ""
    else:
        text = _typed(raw, "public_key", str, None, where, name, "")
        public_key = _public_key(text, where, name)
    optional_keys: dict[str, str] = {}
    for key in ("next_public_key", "previous_public_key"):
        if key in raw:
            text = _typed(raw, key, str, None, where, name, "")
            optional_keys[key] = _public_key(text, where, name, key)
    if "next_public_key" in optional_keys and role != "master":
        raise SpecError(where, "only the master announces its next key",
                        node=name, field="next_public_key")
    hostnames = _typed(raw, "hostnames", list, [], where, name, "")
    for i, host in enumerate(hostnames):
        if not isinstance(host, str) or not NAME_RE.match(host):
            raise SpecError(where, f"{host!r} is not a host name",
                            node=name, field=f"hostnames[{i}]")
    return Node(name, role, address, vpn_address, public_key, tuple(hostnames),
                **optional_keys)


def _check_nodes(nodes: tuple[Node, ...], where: str) -> None:
    masters = [node.name for node in nodes if node.is_master]
    if len(masters) != 1:
        raise SpecError(where, f"need exactly one master, found {len(masters)}"
                        + (f" ({', '.join(masters)})" if masters else ""),
                        field="role")
    if not _may_share(nodes):
        return
    seen: dict[tuple[str, str | IPAddress], tuple[int, str]] = {}
    for index, node in enumerate(nodes):
        names = [("name", "name", node.name.lower())]
        names += [("name", "name", host.lower()) for host in node.hostnames]
        values: list[tuple[str, str, str | IPAddress]] = names + [
            ("address", "address", node.address),
            ("address", "vpn_address", node.vpn_address),
        ]
        if node.public_key:
            values.append(("public_key", "public_key", node.public_key))
        for kind, label, value in values:
            other = seen.get((kind, value))
            if other is not None and other[0] != index:
                raise SpecError(where, f"{value} is also used by node {other[1]!r}",
                                node=node.name, field=label)
            seen[(kind, value)] = (index, node.name)


def _may_share(nodes: tuple[Node, ...]) -> bool:
    """Tell whether two nodes might share a name, address or key.

    A quick screen for `_check_nodes`, whose exact search, which names the
    first clash, hashes every ipaddress object in Python. An address is
    screened by its integer alone: equal addresses have equal integers, so
    a clash is never missed; a false alarm (0.0.0.1 and ::1, or two scope
    ids) only sends the file to the exact search.
    """
    names: list[str] = []
    numbers: list[int] = []
    keys: list[str] = []
    for node in nodes:
        # A node may repeat its own value; only a value two nodes use counts.
        if node.hostnames:
            names += {name.lower() for name in (node.name, *node.hostnames)}
        else:
            names.append(node.name.lower())
        address, vpn_address = int(node.address), int(node.vpn_address)
        numbers.append(address)
        if vpn_address != address:
            numbers.append(vpn_address)
        if node.public_key:
            keys.append(node.public_key)
    return any(len(set(values)) != len(values)
               for values in (names, numbers, keys))


def _check_vpn_address(
    address: IPAddress, network: IPNetwork, where: str, node: str
) -> None:
    if address.version != network.version or address not in network:
        raise SpecError(where, f"{address} is outside network {network}",
                        node=node, field="vpn_address")
    reserved = {network.network_address}
    if network.version == 4 and network.prefixlen < 31:
        reserved.add(network.broadcast_address)
    if address in reserved:
        raise SpecError(where, f"{address} is the network or broadcast address "
                        f"of {network}", node=node, field="vpn_address")


def _reject_unknown(
    table: dict[str, Any], known: set[str], where: str, node: str | None,
    prefix: str,
) -> None:
    if table.keys() <= known:
        return
    unknown = sorted(set(table) - known)
    if unknown:
        raise SpecError(where, f"unknown key (known: {', '.join(sorted(known))})",
                        node=node, field=prefix + unknown[0])


def _typed(
    table: dict[str, Any], key: str, kind: type, default: Any, where: str,
    node: str | None, prefix: str,
) -> Any:
    if key not in table:
        return default
    value = table[key]
    # NOTE: bool is a subclass of int; `port = true` must not mean 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SpecError(where, f"must be {_kind_name(kind)}, got {value!r}",
                        node=node, field=prefix + key)
    return value


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "an integer", list: "a list"}.get(
        kind, kind.__name__)


def _port(value: Any, where: str, node: str | None, label: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise SpecError(where, f"must be an integer, got {value!r}",
                        node=node, field=label)
    if not 1 <= value <= 65535:
        raise SpecError(where, f"{value} is not a port (1-65535)",
                        node=node, field=label)
    return value


def _bounded(
    value: int | None, low: int, high: int, where: str, label: str
) -> int | None:
    if value is not None and not low <= value <= high:
        raise SpecError(where, f"{value} is out of range ({low}-{high})",
                        field=label)
    return value


def _address(value: str | None, where: str, node: str, label: str) -> IPAddress:
    if value is None:
        raise SpecError(where, "is required", node=node, field=label)
    try:
        address = parse_address(value)
    except ValueError as exc:
        # nft would try to resolve a host name via DNS; allow addresses only.
        raise SpecError(where, f"{value!r} is not an IP address",
                        node=node, field=label) from exc
    if address.is_unspecified or address.is_multicast:
        raise SpecError(where, f"{value} cannot be a node address",
                        node=node, field=label)
    return address


def parse_address(text: str) -> IPAddress:
    """Return the address `text` spells, exactly as ipaddress.ip_address would.

    socket.inet_pton parses in C, ipaddress in Python at a few times the
    cost: at a thousand nodes that was most of `parse`. Text inet_pton
    refuses (scope ids such as "fe80::1%eth0", and every error) goes on
    to ipaddress, so what it accepts and its error message stay the same.
    That needs a libc no laxer than ipaddress (glibc refuses leading zeros
    and short forms too); tests/unit/test_spec_addresses.py holds the two
    to the same answers.
    """
    try:
        # An IPv6 address has a colon and an IPv4 one never does, so one
        # call suffices, and each family rejects the other's text anyway.
        if ":" in text:
            packed = socket.inet_pton(socket.AF_INET6, text)
            return ipaddress.IPv6Address(packed)
        return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):  # ValueError: a NUL or a lone surrogate
        pass
    return ipaddress.ip_address(text)


def _public_key(
    value: str | None, where: str, node: str, field: str = "public_key"
) -> str:
    if value is None:
        raise SpecError(where, "is required (run `netsetup keygen` on the node)",
                        node=node, field=field)
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SpecError(where, "is not base64", node=node, field=field) from exc
    if len(decoded) != 32:
        raise SpecError(where, f"decodes to {len(decoded)} bytes, a WireGuard "
                        "key has 32", node=node, field=field)
    return base64.b64encode(decoded).decode()  # the spelling `wg` reports


def _ssh_key(value: str | None, where: str) -> str | None:
    if value is not None and not SSH_KEY_RE.match(value):
        raise SpecError(where, "must be one OpenSSH ed25519 public key line "
                        "(ssh-ed25519 AAAA... comment)", field="cluster.rekey_ssh_key")
    return value


def _admin_sources(values: list[Any], where: str) -> tuple[IPNetwork, ...]:
    sources = []
    for i, value in enumerate(values):
        label = f"cluster.admin_sources[{i}]"
        if not isinstance(value, str):
            raise SpecError(where, f"must be a string, got {value!r}", field=label)
        try:
            sources.append(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise SpecError(where, f"{value!r} is not an address or network",
                            field=label) from exc
    return tuple(sources)


def _nodelist(value: Any, where: str) -> tuple[Path, ...]:
    paths = [value] if isinstance(value, str) else value
    if not isinstance(paths, list):
        raise SpecError(where, "must be a path or a list of paths",
                        field="cluster.nodelist")
    result = []
    for i, path in enumerate(paths):
        if not isinstance(path, str) or not path.startswith("/"):
            raise SpecError(where, f"{path!r} is not an absolute path",
                            field=f"cluster.nodelist[{i}]")
        result.append(Path(path))
    return tuple(result)


def identify(
    cluster: Cluster, local_addresses: Iterable[IPAddress], name: str | None
) -> Node:
    """Return the node this machine is: by `name`, else by its addresses."""
    if name is not None:
        return cluster.node(name)
    local = set(local_addresses)
    matches = [
        node for node in cluster.nodes
        if node.address in local or node.vpn_address in local
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise IdentityError(
            f"{cluster.path}: none of this machine's addresses belongs to a "
            "node; pass --node NAME")
    names = ", ".join(node.name for node in matches)
    raise IdentityError(
        f"{cluster.path}: this machine's addresses match several nodes "
        f"({names}); pass --node NAME")

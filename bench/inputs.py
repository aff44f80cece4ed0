"""What both sides are given: cluster files, wg configs, rulesets, scripts.

The baselines do the same work as netsetup with the standard tools, from
the same cluster file: the wg config and the nftables document are derived
from netsetup's own parse of it (`netsetup.spec`) and netsetup's own
rendering of the table (`netsetup.firewall.render`), so both sides load
the very same peers and rules.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from pathlib import Path

from netsetup import firewall, keys, spec
from netsetup.lab import INTERFACE

VPN_NETWORK = ipaddress.ip_network("10.77.0.0/16")
MASTER_LAN = "192.0.2.10"
# Worker LAN addresses: three IPv4 documentation /24s, then IPv6.
LAN_BLOCKS = (("192.0.2.", 11, 254), ("198.51.100.", 1, 254),
              ("203.0.113.", 1, 254))


def worker_lan_address(index: int) -> str:
    """Return the LAN address of worker `index` (0-based), unique up to 2**16."""
    for prefix, first, last in LAN_BLOCKS:
        count = last - first + 1
        if index < count:
            return f"{prefix}{first + index}"
        index -= count
    return f"2001:db8::1:{index + 1:x}"


def worker_vpn_address(index: int) -> str:
    return str(VPN_NETWORK[2 + index])  # the master has .0.1


@dataclass(frozen=True)
class GeneratedCluster:
    text: str
    master_private_key: str


def big_cluster(workers: int, nodelist: Path,
                interface: str = INTERFACE) -> GeneratedCluster:
    """Return a valid cluster file with one master and `workers` workers."""
    master_key = keys.generate_private_key()
    lines = [
        "[cluster]", 'name = "bench"', f'interface = "{interface}"',
        f'network = "{VPN_NETWORK}"', "listen_port = 51820",
        "protected_ports = [22, 5001]", f'nodelist = "{nodelist}"', "",
        *_node("master", "master", MASTER_LAN, str(VPN_NETWORK[1]),
               keys.public_key(master_key)),
    ]
    for index in range(workers):
        public = keys.public_key(keys.generate_private_key())
        lines += _node(f"worker-{index + 1}", "worker", worker_lan_address(index),
                       worker_vpn_address(index), public)
    return GeneratedCluster("\n".join(lines) + "\n", master_key)


def _node(name: str, role: str, address: str, vpn: str, public: str) -> list[str]:
    return ["[[nodes]]", f'name = "{name}"', f'role = "{role}"',
            f'address = "{address}"', f'vpn_address = "{vpn}"',
            f'public_key = "{public}"', ""]


def wg_config(cluster: spec.Cluster, node: spec.Node, private_key: str) -> str:
    """Return a `wg setconf` file with the node's key, port and peers."""
    lines = ["[Interface]", f"PrivateKey = {private_key}",
             f"ListenPort = {cluster.listen_port}"]
    for peer in cluster.peers_of(node):
        host = (f"[{peer.address}]" if peer.address.version == 6
                else str(peer.address))
        lines += ["", "[Peer]", f"PublicKey = {peer.public_key}",
                  f"Endpoint = {host}:{cluster.listen_port}",
                  f"AllowedIPs = {ipaddress.ip_network(peer.vpn_address)}"]
        if cluster.persistent_keepalive:
            lines.append(f"PersistentKeepalive = {cluster.persistent_keepalive}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Baseline:
    """Files and values the baseline scripts use for one node."""

    interface: str
    conf: Path  # wg config
    ruleset: Path  # `table` + `delete table` + netsetup's rendering
    address: str  # VPN address/prefix
    mtu: int
    log: Path  # wireguard-go's output
    kernel: bool  # the kernel has WireGuard: `ip link add`, not wireguard-go

    def converge(self) -> str:
        """Cold converge, in netsetup's order: firewall first, link up last."""
        q = self._quoted()
        return "\n".join([
            "set -e",
            f"nft -f {q['ruleset']}",
            self.start_device(),
            f"wg setconf {q['interface']} {q['conf']}",
            f"ip link set dev {q['interface']} mtu {self.mtu}",
            f"ip addr add {q['address']} dev {q['interface']}",
            f"ip link set dev {q['interface']} up",
        ])

    def start_device(self) -> str:
        """Create the device only (B5 sets the peers in a separate step)."""
        q = self._quoted()
        if self.kernel:
            return f"ip link add dev {q['interface']} type wireguard"
        return f"wireguard-go {q['interface']} >>{q['log']} 2>&1"

    def setconf(self) -> list[str]:
        return ["wg", "setconf", self.interface, str(self.conf)]

    def resync(self) -> str:
        """The no-op re-apply: sync the same config, reload the same table."""
        q = self._quoted()
        return (f"set -e\nwg syncconf {q['interface']} {q['conf']}\n"
                f"nft -f {q['ruleset']}")

    def status(self) -> str:
        q = self._quoted()
        return (f"set -e\nwg show {q['interface']} dump\n"
                "nft list table inet netsetup")

    def teardown(self) -> str:
        return teardown_script(self.interface)

    def _quoted(self) -> dict[str, str]:
        return {key: shlex.quote(str(value)) for key, value in vars(self).items()}


def teardown_script(interface: str) -> str:
    """Remove the link (wireguard-go then exits) and the table, if present."""
    return (f"ip link del dev {shlex.quote(interface)} 2>/dev/null\n"
            "nft delete table inet netsetup 2>/dev/null\ntrue")


def device_words(kernel: bool) -> str:
    """How the baseline creates the device, for the reports."""
    return ("`ip link add IF type wireguard`" if kernel
            else "`wireguard-go IF` (detaches)")


def write_baseline(directory: Path, cluster: spec.Cluster, node: spec.Node,
                   private_key: str, mtu: int, kernel: bool) -> Baseline:
    """Write the baseline's files for `node` into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "wg.conf"
    conf.write_text(wg_config(cluster, node, private_key))
    conf.chmod(0o600)
    ruleset = directory / "ruleset.nft"
    ruleset.write_text(firewall.replace_text(firewall.render(cluster, node).text))
    return Baseline(
        interface=cluster.interface, conf=conf, ruleset=ruleset,
        address=f"{node.vpn_address}/{cluster.network.prefixlen}", mtu=mtu,
        log=directory / "wireguard-go.log", kernel=kernel)

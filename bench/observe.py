"""Read a node's state with the standard tools, independently of netsetup.

Used to check that the baselines build the same state as netsetup, that a
no-op apply writes nothing, and how many rules the table holds.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.nodes import Node

TABLE = ["inet", "netsetup"]


def table_handle(node: Node) -> int | None:
    """Return the kernel handle of table inet netsetup, None if absent."""
    result = node.run(["nft", "-j", "list", "table", *TABLE], check=False)
    if result.returncode != 0:
        return None
    for item in json.loads(result.stdout)["nftables"]:
        if "table" in item:
            return int(item["table"]["handle"])
    return None


def rule_count(node: Node) -> int:
    """Count the rules in the table's chains (lines with `# handle`)."""
    listing = node.run(["nft", "-a", "list", "table", *TABLE]).stdout
    count = 0
    in_chain = False
    for line in listing.splitlines():
        text = line.strip()
        if text.startswith("chain "):
            in_chain = True  # its own line carries the chain's handle
        elif text == "}":
            in_chain = False
        elif in_chain and "# handle" in text:
            count += 1
    return count


def set_elements(node: Node) -> dict[str, int]:
    """Return the number of elements in each set of the table."""
    result = node.run(["nft", "-j", "list", "table", *TABLE])
    sizes = {}
    for item in json.loads(result.stdout)["nftables"]:
        if "set" in item:
            sizes[item["set"]["name"]] = len(item["set"].get("elem", []))
    return sizes


def wg_dump(node: Node) -> list[list[str]]:
    """Return `wg show IF dump` rows; the first describes the interface."""
    result = node.run(["wg", "show", node.interface, "dump"])
    return [line.split("\t") for line in result.stdout.splitlines()]


def handshakes(node: Node) -> dict[str, int]:
    """Return each peer's latest-handshake time (0: none yet)."""
    return {row[0]: int(row[4]) for row in wg_dump(node)[1:]}


def mtimes(directory: Path) -> dict[str, int]:
    """Return the mtime of `directory` and of everything under it."""
    found = {str(directory): directory.stat().st_mtime_ns}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            found[path] = os.lstat(path).st_mtime_ns
    return found


@dataclass(frozen=True)
class Configured:
    """What a converge sets, without counters or handshake times."""

    device: tuple[str, ...]  # private key, public key, port, fwmark
    peers: tuple[tuple[str, ...], ...]  # key, psk, endpoint, allowed, keepalive
    link: dict[str, Any]  # mtu, up, addresses (no link-local)
    table: str  # `nft -s list table inet netsetup`

    def differences(self, other: Configured) -> list[str]:
        return [name for name in ("device", "peers", "link", "table")
                if getattr(self, name) != getattr(other, name)]


def configured(node: Node) -> Configured:
    """Return the node's configured state, for comparing two converges."""
    rows = wg_dump(node)
    peers = tuple(sorted((r[0], r[1], r[2], r[3], r[7]) for r in rows[1:]))
    (link,) = json.loads(node.run(
        ["ip", "-j", "addr", "show", "dev", node.interface]).stdout)
    addresses = sorted(
        f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
        if not ipaddress.ip_address(a["local"]).is_link_local)
    table = node.run(["nft", "-s", "list", "table", *TABLE]).stdout
    return Configured(
        device=tuple(rows[0]), peers=peers,
        link={"mtu": link["mtu"], "up": "UP" in link["flags"],
              "addresses": addresses},
        table=table)

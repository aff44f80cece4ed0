"""Readers of a lab node's state, for assertions (independent of netsetup)."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

from netsetup.lab import ECHO_PORT, INTERFACE, SERVICE_PORT, UNMANAGED_PORT, Lab


def table_handle(lab: Lab, node: str) -> int | None:
    """Return the kernel handle of `inet netsetup` in `node`, None if absent."""
    result = lab.run(node, ["nft", "-j", "list", "table", "inet", "netsetup"],
                     check=False)
    if result.returncode != 0:
        return None
    for item in json.loads(result.stdout)["nftables"]:
        if "table" in item:
            return int(item["table"]["handle"])
    return None


def load_table(lab: Lab, node: str, text: str) -> None:
    """Swap `text` in as `inet netsetup` with nft, in one transaction."""
    document = f"table inet netsetup\ndelete table inet netsetup\n{text}"
    subprocess.run(lab._nsenter(node) + ["nft", "-f", "-"], input=document,
                   text=True, check=True)


def link_index(lab: Lab, node: str) -> int | None:
    result = lab.run(node, ["ip", "-j", "link", "show", INTERFACE], check=False)
    if result.returncode != 0:
        return None
    return int(json.loads(result.stdout)[0]["ifindex"])


def link_mtu(lab: Lab, node: str) -> int:
    result = lab.run(node, ["ip", "-j", "link", "show", INTERFACE])
    return int(json.loads(result.stdout)[0]["mtu"])


def wg_dump(lab: Lab, node: str) -> list[list[str]]:
    """Return `wg show INTERFACE dump` rows (the first is the interface)."""
    result = lab.run(node, ["wg", "show", INTERFACE, "dump"])
    return [line.split("\t") for line in result.stdout.splitlines()]


def handshakes(lab: Lab, node: str) -> dict[str, int]:
    return {row[0]: int(row[4]) for row in wg_dump(lab, node)[1:]}


def cluster_text(lab: Lab, node: str) -> str:
    return (lab.node_dir(node) / "cluster.toml").read_text()


@contextmanager
def cluster_file(lab: Lab, nodes: list[str], text: str) -> Iterator[None]:
    """Put `text` in place of the cluster file on `nodes`, then restore it."""
    saved = {node: cluster_text(lab, node) for node in nodes}
    try:
        for node in nodes:
            (lab.node_dir(node) / "cluster.toml").write_text(text)
        yield
    finally:
        for node, old in saved.items():
            (lab.node_dir(node) / "cluster.toml").write_text(old)


def power_off(lab: Lab, node: str) -> None:
    """Like a power cut: every process of the node dies, /run is emptied,
    and what the kernel held (the tunnel, the table) is gone."""
    holder = lab.holder(node)
    pids = lab.run(node, ["ip", "netns", "pids", lab.netns(node)]).stdout.split()
    for pid in pids:
        if int(pid) != holder:
            subprocess.run(["kill", "-9", pid], check=False)
    lab.run(node, ["ip", "link", "del", INTERFACE], check=False)
    lab.run(node, ["nft", "delete", "table", "inet", "netsetup"], check=False)
    run_dir = lab.node_dir(node) / "run"
    for path in run_dir.iterdir():
        if path.is_file():
            path.unlink()


def start_services(lab: Lab, node: str) -> None:
    """Start the worker's sshd and service again, as its boot would."""
    lab.start_sshd(node, None)
    lab.spawn(node, [sys.executable, "-m", "netsetup.labtools", "serve",
                     str(SERVICE_PORT), str(UNMANAGED_PORT), str(ECHO_PORT)])

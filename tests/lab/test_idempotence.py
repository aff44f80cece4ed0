"""A converged node gets an empty plan, and apply on it touches nothing."""

from __future__ import annotations

import json
import os

import pytest

from helpers import handshakes, link_index, table_handle
from netsetup.lab import CLUSTER_NODES, Lab


@pytest.mark.parametrize("node", [n.name for n in CLUSTER_NODES])
def test_converged_node_has_empty_plan(lab: Lab, node: str) -> None:
    result = lab.netsetup(node, "plan", "--json", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["changes"] == []


@pytest.mark.parametrize("node", [n.name for n in CLUSTER_NODES])
def test_second_apply_touches_nothing(lab: Lab, node: str) -> None:
    nodelist = lab.host_path(node, lab.nodelist_path)
    before = {
        "handshakes": handshakes(lab, node),
        "table": table_handle(lab, node),
        "link": link_index(lab, node),
        "nodelist": nodelist.stat().st_mtime_ns if nodelist.exists() else None,
    }
    result = lab.netsetup(node, "apply")
    after = {
        "handshakes": handshakes(lab, node),
        "table": table_handle(lab, node),
        "link": link_index(lab, node),
        "nodelist": nodelist.stat().st_mtime_ns if nodelist.exists() else None,
    }
    assert after == before
    assert "nothing to do" in result.stderr
    assert before["table"] is not None and before["handshakes"]


def test_changed_firewall_plan_exits_1(lab: Lab) -> None:
    lab.run("worker-1", ["nft", "add", "rule", "inet", "netsetup", "input",
                         "tcp", "dport", "9", "accept"])
    try:
        result = lab.netsetup("worker-1", "plan", check=False)
        assert result.returncode == 1
        assert "edited since netsetup loaded it" in result.stdout
    finally:
        lab.netsetup("worker-1", "apply")
    assert lab.netsetup("worker-1", "plan", check=False).returncode == 0


def test_nodelist_keeps_owner_and_mode(lab: Lab) -> None:
    path = lab.host_path("master", lab.nodelist_path)
    stat = path.stat()
    assert (stat.st_mode & 0o777, stat.st_uid) == (0o644, 0)
    assert b"10.77.0.11\tworker-1" in path.read_bytes()
    assert os.listdir(path.parent) == ["nodelist.txt"]

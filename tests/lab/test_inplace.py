"""Changes to MTU, keepalive and listen port are applied without recreating
the interface, and a broken cluster file changes nothing."""

from __future__ import annotations

import re

from helpers import (cluster_file, cluster_text, link_index, link_mtu,
                     table_handle, wg_dump)
from netsetup.lab import CLUSTER_NODES, INTERFACE, NODELIST_TEXT, Lab


def test_mtu_and_keepalive_change_in_place(lab: Lab) -> None:
    index = link_index(lab, "master")
    assert link_mtu(lab, "master") == 1420  # derived: veth 1500 - 80
    text = cluster_text(lab, "master").replace(
        "[cluster]\n", "[cluster]\nmtu = 1380\npersistent_keepalive = 7\n", 1)
    with cluster_file(lab, ["master"], text):
        plan = lab.netsetup("master", "plan", check=False)
        assert plan.returncode == 1
        assert "MTU 1380" in plan.stdout and "update peer" in plan.stdout
        lab.netsetup("master", "apply")
        assert link_index(lab, "master") == index
        assert link_mtu(lab, "master") == 1380
        assert {row[7] for row in wg_dump(lab, "master")[1:]} == {"7"}
    lab.netsetup("master", "apply")
    assert link_index(lab, "master") == index
    assert link_mtu(lab, "master") == 1420


def test_listen_port_changes_everywhere_without_new_interfaces(lab: Lab) -> None:
    names = [n.name for n in CLUSTER_NODES]
    indexes = {node: link_index(lab, node) for node in names}
    text = re.sub(r"listen_port = \d+", "listen_port = 51999",
                  cluster_text(lab, "master"))
    try:
        with cluster_file(lab, names, text):
            for node in names:
                lab.netsetup(node, "apply")
            assert wg_dump(lab, "worker-1")[0][2] == "51999"
            assert lab.ssh("master", "10.77.0.11")
    finally:
        for node in names:
            lab.netsetup(node, "apply")
    assert {node: link_index(lab, node) for node in names} == indexes
    assert lab.ssh("master", "10.77.0.12")


def test_bad_cluster_file_exits_2_and_changes_nothing(lab: Lab) -> None:
    handle = table_handle(lab, "worker-1")
    index = link_index(lab, "worker-1")
    text = cluster_text(lab, "worker-1").replace(
        'vpn_address = "10.77.0.11"', 'vpn_address = "10.78.0.11"')
    with cluster_file(lab, ["worker-1"], text):
        result = lab.netsetup("worker-1", "apply", check=False)
    assert result.returncode == 2
    message = result.stderr.strip()
    assert "\n" not in message
    assert "cluster.toml" in message and "worker-1" in message
    assert "vpn_address" in message
    assert (table_handle(lab, "worker-1"), link_index(lab, "worker-1")) == (
        handle, index)


def test_vpn_address_change_reaches_the_node_list_and_down_still_restores(
    lab: Lab,
) -> None:
    names = [n.name for n in CLUSTER_NODES]
    nodelist = lab.host_path("master", lab.nodelist_path)
    converged = nodelist.read_bytes()
    assert b"10.77.0.11\tworker-1" in converged
    text = cluster_text(lab, "master").replace(
        'vpn_address = "10.77.0.11"', 'vpn_address = "10.77.0.21"', 1)
    try:
        with cluster_file(lab, names, text):
            for node in names:
                lab.netsetup(node, "apply")
            moved = nodelist.read_bytes()
            # The old VPN address does not stay behind: the line is the
            # original's, rewritten with the new address.
            assert moved == converged.replace(b"10.77.0.11", b"10.77.0.21")
            assert lab.ssh("master", "10.77.0.21")
            assert lab.netsetup("master", "plan", check=False).returncode == 0
    finally:
        for node in names:
            lab.netsetup(node, "apply")
    assert nodelist.read_bytes() == converged
    lab.netsetup("master", "down")
    try:
        assert nodelist.read_bytes() == NODELIST_TEXT
    finally:
        lab.netsetup("master", "apply")
    assert nodelist.read_bytes() == converged


def test_wanted_address_behind_a_stray_primary_survives_its_removal(
    lab: Lab,
) -> None:
    # A stray address added first makes the wanted one a secondary, which
    # the kernel deletes together with the stray primary.
    node, wanted = "worker-2", "10.77.0.12/24"
    lab.run(node, ["ip", "addr", "del", wanted, "dev", INTERFACE])
    lab.run(node, ["ip", "addr", "add", "10.77.0.50/24", "dev", INTERFACE])
    lab.run(node, ["ip", "addr", "add", wanted, "dev", INTERFACE])
    assert "secondary" in lab.run(node, ["ip", "addr", "show", "dev",
                                         INTERFACE]).stdout
    result = lab.netsetup(node, "apply")
    assert "add address 10.77.0.12/24 again" in result.stderr
    shown = lab.run(node, ["ip", "-4", "-o", "addr", "show", "dev", INTERFACE])
    assert [line.split()[3] for line in shown.stdout.splitlines()] == [wanted]
    assert lab.netsetup(node, "plan", check=False).returncode == 0
    assert lab.ssh("master", "10.77.0.12")

"""`down` removes what netsetup made and restores the node list exactly."""

from __future__ import annotations

from helpers import link_index, table_handle
from netsetup.lab import NODELIST_TEXT, SERVICE_PORT, Lab


def _wireguard_go_pids(lab: Lab, node: str) -> list[int]:
    result = lab.run(node, ["ip", "netns", "pids", lab.netns(node)], check=False)
    pids = []
    for pid in result.stdout.split():
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if comm.read().strip() == "wireguard-go":
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def test_down_restores_nodelist_byte_for_byte_and_removes_all(lab: Lab) -> None:
    nodelist = lab.host_path("master", lab.nodelist_path)
    assert nodelist.read_bytes() != NODELIST_TEXT  # rewritten by apply
    key = lab.node_dir("master") / "etc" / "wg-mascot.key"
    key_before = key.read_bytes()
    try:
        lab.netsetup("master", "down")
        assert nodelist.read_bytes() == NODELIST_TEXT
        assert link_index(lab, "master") is None
        assert table_handle(lab, "master") is None
        assert key.read_bytes() == key_before
        status = lab.netsetup("master", "status", check=False)
        assert status.returncode == 1
        # A second down has nothing left to do and still succeeds.
        lab.netsetup("master", "down")
        assert nodelist.read_bytes() == NODELIST_TEXT
    finally:
        lab.netsetup("master", "apply")


def test_down_on_worker_stops_wireguard_go_and_opens_nothing_else(
    lab: Lab,
) -> None:
    try:
        lab.netsetup("worker-2", "down")
        assert link_index(lab, "worker-2") is None
        assert table_handle(lab, "worker-2") is None
        if lab.backend != "kernel":
            assert _wireguard_go_pids(lab, "worker-2") == []
    finally:
        lab.netsetup("worker-2", "apply")
    assert lab.probe("outsider", [f"192.0.2.12:{SERVICE_PORT}"]) == [False]

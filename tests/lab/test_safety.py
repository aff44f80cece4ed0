"""Crash safety, the node lock and the lockout guard, on a live lab."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import cluster_file, cluster_text, load_table, table_handle
from netsetup.lab import NODELIST_TEXT, SERVICE_PORT, Lab
from test_atomicity import _hammer, _result

PROTECTED = ["192.0.2.11:22", f"192.0.2.11:{SERVICE_PORT}",
             "10.77.0.11:22", f"10.77.0.11:{SERVICE_PORT}"]


def _variant(lab: Lab, node: str) -> str:
    """The cluster file with changes that touch the table, link and peers."""
    return cluster_text(lab, node).replace(
        "[cluster]\n",
        '[cluster]\nadmin_sources = ["198.51.100.0/24"]\nmtu = 1400\n'
        "persistent_keepalive = 9\n", 1)


def _break_down(lab: Lab, node: str, old_table: str) -> None:
    """Put back the same starting point: old table, no link, original list.

    From there apply has every step to do (table, interface, peers,
    addresses, node list) while the old, closed table stays loaded.
    """
    lab.run(node, ["ip", "link", "del", "wg-mascot"], check=False)
    load_table(lab, node, old_table)
    # As after a reboot, and with no cache: every run takes the same path
    # (the table is always reloaded, every cache written).
    for name in ("run/firewall.sha256", "run/ruleset.cache",
                 "etc/public-keys", "etc/cluster.applied.toml"):
        (lab.node_dir(node) / name).unlink(missing_ok=True)
    if node == "master":
        lab.host_path(node, lab.nodelist_path).write_bytes(NODELIST_TEXT)


def _points(lab: Lab, node: str, old_table: str) -> list[str]:
    trace = lab.node_dir(node) / "run" / "fault-trace"
    trace.unlink(missing_ok=True)
    env = dict(lab.env(), NETSETUP_FAULT_TRACE=str(lab.shared / "run" / "fault-trace"))
    _break_down(lab, node, old_table)
    lab.netsetup(node, "apply", env=env)
    return trace.read_text().splitlines()


@pytest.mark.parametrize("node", ["worker-1", "master"])
def test_apply_killed_at_every_point_stays_closed_and_converges_next_time(
    lab: Lab, node: str,
) -> None:
    text = _variant(lab, node)
    old_table = (lab.node_dir(node) / "etc" / "firewall.nft").read_text()
    # Outsider floods the worker's 5001 for the whole test.
    hammer = _hammer(lab, 600) if node == "worker-1" else None
    try:
        with cluster_file(lab, [node], text):
            points = _points(lab, node, old_table)
            # worker: table, interface, peers, addresses; master: + node list
            assert len(points) >= (14 if node == "worker-1" else 19), points
            for step in range(1, len(points) + 1):
                _break_down(lab, node, old_table)
                env = dict(lab.env(), NETSETUP_FAULT_STEP=str(step))
                killed = lab.netsetup(node, "apply", env=env, check=False)
                assert killed.returncode == -9, (points[step - 1], killed.stderr)
                if node == "worker-1":
                    assert lab.probe("outsider", PROTECTED, 0.3) == [False] * 4, \
                        f"open after a kill at {points[step - 1]}"
                    assert table_handle(lab, node) is not None
                lab.netsetup(node, "apply")
                plan = lab.netsetup(node, "plan", check=False)
                assert plan.returncode == 0, (points[step - 1], plan.stdout)
    finally:
        lab.netsetup(node, "apply")
        counts = _result(hammer, stop=True) if hammer else None
    if counts is not None:
        assert counts["attempts"] > 1000 and counts["through"] == 0, counts
    assert lab.ssh("master", "10.77.0.11")


def test_two_applies_started_together_both_finish_like_one(lab: Lab) -> None:
    text = _variant(lab, "worker-2")
    env = dict(lab.env(), NETSETUP_FAULT_PAUSE="1")
    with cluster_file(lab, ["worker-2"], text):
        argv = lab._nsenter("worker-2") + [
            sys.executable, "-m", "netsetup", "apply", "--node", "worker-2"]
        if lab.backend:
            argv += ["--backend", lab.backend]
        first = subprocess.Popen(argv, env=env, text=True,
                                 stderr=subprocess.PIPE)
        time.sleep(0.3)
        second = subprocess.Popen(argv, env=env, text=True,
                                  stderr=subprocess.PIPE)
        errors = [p.communicate(timeout=60)[1] for p in (first, second)]
        assert [first.returncode, second.returncode] == [0, 0], errors
        assert "waiting for the netsetup lock" in errors[1]
        assert f"held by pid {first.pid}" in errors[1] or "held by pid" in errors[1]
        assert "nothing to do" in errors[1]
        assert lab.netsetup("worker-2", "plan", check=False).returncode == 0
    lab.netsetup("worker-2", "apply")


def _ssh_run(lab: Lab, address: str, command: str) -> subprocess.CompletedProcess[str]:
    key = lab.shared / "ssh" / "id_ed25519"
    env = " ".join(f"{k}={v}" for k, v in lab.env().items()
                   if k.startswith("NETSETUP_"))
    return lab.run("master", [
        "ssh", "-F", "/dev/null", "-i", str(key), "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", f"root@{address}",
        f"env {env} {sys.executable} -m netsetup {command}; echo exit=$?",
    ], check=False, timeout=60)


def test_apply_over_ssh_from_a_blocked_source_refuses_and_session_survives(
    lab: Lab,
) -> None:
    lab.netsetup("worker-2", "down")
    try:
        result = _ssh_run(lab, "192.0.2.12", "apply --node worker-2")
        # "exit=2" is printed by the same session after netsetup returned.
        assert "exit=2" in result.stdout, result
        assert "refusing to apply" in result.stderr
        assert "admin_sources" in result.stderr
        assert table_handle(lab, "worker-2") is None  # nothing changed
    finally:
        lab.netsetup("worker-2", "apply")


def test_apply_over_ssh_through_the_vpn_from_master_is_allowed(lab: Lab) -> None:
    result = _ssh_run(lab, "10.77.0.12", "apply --node worker-2")
    assert "exit=0" in result.stdout, result


def test_restore_firewall_loads_last_applied_table(lab: Lab) -> None:
    lab.run("worker-1", ["nft", "delete", "table", "inet", "netsetup"])
    assert lab.probe("outsider", ["192.0.2.11:22"]) == [True]
    lab.netsetup("worker-1", "restore-firewall")
    assert lab.probe("outsider", ["192.0.2.11:22"]) == [False]
    assert lab.netsetup("worker-1", "plan", check=False).returncode == 0
    saved = Path(lab.node_dir("worker-1") / "etc" / "firewall.nft")
    assert saved.stat().st_mode & 0o777 == 0o600

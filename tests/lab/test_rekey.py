"""Re-keying the whole cluster, with a real sshd and agent on each worker.

keywatch runs on every node as the systemd unit would; nothing else runs
on a worker unless a test says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Iterator

import pytest

from helpers import cluster_text, power_off, start_services, wg_dump
from netsetup.lab import ECHO_PORT, SERVICE_PORT, WORKERS, Lab

REKEY_TIMEOUT = 12
VPN = {w.name: w.vpn for w in WORKERS}


def _public_keys(lab: Lab) -> dict[str, str]:
    """Each cluster node's public key, read from its own device."""
    keys = {}
    for node in ["master", *VPN]:
        keys[node] = wg_dump(lab, node)[0][1]
    return keys


def _spawn_keywatch(lab: Lab, node: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "netsetup", "keywatch", "--node", node,
            "--interval", "0.1"]
    if lab.backend:
        argv += ["--backend", lab.backend]
    return lab.spawn(node, argv, log="keywatch.log")


@pytest.fixture(scope="module")
def rekey_lab(lab: Lab) -> Iterator[Lab]:
    """The lab with re-keying configured and keywatch on every node."""
    ssh_line = lab.netsetup("master", "keygen", "--ssh").stdout.strip()
    text = cluster_text(lab, "master").replace(
        "[cluster]\n", f'[cluster]\nrekey_ssh_key = "{ssh_line}"\n'
        f"rekey_timeout = {REKEY_TIMEOUT}\n", 1)
    for node in ["master", *VPN]:
        (lab.node_dir(node) / "cluster.toml").write_text(text)
        lab.netsetup(node, "apply")
    watchers = {node: _spawn_keywatch(lab, node) for node in ["master", *VPN]}
    yield lab
    for process in watchers.values():
        process.terminate()
        process.wait(10)


def _reachable(lab: Lab) -> dict[str, bool]:
    return {name: lab.ssh("master", vpn) for name, vpn in VPN.items()}


def _wait_reachable(lab: Lab, seconds: float) -> dict[str, bool]:
    deadline = time.monotonic() + seconds
    while True:
        state = _reachable(lab)
        if all(state.values()) or time.monotonic() > deadline:
            return state
        time.sleep(1)


def _consistent(lab: Lab) -> None:
    """Each worker's key is the one the master routes its address to."""
    master_peers = {row[0]: row[3] for row in wg_dump(lab, "master")[1:]}
    for name, vpn in VPN.items():
        key = wg_dump(lab, name)[0][1]
        assert master_peers.get(key) == f"{vpn}/32", (name, master_peers)
    master_key = wg_dump(lab, "master")[0][1]
    for name in VPN:
        peers = {row[0]: row[3] for row in wg_dump(lab, name)[1:]}
        assert peers.get(master_key) == "10.77.0.1/32", (name, peers)


def test_rotation_changes_every_key_and_keeps_live_connections(
    rekey_lab: Lab,
) -> None:
    lab = rekey_lab
    before = _public_keys(lab)
    streams = {name: subprocess.Popen(
        lab._nsenter("master") + [sys.executable, "-m", "netsetup.labtools",
                                  "stream", f"{vpn}:{ECHO_PORT}", "25", "0.01"],
        stdout=subprocess.PIPE, text=True) for name, vpn in VPN.items()}
    time.sleep(1)

    result = lab.netsetup("master", "rekey")

    after = _public_keys(lab)
    gaps = {name: json.loads(p.communicate(timeout=60)[0])
            for name, p in streams.items()}
    print(f"\nrekey output:\n{result.stdout}")
    for name, gap in gaps.items():
        print(f"tunnel gap master<->{name} seen by a live TCP connection "
              f"(10 ms probes): {gap['longest_gap'] * 1000:.0f} ms over "
              f"{gap['sent']} probes")
    assert all(after[node] != before[node] for node in before), (before, after)
    for name, gap in gaps.items():
        assert gap["alive"] == 1.0, (name, gap)
        assert gap["longest_gap"] < 1.0, (name, gap)
    _consistent(lab)
    now = time.time()
    for row in wg_dump(lab, "master")[1:]:
        if row[3] != "(none)":
            assert now - int(row[4]) < 60, row
    # the firewall and node list still hold
    assert lab.probe("outsider", ["192.0.2.11:22", f"192.0.2.11:{SERVICE_PORT}"]
                     ) == [False, False]
    nodelist = lab.host_path("master", lab.nodelist_path).read_bytes()
    assert b"10.77.0.11" in nodelist and b"192.0.2.11\t" not in nodelist
    # healthy: standby keys kept for the next rotation are not problems
    result = lab.netsetup("master", "status", "--json", check=False)
    status = json.loads(result.stdout)
    assert result.returncode == 0, status["problems"]
    assert {p["name"] for p in status["peers"] if p["standby"]} == set(VPN)
    assert status["keys"]["key_age_days"] < 0.01
    assert status["keys"]["next_rotation"]


LOST = [f"{verb}@worker-1:{part}" for verb in ("prepare", "commit", "cluster")
        for part in ("request", "reply")]
MASTER_KILLED = ["rekey worker-1 after prepare", "rekey worker-1 file written",
                 "rekey worker-1 before commit", "rekey worker-1 after commit",
                 "rekey master before switch", "rekey master key switched"]
WORKER_KILLED = ["agent switch marked", "agent switched"]


def _rekey_with(lab: Lab, fault: str, kind: str) -> subprocess.CompletedProcess[str]:
    env = lab.env()
    fault_file = lab.node_dir("worker-1") / "run" / "fault-step"
    if kind == "lost":
        env["NETSETUP_FAULT_LOSE"] = fault
    elif kind == "master":
        env["NETSETUP_FAULT_STEP"] = fault
    else:
        fault_file.write_text(fault)
    try:
        return lab.netsetup("master", "rekey", env=env, check=False)
    finally:
        fault_file.unlink(missing_ok=True)


@pytest.mark.parametrize("fault,kind", [(f, "lost") for f in LOST]
                         + [(f, "master") for f in MASTER_KILLED]
                         + [(f, "worker") for f in WORKER_KILLED])
def test_fault_during_rekey_heals_once_the_timers_have_run(
    rekey_lab: Lab, fault: str, kind: str,
) -> None:
    lab = rekey_lab
    result = _rekey_with(lab, fault, kind)
    if kind == "master":
        assert result.returncode == -9, result.stderr
    # The timers: an unsettled switch is settled within rekey_timeout, and
    # keywatch follows handshakes every 0.1 s.
    state = _wait_reachable(lab, REKEY_TIMEOUT + 30)
    assert all(state.values()), (fault, state)
    _consistent(lab)
    again = lab.netsetup("master", "rekey", check=False)
    assert again.returncode == 0, (fault, again.stdout, again.stderr)
    assert all(_wait_reachable(lab, 20).values())
    _consistent(lab)


def _boot(lab: Lab, node: str) -> None:
    """What the node's systemd units run at boot, in their order."""
    lab.netsetup(node, "restore-firewall")
    lab.netsetup(node, "apply")
    _spawn_keywatch(lab, node)


def test_worker_down_during_rotation_rejoins_by_itself(rekey_lab: Lab) -> None:
    lab = rekey_lab
    old_master_key = wg_dump(lab, "master")[0][1]
    power_off(lab, "worker-2")
    result = lab.netsetup("master", "rekey", check=False)
    assert result.returncode == 1 and "worker-2: NOT rotated" in result.stdout
    assert wg_dump(lab, "master")[0][1] != old_master_key  # it switched anyway
    start_services(lab, "worker-2")
    _boot(lab, "worker-2")
    deadline = time.monotonic() + 60
    while not lab.ssh("master", VPN["worker-2"]):
        assert time.monotonic() < deadline, "worker-2 did not rejoin"
        time.sleep(1)
    _consistent(lab)
    assert lab.netsetup("master", "rekey", check=False).returncode == 0


def test_agent_refuses_commands_outside_its_protocol(rekey_lab: Lab) -> None:
    lab = rekey_lab
    key = lab.shared / "etc" / "wg-mascot.ssh"
    result = lab.run("master", [
        "ssh", "-F", "/dev/null", "-i", str(key), "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        f"root@{VPN['worker-1']}", "cat /etc/shadow"], check=False)
    assert result.returncode == 2
    assert "root:" not in result.stdout
    log = (lab.node_dir("worker-1") / "run" / "agent.log").read_text()
    assert "refused 'cat /etc/shadow'" in log


def test_agent_refuses_any_source_but_the_master(rekey_lab: Lab) -> None:
    lab = rekey_lab
    env = dict(lab.env(), SSH_ORIGINAL_COMMAND="prepare",
               SSH_CONNECTION="192.0.2.99 40000 192.0.2.11 22")
    result = lab.run("worker-1", [sys.executable, "-m", "netsetup", "agent"],
                     env=env, check=False)
    assert result.returncode == 2 and "only the master" in result.stderr
    assert not (lab.node_dir("worker-1") / "etc" / "wg-mascot.key.next").exists()


def test_sshd_refuses_the_master_key_from_another_address(rekey_lab: Lab) -> None:
    lab = rekey_lab
    text = cluster_text(lab, "worker-1")
    opened = text.replace("[cluster]\n",
                          '[cluster]\nadmin_sources = ["192.0.2.99/32"]\n', 1)
    (lab.node_dir("worker-1") / "cluster.toml").write_text(opened)
    try:
        lab.netsetup("worker-1", "apply")
        key = lab.node_dir("master") / "etc" / "wg-mascot.ssh"
        result = lab.run("outsider", [
            "ssh", "-F", "/dev/null", "-i", str(key), "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "root@192.0.2.11", "status"], check=False)
        assert result.returncode == 255, result  # sshd: from= does not match
        assert "Permission denied" in result.stderr
    finally:
        (lab.node_dir("worker-1") / "cluster.toml").write_text(text)
        lab.netsetup("worker-1", "apply")


def test_timer_run_waits_for_the_interval(rekey_lab: Lab) -> None:
    lab = rekey_lab
    before = wg_dump(lab, "master")[0][1]
    result = lab.netsetup("master", "-v", "rekey", "--if-due", check=False)
    assert result.returncode == 0 and "not due yet" in result.stderr
    assert wg_dump(lab, "master")[0][1] == before


def test_down_removes_only_the_agent_entry(rekey_lab: Lab) -> None:
    lab = rekey_lab
    path = lab.node_dir("worker-1") / "ssh" / "authorized_keys"
    with_entry = path.read_bytes()
    assert b"netsetup-rekey:lab" in with_entry
    lab.netsetup("worker-1", "down")
    try:
        without = path.read_bytes()
        assert b"netsetup-rekey" not in without
        assert without == b"".join(line for line in with_entry.splitlines(
            keepends=True) if b"netsetup-rekey" not in line)
    finally:
        lab.netsetup("worker-1", "apply")
    assert path.read_bytes() == with_entry

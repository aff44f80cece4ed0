"""`netsetup bootstrap`: a new cluster brought up from the master alone.

A lab of its own, in which no node has a key or a cluster file yet; the
master holds a draft without public keys and the admin's SSH access to the
workers' LAN addresses, as a Mascot cluster has.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Iterator

import pytest

from netsetup import keys
from netsetup.lab import CLUSTER_NODES, SERVICE_PORT, WORKERS, Lab


@pytest.fixture(scope="module")
def fresh() -> Iterator[Lab]:
    pid = os.getpid()
    lab = Lab(Path(f"/run/netsetup-test-boot-{pid}"), prefix=f"nsb{pid}",
              backend=os.environ.get("NETSETUP_LAB_BACKEND") or None)
    lab.up(cluster=False)
    try:
        yield lab
    finally:
        lab.down()


def test_bootstrap_brings_up_the_cluster_from_the_master(fresh: Lab) -> None:
    lab = fresh
    lab.write_cluster_file(None, nodes=("master",))
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in lab.env().items()
                   if k.startswith("NETSETUP_") and k != "NETSETUP_CONFIG")
    remote = f"env {env} {sys.executable} -m netsetup"

    result = lab.netsetup("master", "bootstrap", "--ssh-identity",
                          str(lab.shared / "ssh" / "id_ed25519"),
                          "--remote-command", remote,
                          "--ssh-option", "StrictHostKeyChecking=no",
                          "--ssh-option", "UserKnownHostsFile=/dev/null",
                          check=False)

    assert result.returncode == 0, result.stderr
    for worker in WORKERS:
        assert f"{worker.name}: reachable over the VPN" in result.stdout
    master_file = (lab.node_dir("master") / "cluster.toml").read_bytes()
    for node in CLUSTER_NODES:
        assert (lab.node_dir(node.name) / "cluster.toml").read_bytes() == \
            master_file
        key_file = lab.node_dir(node.name) / "etc" / "wg-mascot.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        public = keys.public_key(keys.read_private_key(key_file))
        assert f'public_key = "{public}"'.encode() in master_file
        # no private key travelled into the file
        assert key_file.read_text().strip().encode() not in master_file
    for worker in WORKERS:
        assert lab.ssh("master", worker.vpn)
        assert not lab.ssh("master", worker.lan4, timeout=2)
        assert lab.probe("outsider", [f"{worker.lan4}:{SERVICE_PORT}"]) == [False]


def test_bootstrap_refuses_on_a_worker(fresh: Lab) -> None:
    (fresh.node_dir("worker-1") / "cluster.toml").write_bytes(
        (fresh.node_dir("master") / "cluster.toml").read_bytes())
    result = fresh.netsetup("worker-1", "bootstrap", check=False)
    assert result.returncode == 2
    assert "bootstrap runs on the master" in result.stderr

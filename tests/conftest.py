"""Shared by every test tier.

`lab`: one namespace lab per test session. It is built once, netsetup is
applied on every cluster node, and each test leaves the cluster as it
found it (tests that change the cluster file put it back).
NETSETUP_LAB_BACKEND picks the WireGuard backend; inside the qemu guest
(tests/vm/run sets NETSETUP_VM=1) it is `kernel`, on the host netsetup
picks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import settings

from netsetup.lab import (CLUSTER_NODES, SERVICE_PORT, WORKERS, Lab, _wait_for,
                          route_outsider_to_vpn)

if os.environ.get("NETSETUP_VM") == "1":
    os.environ.setdefault("NETSETUP_LAB_BACKEND", "kernel")

# Hypothesis fails an example that takes over 200 ms by default: a timed
# test, flaky on a loaded machine (seen while the qemu tier ran beside).
# Speed is the benchmarks' business.
settings.register_profile("netsetup", deadline=None)
settings.load_profile("netsetup")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("the lab tests build network namespaces: run them as root")
    pid = os.getpid()
    lab = Lab(Path(f"/run/netsetup-test-{pid}"), prefix=f"nst{pid}",
              backend=os.environ.get("NETSETUP_LAB_BACKEND") or None)
    lab.up()
    try:
        route_outsider_to_vpn(lab)
        for node in CLUSTER_NODES:
            lab.netsetup(node.name, "apply")
        for worker in WORKERS:
            _wait_for(
                lambda: lab.probe("master", [f"{worker.vpn}:{SERVICE_PORT}"])
                == [True], 15, f"master cannot reach {worker.name} over VPN")
        yield lab
    finally:
        lab.down()

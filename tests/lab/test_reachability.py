"""Who reaches SSH, 5001 and an unmanaged port on each worker, over which path.

Every probe is a real TCP connection from one namespace to another; success
means the listener's greeting arrived.
"""

from __future__ import annotations

import pytest

from netsetup.lab import WORKERS, Lab, Probe, matrix, run_matrix

CASES = [(worker.name, probe) for worker in WORKERS
         for probe in matrix(worker.name)]


def _id(case: tuple[str, Probe]) -> str:
    target, probe = case
    verdict = "reaches" if probe.expected else "cannot-reach"
    path = probe.path.replace(" ", "-")
    return f"{probe.source}-{verdict}-{target}-{probe.port}-over-{path}"


@pytest.fixture(scope="module")
def results(lab: Lab) -> dict[tuple[str, Probe], bool]:
    found = {}
    for worker in WORKERS:
        for probe, reached in run_matrix(lab, worker.name):
            found[(worker.name, probe)] = reached
    return found


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_reachability(results: dict[tuple[str, Probe], bool],
                      case: tuple[str, Probe]) -> None:
    target, probe = case
    reached = results[case]
    assert reached == probe.expected, (
        f"{probe.source} -> {target} {probe.address}:{probe.port} via "
        f"{probe.path}: {'connected' if reached else 'blocked'}, expected "
        f"{'connected' if probe.expected else 'blocked'}")


@pytest.mark.parametrize("worker", [w.name for w in WORKERS])
def test_master_logs_in_over_vpn_with_real_ssh(lab: Lab, worker: str) -> None:
    address = next(w.vpn for w in WORKERS if w.name == worker)
    assert lab.ssh("master", address)


@pytest.mark.parametrize("source,address", [
    ("outsider", "192.0.2.11"),
    ("outsider", "2001:db8::11"),
    ("outsider", "10.77.0.11"),  # routed through the worker's LAN address
    ("master", "192.0.2.11"),
])
def test_master_key_alone_does_not_open_ssh_off_the_vpn(
    lab: Lab, source: str, address: str
) -> None:
    # The client holds the master's own authorised key, so only the
    # firewall can be what stops it.
    assert not lab.ssh(source, address, timeout=2)


def test_removing_the_table_opens_the_ports_and_apply_closes_them(
    lab: Lab,
) -> None:
    """Control: without netsetup's table the same probe does get through."""
    assert lab.probe("outsider", ["192.0.2.12:22", "192.0.2.12:5001"]) == [
        False, False]
    lab.run("worker-2", ["nft", "delete", "table", "inet", "netsetup"])
    try:
        assert lab.probe("outsider", ["192.0.2.12:22", "192.0.2.12:5001"]) == [
            True, True]
    finally:
        lab.netsetup("worker-2", "apply")
    assert lab.probe("outsider", ["192.0.2.12:22", "192.0.2.12:5001"]) == [
        False, False]

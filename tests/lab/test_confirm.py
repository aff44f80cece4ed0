"""apply --confirm: reverts by itself unless confirmed, even if killed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from helpers import (cluster_file, cluster_text, power_off, start_services,
                     wg_dump)
from netsetup.lab import NODELIST_TEXT, Lab

NODE = "worker-1"
SECONDS = 5
BOOKKEEPING = {"pending.json", "last-revert.json", "public-keys"}


def _state(lab: Lab) -> dict[str, Any]:
    """Everything apply may change on NODE, as comparable values."""
    etc = lab.node_dir(NODE) / "etc"
    link = json.loads(lab.run(NODE, ["ip", "-j", "addr", "show", "wg-mascot"])
                      .stdout)[0]
    return {
        "table": lab.run(NODE, ["nft", "-s", "list", "table", "inet",
                                "netsetup"]).stdout,
        # drop handshake and transfer columns: they move on their own
        "device": [row[:4] if i == 0 else row[:4] + row[7:]
                   for i, row in enumerate(wg_dump(lab, NODE))],
        "link": (link["ifindex"], link["mtu"], sorted(
            f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"])),
        "nodelist": lab.host_path(NODE, lab.nodelist_path).read_bytes(),
        # not the bookkeeping of confirm and revert themselves
        "state_files": {str(p.relative_to(etc)): p.read_bytes()
                        for p in sorted(etc.rglob("*")) if p.is_file()
                        and p.name not in BOOKKEEPING},
    }


@pytest.fixture
def variant(lab: Lab) -> Iterator[str]:
    """A worker with a node list of its own, and a changed cluster file."""
    nodelist = lab.host_path(NODE, lab.nodelist_path)
    nodelist.write_bytes(NODELIST_TEXT)
    original = cluster_text(lab, NODE)
    text = original.replace(
        "[cluster]\n", '[cluster]\nadmin_sources = ["198.51.100.0/24"]\n'
        "mtu = 1400\n", 1)
    yield text
    lab.netsetup(NODE, "confirm", check=False)
    lab.netsetup(NODE, "down")
    nodelist.unlink()
    lab.netsetup(NODE, "apply")


def _wait_for_revert(lab: Lab) -> None:
    pending = lab.node_dir(NODE) / "etc" / "pending.json"
    deadline = time.monotonic() + SECONDS + 15
    while pending.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pending.exists(), "the revert did not run"


def test_unconfirmed_apply_killed_after_starting_timer_reverts(
    lab: Lab, variant: str,
) -> None:
    before = _state(lab)
    with cluster_file(lab, [NODE], variant):
        env = dict(lab.env(), NETSETUP_FAULT_STEP="revert timer started")
        killed = lab.netsetup(NODE, "apply", "--confirm", str(SECONDS),
                              env=env, check=False)
        assert killed.returncode == -9
        _wait_for_revert(lab)
    assert _state(lab) == before


def test_unconfirmed_apply_reverts_everything_byte_for_byte(
    lab: Lab, variant: str,
) -> None:
    before = _state(lab)
    original = cluster_text(lab, NODE)
    with cluster_file(lab, [NODE], variant):
        result = lab.netsetup(NODE, "apply", "--confirm", str(SECONDS))
        assert "NEW state is live" in result.stdout
        applied = _state(lab)
        assert applied["link"][1] == 1400
        assert applied["nodelist"] != NODELIST_TEXT
        assert applied["table"] != before["table"]
        again = lab.netsetup(NODE, "apply", check=False)
        assert again.returncode == 2 and "netsetup confirm" in again.stderr
        _wait_for_revert(lab)
        # the cluster file too, so the next apply does not bring it back
        assert cluster_text(lab, NODE) == original
    assert _state(lab) == before
    assert lab.ssh("master", "10.77.0.11")
    late = lab.netsetup(NODE, "confirm", check=False)
    assert late.returncode == 2 and "reverted at" in late.stderr


def test_confirmed_apply_stays(lab: Lab, variant: str) -> None:
    with cluster_file(lab, [NODE], variant):
        lab.netsetup(NODE, "apply", "--confirm", str(SECONDS))
        applied = _state(lab)
        assert "confirmed" in lab.netsetup(NODE, "confirm").stdout
        time.sleep(SECONDS + 2)
        assert _state(lab) == applied
        assert lab.netsetup(NODE, "plan", check=False).returncode == 0
    log = Path(lab.node_dir(NODE) / "run" / "revert.log").read_text()
    assert "nothing to revert" in log


def test_reboot_before_confirmation_reverts_at_boot(lab: Lab, variant: str) -> None:
    before = _state(lab)
    original = cluster_text(lab, NODE)
    with cluster_file(lab, [NODE], variant):
        lab.netsetup(NODE, "apply", "--confirm", "300")
        assert _state(lab)["link"][1] == 1400
        power_off(lab, NODE)
        # boot: the firewall unit first, before any network
        lab.netsetup(NODE, "restore-firewall")
        assert cluster_text(lab, NODE) == original
        assert not (lab.node_dir(NODE) / "etc" / "pending.json").exists()
        booted = lab.run(NODE, ["nft", "-s", "list", "table", "inet",
                                "netsetup"]).stdout
        assert booted == before["table"]
        assert lab.host_path(NODE, lab.nodelist_path).read_bytes() == \
            before["nodelist"]
        # then netsetup.service, once the network is up
        start_services(lab, NODE)
        lab.netsetup(NODE, "apply")
    link = _state(lab)["link"]
    assert link[1] == before["link"][1] == 1420  # a new link, the old config
    assert "10.77.0.11/24" in link[2]
    assert lab.ssh("master", "10.77.0.11")

"""`status` shows peers, handshakes and drops; exits non-zero when unhealthy."""

from __future__ import annotations

import json

from netsetup.lab import Lab


def test_status_of_worker_shows_master_handshake_and_drops(lab: Lab) -> None:
    assert lab.probe("outsider", ["192.0.2.11:5001"], timeout=0.3) == [False]
    result = lab.netsetup("worker-1", "status", "--json", check=False)
    assert result.returncode == 0, result.stdout
    status = json.loads(result.stdout)
    (peer,) = status["peers"]
    assert peer["name"] == "master"
    assert peer["handshake_ok"] and peer["latest_handshake_seconds"] < 180
    assert status["firewall"]["current"]
    assert status["firewall"]["dropped"]["protected_dropped"] >= 1
    key = (lab.node_dir("worker-1") / "etc" / "wg-mascot.key").read_text().strip()
    assert key not in result.stdout
    text = lab.netsetup("worker-1", "status").stdout
    assert "peer master" in text and key not in text


def test_status_of_master_lists_both_workers(lab: Lab) -> None:
    status = json.loads(lab.netsetup("master", "status", "--json").stdout)
    assert sorted(p["name"] for p in status["peers"]) == ["worker-1", "worker-2"]
    assert status["nodelist"][str(lab.nodelist_path)] == "rewritten"

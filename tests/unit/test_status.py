"""Tests for netsetup.status: the report, its problems and its text form."""

from __future__ import annotations

import base64
import json
import tomllib
from pathlib import Path

import pytest

from netsetup import spec, status
from netsetup.firewall import Ruleset, TableState
from netsetup.link import LinkState
from netsetup.plan import Observed
from netsetup.wireguard import DeviceState, PeerState

NOW = 1_700_000_000.0
NODELIST = "/srv/mascot/nodelist.txt"


def key(byte: int) -> str:
    return base64.b64encode(bytes([byte]) * 32).decode()


MASTER_KEY, W1_KEY, W2_KEY = key(1), key(2), key(3)
SECRET = key(0x5A)  # the node's private key: must never be printed
RULESET = Ruleset("table inet netsetup {}\n", "ab" * 32)

CLUSTER = spec.parse(tomllib.loads(f"""
[cluster]
name = "mascot"
interface = "wg-mascot"
network = "10.77.0.0/24"
nodelist = "{NODELIST}"

[[nodes]]
name = "master-pc"
role = "master"
address = "192.0.2.10"
vpn_address = "10.77.0.1"
public_key = "{MASTER_KEY}"

[[nodes]]
name = "worker-1"
address = "192.0.2.11"
vpn_address = "10.77.0.11"
public_key = "{W1_KEY}"

[[nodes]]
name = "worker-2"
address = "192.0.2.12"
vpn_address = "10.77.0.12"
public_key = "{W2_KEY}"
"""), "cluster.toml")


def peer(public_key: str, address: str, vpn: str,
         handshake_age: float | None) -> PeerState:
    return PeerState(
        public_key=public_key,
        endpoint=(address, 51820),
        allowed_ips=(f"{vpn}/32",),
        persistent_keepalive=25,
        last_handshake=0.0 if handshake_age is None else NOW - handshake_age,
        rx_bytes=1234,
        tx_bytes=5678,
    )


def observed_worker(handshake_age: float | None = 10.0, *, link: bool = True,
                    up: bool = True, table_digest: str | None = RULESET.digest,
                    table: bool = True, nodelist: bytes | None = b"10.77.0.1\n",
                    ) -> Observed:
    return Observed(
        link=LinkState(5, "wireguard", 1420, up, ("10.77.0.11/24",))
        if link else None,
        device=DeviceState(SECRET, 51820, {MASTER_KEY: peer(
            MASTER_KEY, "192.0.2.10", "10.77.0.1", handshake_age)})
        if link else None,
        table=TableState(table_digest, "cd" * 32) if table else None,
        recorded_listing="cd" * 32,
        route_mtu=1500,
        files={Path(NODELIST): nodelist},
    )


def report(observed: Observed, node: str = "worker-1",
           counters: dict[str, int] | None = None,
           rewritten: bool = True) -> dict:
    return status.report(
        CLUSTER, CLUSTER.node(node), observed, RULESET, counters or {},
        "kernel", {NODELIST: rewritten}, now=NOW)


def test_healthy_worker_has_no_problems():
    result = report(observed_worker(10.0))

    assert result["problems"] == []
    assert result["node"] == "worker-1"
    assert result["role"] == "worker"
    assert result["interface"] == {
        "name": "wg-mascot", "present": True, "up": True, "mtu": 1420,
        "addresses": ["10.77.0.11/24"], "listen_port": 51820}
    assert result["firewall"]["current"] is True
    assert result["missing_peers"] == []
    [master] = result["peers"]
    assert master["name"] == "master-pc"
    assert master["endpoint"] == "192.0.2.10:51820"
    assert master["latest_handshake_seconds"] == 10.0
    assert master["handshake_ok"] is True
    assert status.format_text(result).endswith("\nhealthy")


@pytest.mark.parametrize("age, ok, problem", [
    (None, False, "peer master-pc: no handshake yet"),
    (0.0, True, None),
    (179.0, True, None),
    (181.0, False, "peer master-pc: last handshake 181 s ago"),
    (3600.0, False, "peer master-pc: last handshake 3600 s ago"),
])
def test_handshake_older_than_180_seconds_is_a_problem(age, ok, problem):
    result = report(observed_worker(age))

    [master] = result["peers"]
    assert master["handshake_ok"] is ok
    assert result["problems"] == ([] if problem is None else [problem])


def test_handshake_in_the_future_counts_as_fresh():
    # A clock stepped backwards must not report a negative age.
    result = report(observed_worker(-30.0))

    assert result["peers"][0]["latest_handshake_seconds"] == 0
    assert result["problems"] == []


def test_never_handshaken_peer_shows_never_in_text():
    text = status.format_text(report(observed_worker(None)))

    assert "handshake never" in text
    assert "unhealthy: peer master-pc: no handshake yet" in text


def test_missing_interface_is_a_problem():
    result = report(observed_worker(link=False))

    assert result["interface"]["present"] is False
    assert "wg-mascot: interface missing" in result["problems"]
    assert "peer master-pc: not configured" in result["problems"]
    assert "interface wg-mascot: missing" in status.format_text(result)


def test_link_down_is_a_problem():
    result = report(observed_worker(up=False))

    assert result["problems"] == ["wg-mascot: link is down"]


def test_outdated_firewall_is_a_problem():
    result = report(observed_worker(table_digest="ef" * 32))

    assert result["firewall"] == {"loaded": True, "current": False,
                                  "dropped": {}}
    assert result["problems"] == [
        "table inet netsetup: differs from the cluster file"]
    assert "table inet netsetup: outdated" in status.format_text(result)


def test_foreign_table_without_digest_is_outdated():
    result = report(observed_worker(table_digest=None))

    assert "table inet netsetup: differs from the cluster file" in \
        result["problems"]


def test_missing_firewall_is_a_problem():
    result = report(observed_worker(table=False))

    assert result["problems"] == ["table inet netsetup: not loaded"]
    assert "table inet netsetup: not loaded" in status.format_text(result)


def test_drop_counters_are_shown_sorted():
    result = report(observed_worker(),
                    counters={"wireguard_udp_dropped": 3, "protected_dropped": 7})

    assert ("table inet netsetup: current; dropped: protected_dropped 7, "
            "wireguard_udp_dropped 3") in status.format_text(result)


def test_master_reports_a_worker_without_peer_entry_as_missing():
    observed = Observed(
        link=LinkState(5, "wireguard", 1420, True, ("10.77.0.1/24",)),
        device=DeviceState(SECRET, 51820, {W1_KEY: peer(
            W1_KEY, "192.0.2.11", "10.77.0.11", 5.0)}),
        table=TableState(RULESET.digest, "x"), recorded_listing="x",
        route_mtu=1500, files={Path(NODELIST): None})

    result = report(observed, node="master-pc", rewritten=False)

    assert result["missing_peers"] == ["worker-2"]
    assert result["problems"] == ["peer worker-2: not configured"]
    assert result["nodelist"] == {NODELIST: "absent"}


def test_peer_not_in_the_cluster_file_is_named_unknown():
    stray = key(0x77)
    observed = observed_worker()
    observed.device.peers[stray] = peer(stray, "198.51.100.9", "10.77.0.99",
                                        None)

    result = report(observed)

    names = {p["public_key"]: p["name"] for p in result["peers"]}
    assert names[stray] == "unknown"


@pytest.mark.parametrize("data, rewritten, state", [
    (None, False, "absent"),
    (b"192.0.2.10\n", False, "not rewritten"),
    (b"10.77.0.1\n", True, "rewritten"),
])
def test_nodelist_state_is_reported_per_file(data, rewritten, state):
    result = report(observed_worker(nodelist=data), rewritten=rewritten)

    assert result["nodelist"] == {NODELIST: state}
    assert f"node list {NODELIST}: {state}" in status.format_text(result)


@pytest.mark.parametrize("observed", [
    observed_worker(10.0),
    observed_worker(None),
    observed_worker(500.0, up=False, table_digest="ef" * 32),
], ids=["healthy", "no-handshake", "unhealthy"])
def test_status_output_never_contains_the_private_key(observed):
    assert observed.device is not None and observed.device.private_key == SECRET

    result = report(observed)
    text = status.format_text(result)

    assert SECRET not in text
    assert SECRET not in json.dumps(result)
    assert base64.b64decode(SECRET).hex() not in text
    assert MASTER_KEY in text  # peers are shown by public key


def test_firewall_edited_since_load_is_a_problem():
    # plan replaces a table whose listing differs from the one recorded at
    # load time; status must not call the same node healthy.
    observed = observed_worker()
    edited = Observed(observed.link, observed.device,
                      TableState(RULESET.digest, "99" * 32),
                      observed.recorded_listing, observed.route_mtu,
                      observed.files)

    result = report(edited)

    assert result["firewall"]["current"] is False
    assert any(p.startswith("table inet netsetup: ") for p in result["problems"])
    assert "table inet netsetup: outdated" in status.format_text(result)

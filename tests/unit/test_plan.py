"""Tests for netsetup.plan: one JSON file per case under plan_cases/.

A case file names a node of the fixed cluster below, describes what the
node has now ("observed") and lists the [layer, kind] of every action the
plan must return, in order, or {"error": "PlanError", "match": regex}.

    description         one sentence: what the case is about
    node                "master", "worker-1" or "worker-2"
    cluster_overrides   optional [cluster] keys, e.g. {"mtu": 1380}
    observed.link       null or {index, kind, mtu, up, addresses}
    observed.device     null or {private_key: "self" | "other" | null,
                        listen_port, peers: [{node | public_key, endpoint:
                        [host, port] | null, allowed_ips,
                        persistent_keepalive}]}
    observed.table      null or {digest: "desired" | "other" | null,
                        listing: "recorded" | "other"}
    observed.recorded_listing, observed.route_mtu, observed.files {path: text
                        or null}
    summaries_contain / summaries_exclude
                        optional substrings of the joined action summaries;
                        "{public:NAME}" stands for that node's public key

Unknown keys are errors, so a typo in a case file fails its test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from netsetup import keys, nodelist, spec
from netsetup import plan as planning
from netsetup.firewall import Ruleset, TableState, render
from netsetup.link import LinkState
from netsetup.plan import Desired, Observed, PlanError
from netsetup.wireguard import DeviceState, PeerConfig, PeerState

CASES_DIR = Path(__file__).parent / "plan_cases"
CASE_FILES = sorted(CASES_DIR.glob("*.json"))

NODELIST = "/srv/mascot/nodelist.txt"
NODES = {
    # name: (role, LAN address, VPN address, byte of its private key)
    "master": ("master", "192.0.2.10", "10.77.0.1", 0x41),
    "worker-1": ("worker", "192.0.2.11", "10.77.0.11", 0x42),
    "worker-2": ("worker", "192.0.2.12", "10.77.0.12", 0x43),
}
PRIVATE = {name: base64.b64encode(bytes([n[3]]) * 32).decode()
           for name, n in NODES.items()}
PUBLIC = {name: keys.public_key(key) for name, key in PRIVATE.items()}
OTHER_PRIVATE = base64.b64encode(bytes([0x99]) * 32).decode()

RULESET_TEXT = 'table inet netsetup {\n\tcomment "test"\n}\n'
RULESET = Ruleset(RULESET_TEXT, hashlib.sha256(RULESET_TEXT.encode()).hexdigest())
OTHER_DIGEST = hashlib.sha256(b"another cluster file").hexdigest()
OTHER_LISTING = hashlib.sha256(b"an edited listing").hexdigest()


def cluster_text(overrides: dict[str, Any] | None = None) -> str:
    lines = [
        "[cluster]",
        'name = "plantest"',
        'interface = "wg-test"',
        'network = "10.77.0.0/24"',
        "listen_port = 51820",
        "protected_ports = [22, 5001]",
        f'nodelist = "{NODELIST}"',
    ]
    # JSON scalars and arrays of them are valid TOML values.
    lines += [f"{key} = {json.dumps(value)}"
              for key, value in (overrides or {}).items()]
    for name, (role, address, vpn, _) in NODES.items():
        lines += [
            "", "[[nodes]]", f'name = "{name}"', f'role = "{role}"',
            f'address = "{address}"', f'vpn_address = "{vpn}"',
            f'public_key = "{PUBLIC[name]}"',
        ]
    return "\n".join(lines) + "\n"


def make_cluster(overrides: dict[str, Any] | None = None) -> spec.Cluster:
    return spec.parse(tomllib.loads(cluster_text(overrides)), "cluster.toml")


def make_desired(cluster: spec.Cluster, name: str) -> Desired:
    return planning.desired_state(
        cluster, cluster.node(name), PRIVATE[name], PUBLIC[name], RULESET)


# --- reading a case file --------------------------------------------------------

CASE_KEYS = {"description", "node", "cluster_overrides", "observed", "expected",
             "summaries_contain", "summaries_exclude"}
OBSERVED_KEYS = {"link", "device", "table", "recorded_listing", "route_mtu",
                 "files"}
LINK_KEYS = {"index", "kind", "mtu", "up", "addresses"}
DEVICE_KEYS = {"private_key", "listen_port", "peers"}
PEER_KEYS = {"node", "public_key", "endpoint", "allowed_ips",
             "persistent_keepalive"}
TABLE_KEYS = {"digest", "listing"}


def _keys(table: dict[str, Any], allowed: set[str], required: set[str],
          where: str) -> None:
    assert set(table) <= allowed, f"{where}: unknown keys {set(table) - allowed}"
    assert required <= set(table), f"{where}: missing keys {required - set(table)}"


def _check_case(case: dict[str, Any], stem: str) -> None:
    _keys(case, CASE_KEYS, {"description", "node", "observed", "expected"}, stem)
    assert case["node"] in NODES, f"{stem}: unknown node {case['node']!r}"
    _keys(case["observed"], OBSERVED_KEYS, OBSERVED_KEYS, f"{stem}: observed")


def _expand(text: str) -> str:
    for name, key in PUBLIC.items():
        text = text.replace(f"{{public:{name}}}", key)
    return text


def _peer(raw: dict[str, Any], where: str) -> PeerState:
    _keys(raw, PEER_KEYS, {"endpoint", "allowed_ips", "persistent_keepalive"},
          where)
    assert ("node" in raw) != ("public_key" in raw), \
        f"{where}: give either node or public_key"
    key = PUBLIC[raw["node"]] if "node" in raw else raw["public_key"]
    assert len(base64.b64decode(key, validate=True)) == 32, where
    endpoint = raw["endpoint"]
    return PeerState(
        public_key=key,
        endpoint=None if endpoint is None else (endpoint[0], endpoint[1]),
        allowed_ips=tuple(sorted(raw["allowed_ips"])),
        persistent_keepalive=raw["persistent_keepalive"],
        last_handshake=1_700_000_000.0,
        rx_bytes=1000,
        tx_bytes=2000,
    )


def build_observed(raw: dict[str, Any], node: str, stem: str) -> Observed:
    link = None
    if raw["link"] is not None:
        _keys(raw["link"], LINK_KEYS, LINK_KEYS, f"{stem}: link")
        link = LinkState(
            index=raw["link"]["index"], kind=raw["link"]["kind"],
            mtu=raw["link"]["mtu"], up=raw["link"]["up"],
            addresses=tuple(sorted(raw["link"]["addresses"])))

    device = None
    if raw["device"] is not None:
        _keys(raw["device"], DEVICE_KEYS, DEVICE_KEYS, f"{stem}: device")
        private = {"self": PRIVATE[node], "other": OTHER_PRIVATE, None: None}[
            raw["device"]["private_key"]]
        peers = [_peer(p, f"{stem}: peer {i}")
                 for i, p in enumerate(raw["device"]["peers"])]
        device = DeviceState(private, raw["device"]["listen_port"],
                             {peer.public_key: peer for peer in peers})

    recorded = raw["recorded_listing"]
    table = None
    if raw["table"] is not None:
        _keys(raw["table"], TABLE_KEYS, TABLE_KEYS, f"{stem}: table")
        digest = {"desired": RULESET.digest, "other": OTHER_DIGEST, None: None}[
            raw["table"]["digest"]]
        if raw["table"]["listing"] == "recorded":
            assert recorded is not None, f"{stem}: listing 'recorded' needs one"
            listing = recorded
        else:
            assert raw["table"]["listing"] == "other", stem
            listing = OTHER_LISTING
        table = TableState(digest, listing)

    files = {}
    for path, text in raw["files"].items():
        assert path == NODELIST, f"{stem}: {path} is not the cluster's node list"
        files[Path(path)] = None if text is None else text.encode()

    return Observed(link=link, device=device, table=table,
                    recorded_listing=recorded, route_mtu=raw["route_mtu"],
                    files=files)


def load_case(path: Path) -> dict[str, Any]:
    case = json.loads(path.read_text())
    _check_case(case, path.stem)
    return case


# --- the case harness ---------------------------------------------------------


def test_there_are_enough_plan_cases():
    assert len(CASE_FILES) >= 14


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_plan_case(path):
    case = load_case(path)
    cluster = make_cluster(case.get("cluster_overrides"))
    desired = make_desired(cluster, case["node"])
    observed = build_observed(case["observed"], case["node"], path.stem)
    expected = case["expected"]

    if isinstance(expected, dict):
        assert set(expected) == {"error", "match"}, path.stem
        assert expected["error"] == "PlanError"
        with pytest.raises(PlanError, match=expected["match"]):
            planning.plan(desired, observed)
        return

    actions = planning.plan(desired, observed)

    assert [[a.layer, a.kind] for a in actions] == expected, case["description"]
    summaries = "\n".join(action.summary for action in actions)
    for part in case.get("summaries_contain", []):
        assert _expand(part) in summaries
    for part in case.get("summaries_exclude", []):
        assert _expand(part) not in summaries
    for private in [*PRIVATE.values(), OTHER_PRIVATE]:
        assert private not in summaries
    for action in actions:
        assert action.layer in planning.LAYERS
        assert "\n" not in action.summary
        if action.kind in ("add-peer", "update-peer"):
            assert action.data in desired.peers
    # Planning the same input twice gives the same plan.
    assert planning.plan(desired, observed) == actions


# --- the pieces the harness relies on ------------------------------------------


def test_worker_desires_the_master_as_its_only_peer():
    cluster = make_cluster()

    desired = make_desired(cluster, "worker-2")

    assert desired.peers == (PeerConfig(
        public_key=PUBLIC["master"], endpoint=("192.0.2.10", 51820),
        allowed_ips=("10.77.0.1/32",), persistent_keepalive=25),)
    assert desired.addresses == ("10.77.0.12/24",)
    assert desired.interface == "wg-test"
    assert desired.listen_port == 51820
    assert desired.mtu is None


def test_master_desires_every_worker_with_its_vpn_address_only():
    cluster = make_cluster({"mtu": 1400, "persistent_keepalive": 0})

    desired = make_desired(cluster, "master")

    assert [(p.public_key, p.endpoint, p.allowed_ips, p.persistent_keepalive)
            for p in desired.peers] == [
        (PUBLIC["worker-1"], ("192.0.2.11", 51820), ("10.77.0.11/32",), 0),
        (PUBLIC["worker-2"], ("192.0.2.12", 51820), ("10.77.0.12/32",), 0),
    ]
    assert desired.mtu == 1400


def test_ipv6_peer_allowed_ip_is_a_128_prefix():
    text = cluster_text().replace('network = "10.77.0.0/24"',
                                  'network = "fd00:77::/64"')
    for vpn, new in [("10.77.0.1", "fd00:77::1"), ("10.77.0.11", "fd00:77::11"),
                     ("10.77.0.12", "fd00:77::12")]:
        text = text.replace(f'vpn_address = "{vpn}"', f'vpn_address = "{new}"')
    cluster = spec.parse(tomllib.loads(text), "cluster.toml")

    desired = make_desired(cluster, "worker-1")

    assert desired.peers[0].allowed_ips == ("fd00:77::1/128",)
    assert desired.addresses == ("fd00:77::11/64",)


def test_nodelist_mapping_maps_lan_addresses_and_host_names_to_vpn_addresses():
    text = cluster_text().replace(
        f'public_key = "{PUBLIC["worker-2"]}"',
        f'public_key = "{PUBLIC["worker-2"]}"\nhostnames = ["w2", "w2.lan"]')
    cluster = spec.parse(tomllib.loads(text), "cluster.toml")

    mapping = planning.nodelist_mapping(cluster)

    assert mapping == {
        "192.0.2.10": "10.77.0.1",
        "192.0.2.11": "10.77.0.11",
        "192.0.2.12": "10.77.0.12",
        "w2": "10.77.0.12",
        "w2.lan": "10.77.0.12",
    }
    nodelist.validate_mapping(mapping)


def test_desired_state_carries_the_rendered_ruleset():
    cluster = make_cluster()
    node = cluster.node("worker-1")
    ruleset = render(cluster, node)

    desired = planning.desired_state(cluster, node, PRIVATE["worker-1"],
                                     PUBLIC["worker-1"], ruleset)

    assert desired.ruleset == ruleset
    assert f"sha256={ruleset.digest}" in ruleset.text


def test_rewrite_action_carries_the_file_change():
    cluster = make_cluster()
    desired = make_desired(cluster, "worker-1")
    observed = Observed(None, None, None, None, 1500,
                        {Path(NODELIST): b"192.0.2.10 master\n"})

    [action] = [a for a in planning.plan(desired, observed)
                if a.layer == "files"]

    assert action.data == nodelist.FileChange(
        Path(NODELIST), b"192.0.2.10 master\n", b"10.77.0.1 master\n")


@pytest.mark.parametrize("desired_mtu, route_mtu, expected", [
    (None, None, 1420),
    (None, 1500, 1420),
    (None, 9000, 8920),
    (1380, 1500, 1380),
    (1380, None, 1380),
])
def test_target_mtu_prefers_the_file_then_the_route(desired_mtu, route_mtu,
                                                    expected):
    overrides = {} if desired_mtu is None else {"mtu": desired_mtu}
    desired = make_desired(make_cluster(overrides), "worker-1")
    observed = Observed(None, None, None, None, route_mtu)

    assert planning.target_mtu(desired, observed) == expected


def test_device_change_folds_key_port_and_peer_actions_into_one_message():
    cluster = make_cluster()
    desired = make_desired(cluster, "master")
    stray = base64.b64encode(bytes([7]) * 32).decode()
    observed = Observed(
        link=LinkState(4, "wireguard", 1420, True, ("10.77.0.1/24",)),
        device=DeviceState(OTHER_PRIVATE, 4000, {stray: PeerState(
            stray, None, ("10.77.0.77/32",))}),
        table=TableState(RULESET.digest, "x"), recorded_listing="x",
        route_mtu=1500)
    actions = planning.plan(desired, observed)

    change = planning.device_change(desired, actions)

    assert change.private_key == PRIVATE["master"]
    assert change.listen_port == 51820
    # a new key: every peer set afresh, so the stray one goes too
    assert change.replace_peers
    assert change.set_peers == desired.peers
    assert change.remove_peers == ()
    assert change


def test_device_change_removes_a_stray_peer_when_the_key_stays():
    cluster = make_cluster()
    desired = make_desired(cluster, "master")
    stray = base64.b64encode(bytes([7]) * 32).decode()
    observed = Observed(
        link=LinkState(4, "wireguard", 1420, True, ("10.77.0.1/24",)),
        device=DeviceState(desired.private_key, 4000, {stray: PeerState(
            stray, None, ("10.77.0.77/32",))}),
        table=TableState(RULESET.digest, "x"), recorded_listing="x",
        route_mtu=1500)

    change = planning.device_change(desired, planning.plan(desired, observed))

    assert change.private_key is None and not change.replace_peers
    assert change.listen_port == 51820
    assert change.set_peers == desired.peers
    assert change.remove_peers == (stray,)


def test_device_change_of_a_converged_node_is_empty():
    desired = make_desired(make_cluster(), "worker-1")

    change = planning.device_change(desired, [])

    assert not change
    assert change.private_key is None and change.set_peers == ()


def test_action_json_has_layer_action_and_summary_only():
    desired = make_desired(make_cluster(), "worker-1")
    observed = Observed(None, None, None, None, 1500)

    documents = [a.to_json() for a in planning.plan(desired, observed)]

    assert documents[0] == {"layer": "firewall", "action": "load-table",
                            "summary": "table inet netsetup: create"}
    assert all(set(d) == {"layer", "action", "summary"} for d in documents)
    assert PRIVATE["worker-1"] not in json.dumps(documents)

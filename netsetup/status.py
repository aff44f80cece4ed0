"""What `netsetup status` reports, and whether the node is healthy."""

from __future__ import annotations

import time
from typing import Any

from netsetup.firewall import Ruleset
from netsetup.settings import Settings
from netsetup.plan import Observed
from netsetup.spec import Cluster, Node

# WireGuard stops using a session 180 s after its handshake (REJECT_AFTER_TIME);
# a peer whose last handshake is older than that has no working session.
REJECT_AFTER_TIME = 180


def report(
    cluster: Cluster, node: Node, observed: Observed, ruleset: Ruleset,
    counters: dict[str, int], backend: str, rewritten: dict[str, bool],
    now: float | None = None,
) -> dict[str, Any]:
    """Return the node's status as plain data (printed as text or JSON)."""
    now = time.time() if now is None else now
    # Every key a peer may use (re-keying) names that peer.
    names = {key: peer.name for peer in cluster.peers_of(node)
             for key in peer.candidate_keys}
    link = observed.link
    device = observed.device
    peers = []
    for key, peer in sorted((device.peers if device else {}).items()):
        age = None if not peer.last_handshake else max(0, now - peer.last_handshake)
        peers.append({
            "name": names.get(key, "unknown"),
            "public_key": key,
            "endpoint": None if peer.endpoint is None else "%s:%d" % peer.endpoint,
            "allowed_ips": list(peer.allowed_ips),
            "latest_handshake_seconds": None if age is None else round(age, 1),
            "handshake_ok": age is not None and age < REJECT_AFTER_TIME,
            # a key kept for a rotation, without allowed IPs
            "standby": not peer.allowed_ips,
            "rx_bytes": peer.rx_bytes,
            "tx_bytes": peer.tx_bytes,
        })
    table = observed.table
    result: dict[str, Any] = {
        "node": node.name,
        "role": node.role,
        "backend": backend,
        "interface": {
            "name": cluster.interface,
            "present": link is not None,
            "up": bool(link and link.up),
            "mtu": link.mtu if link else None,
            "addresses": list(link.addresses) if link else [],
            "listen_port": device.listen_port if device else None,
        },
        "peers": peers,
        "missing_peers": sorted(set(names.values()) - {p["name"] for p in peers}),
        "firewall": {
            "loaded": table is not None,
            "current": table is not None and table.digest == ruleset.digest
            and table.listing_digest == observed.recorded_listing,
            "dropped": counters,
        },
        "nodelist": {
            str(path): _file_state(observed.files.get(path), rewritten[str(path)])
            for path in cluster.nodelist
        },
    }
    result["problems"] = problems(result)
    return result


def key_info(cluster: Cluster, node: Node, settings: Settings,
             now: float | None = None) -> dict[str, Any]:
    """Return the age of this node's key and when the next rotation is due."""
    from netsetup import keys
    from netsetup.rekey import key_age, last_rotation

    now = time.time() if now is None else now
    key_path = settings.key_path(cluster.interface)
    age = key_age(key_path, now)
    info: dict[str, Any] = {
        "key_age_days": None if age is None else round(age / 86400, 2),
        "switch_unsettled": keys.switched_at(key_path) is not None,
        "next_rotation": None,
    }
    last = last_rotation(settings)
    if node.is_master:
        due = (last or now) + cluster.rekey_interval_days * 86400
        info["next_rotation"] = time.strftime("%Y-%m-%d %H:%M", time.localtime(due))
        if last is None:
            info["next_rotation"] += " (no rotation yet: at the next timer run)"
    return info


def _file_state(data: bytes | None, rewritten: bool) -> str:
    if data is None:
        return "absent"
    return "rewritten" if rewritten else "not rewritten"


def problems(result: dict[str, Any]) -> list[str]:
    """Return what makes the node unhealthy; empty when it is healthy."""
    found = []
    interface = result["interface"]
    if not interface["present"]:
        found.append(f"{interface['name']}: interface missing")
    elif not interface["up"]:
        found.append(f"{interface['name']}: link is down")
    for name in result["missing_peers"]:
        found.append(f"peer {name}: not configured")
    for peer in result["peers"]:
        if peer.get("standby"):
            continue
        if peer["latest_handshake_seconds"] is None:
            found.append(f"peer {peer['name']}: no handshake yet")
        elif not peer["handshake_ok"]:
            found.append(f"peer {peer['name']}: last handshake "
                         f"{peer['latest_handshake_seconds']:.0f} s ago")
    if not result["firewall"]["loaded"]:
        found.append("table inet netsetup: not loaded")
    elif not result["firewall"]["current"]:
        found.append("table inet netsetup: differs from the cluster file")
    return found


def format_text(result: dict[str, Any]) -> str:
    """Return the status as lines for a terminal."""
    interface = result["interface"]
    lines = [
        f"node {result['node']} ({result['role']}), backend {result['backend']}",
        f"interface {interface['name']}: "
        + ("missing" if not interface["present"] else
           f"{'up' if interface['up'] else 'down'}, mtu {interface['mtu']}, "
           f"{', '.join(interface['addresses']) or 'no address'}, "
           f"listening on {interface['listen_port']}"),
    ]
    for peer in result["peers"]:
        age = peer["latest_handshake_seconds"]
        shake = "never" if age is None else f"{age:.0f} s ago"
        if peer.get("standby"):
            lines.append(f"  peer {peer['name']} {peer['public_key']}: "
                         "standby key (re-keying)")
            continue
        lines.append(
            f"  peer {peer['name']} {peer['public_key']}: endpoint "
            f"{peer['endpoint'] or 'none'}, handshake {shake}, "
            f"rx {peer['rx_bytes']} B, tx {peer['tx_bytes']} B")
    firewall = result["firewall"]
    state = ("current" if firewall["current"] else "outdated") \
        if firewall["loaded"] else "not loaded"
    drops = ", ".join(f"{k} {v}" for k, v in sorted(firewall["dropped"].items()))
    lines.append(f"table inet netsetup: {state}" + (f"; dropped: {drops}"
                                                     if drops else ""))
    for path, state in result["nodelist"].items():
        lines.append(f"node list {path}: {state}")
    info = result.get("keys")
    if info:
        age = info["key_age_days"]
        lines.append(
            "key: " + ("missing" if age is None else f"{age:.1f} days old")
            + (", switch not settled yet" if info["switch_unsettled"] else "")
            + (f"; next rotation {info['next_rotation']}" if info["next_rotation"]
               else "; rotations are run by the master"))
    if result["problems"]:
        lines.append("unhealthy: " + "; ".join(result["problems"]))
    else:
        lines.append("healthy")
    return "\n".join(lines)

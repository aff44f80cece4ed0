"""netsetup.rtnl answers what `ip` answers, inside the lab's namespaces."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import pytest

from netsetup.lab import Lab

# Runs inside a node: what rtnl says about links, addresses and routes.
QUERY = """
import json, socket, sys
from netsetup import rtnl
names, destinations = json.loads(sys.argv[1])
with rtnl.Socket() as sock:
    links = {name: rtnl.link(sock, name=name) for name in names}
    by_index = {l.ifindex: rtnl.link(sock, index=l.ifindex) for l in links.values() if l}
    print(json.dumps({
        "links": {n: l and l._asdict() for n, l in links.items()},
        "same_by_index": all(by_index[l.ifindex] == l for l in links.values() if l),
        "addresses": [a._asdict() for a in rtnl.addresses(sock)],
        # one lookup per request, then all of them batched
        "routes": {d: (r and r._asdict()) for d in destinations
                   for r in rtnl.routes(sock, [d])},
        "batched": [r and r._asdict() for r in rtnl.routes(sock, destinations)],
        "batch": sock._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                 // rtnl.ANSWER_TRUESIZE,
        "families": {f: rtnl.genl_family_exists(f)
                     for f in ("nlctrl", "wireguard", "no-such-family")},
    }))
"""


def rtnl_view(lab: Lab, node: str, names: list[str],
              destinations: list[str]) -> dict[str, Any]:
    result = lab.run(node, [sys.executable, "-c", QUERY,
                            json.dumps([names, destinations])])
    view: dict[str, Any] = json.loads(result.stdout)
    return view


def ip_json(lab: Lab, node: str, *args: str) -> Any:
    return json.loads(lab.run(node, ["ip", "-j", *args]).stdout)


@pytest.mark.parametrize("node", ["worker-1", "outsider"])
def test_links_and_addresses_match_ip(lab: Lab, node: str) -> None:
    ip_links = ip_json(lab, node, "-d", "link", "show")
    names = [entry["ifname"] for entry in ip_links]
    view = rtnl_view(lab, node, names + ["no-such-link"], [])

    assert view["links"]["no-such-link"] is None
    assert view["same_by_index"]
    for entry in ip_links:
        got = view["links"][entry["ifname"]]
        assert got["ifindex"] == entry["ifindex"]
        assert got["name"] == entry["ifname"]
        assert got["mtu"] == entry["mtu"]
        assert bool(got["flags"] & 1) == ("UP" in entry["flags"])
        assert got["kind"] == entry.get("linkinfo", {}).get("info_kind")
    kinds = {got["kind"] for got in view["links"].values() if got}
    assert ("veth" in kinds) and (node == "outsider" or len(kinds) >= 2)

    expected = sorted((entry["ifindex"], info["local"], info["prefixlen"])
                      for entry in ip_json(lab, node, "addr", "show")
                      for info in entry["addr_info"])
    got_addresses = sorted((a["ifindex"], a["address"], a["prefixlen"])
                           for a in view["addresses"])
    assert got_addresses == expected
    assert any(":" in a for _, a, _ in expected)  # both families were read


@contextmanager
def extra_routes(lab: Lab, node: str, with_mtu: str) -> Iterator[None]:
    """Add a route to `with_mtu` with an MTU metric of its own (1300) and an
    unreachable 203.0.113.0/24, in a namespace the test owns; remove both."""
    lab.run(node, ["ip", "route", "add", with_mtu, "dev", "eth0", "mtu", "1300"])
    lab.run(node, ["ip", "route", "add", "unreachable", "203.0.113.0/24"])
    try:
        yield
    finally:
        lab.run(node, ["ip", "route", "del", with_mtu], check=False)
        lab.run(node, ["ip", "route", "del", "unreachable", "203.0.113.0/24"],
                check=False)


def test_routes_match_ip_route_get(lab: Lab) -> None:
    node = "outsider"
    with extra_routes(lab, node, "198.51.100.7/32"):
        destinations = ["192.0.2.11", "10.77.0.11", "198.51.100.7",
                        "2001:db8::11", "203.0.113.9"]
        view = rtnl_view(lab, node, [], destinations)
        for destination in destinations:
            got = view["routes"][destination]
            answer = lab.run(node, ["ip", "-j", "route", "get", destination],
                             check=False)
            if answer.returncode != 0:
                assert got is None, destination
                continue
            (route,) = json.loads(answer.stdout)
            index = ip_json(lab, node, "link", "show", route["dev"])[0]["ifindex"]
            assert got["oif"] == index, destination
            assert got["mtu"] == route.get("metrics", [{}])[0].get("mtu"), destination
        assert view["routes"]["203.0.113.9"] is None
        assert view["routes"]["198.51.100.7"]["mtu"] == 1300
        assert view["batched"] == [view["routes"][d] for d in destinations]


def test_batched_routes_keep_their_order(lab: Lab) -> None:
    # More lookups than one datagram carries, refused ones among them: each
    # answer must land at its own question.
    node = "outsider"
    with extra_routes(lab, node, "198.51.100.0/25"):
        numbers = range(1, 200)
        destinations = [address for i in numbers
                        for address in (f"198.51.100.{i}", f"203.0.113.{i}",
                                        f"192.0.2.{i}", f"2001:db8::{i:x}")]
        destinations += destinations[:7]  # asked twice
        view = rtnl_view(lab, node, [], destinations)
        assert 1 <= view["batch"] < len(destinations) // 4
        assert view["batched"] == [view["routes"][d] for d in destinations]
        got = dict(zip(destinations, view["batched"]))
        assert all(got[f"203.0.113.{i}"] is None for i in numbers)
        # .1 to .127 take the /25 and its MTU, the rest whatever else there is
        assert [(got[f"198.51.100.{i}"] or {}).get("mtu") == 1300
                for i in numbers] == [i < 128 for i in numbers]
        assert all(got[f"192.0.2.{i}"]["mtu"] is None for i in numbers)


def test_generic_netlink_families(lab: Lab) -> None:
    view = rtnl_view(lab, "worker-1", [], [])
    assert view["families"]["nlctrl"] is True
    assert view["families"]["no-such-family"] is False
    # The family exists exactly when the kernel has WireGuard loaded.
    loaded = lab.run("worker-1", ["test", "-d", "/sys/module/wireguard"],
                     check=False).returncode == 0
    assert view["families"]["wireguard"] is loaded

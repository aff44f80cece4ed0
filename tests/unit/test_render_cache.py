"""The ruleset cache: a hit is the same ruleset, anything else renders anew."""

from __future__ import annotations

import tomllib
from pathlib import Path

from netsetup import firewall
from netsetup.spec import Cluster, parse

BASE = """
[cluster]
name = "mascot"
interface = "wg-mascot"
network = "10.77.0.0/24"
{extra}

[[nodes]]
name = "master"
role = "master"
address = "192.0.2.10"
vpn_address = "10.77.0.1"
public_key = "{key_b}"

[[nodes]]
name = "worker-1"
address = "192.0.2.11"
vpn_address = "10.77.0.11"
public_key = "{key_c}"
"""


def cluster(extra: str = "") -> Cluster:
    text = BASE.format(extra=extra, key_b="B" * 43 + "=", key_c="C" * 43 + "=")
    return parse(tomllib.loads(text), "cluster.toml")


def test_cached_rendering_equals_a_fresh_one(tmp_path: Path) -> None:
    c = cluster()
    cache = tmp_path / "ruleset.cache"
    first = firewall.render(c, c.node("worker-1"), cache)
    assert cache.exists()
    assert firewall.render(c, c.node("worker-1"), cache) == first
    assert firewall.render(c, c.node("worker-1")) == first


def test_changed_values_are_not_served_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "ruleset.cache"
    plain = cluster()
    firewall.render(plain, plain.node("worker-1"), cache)
    admin = cluster('admin_sources = ["198.51.100.0/24"]')
    changed = firewall.render(admin, admin.node("worker-1"), cache)
    assert "198.51.100.0/24" in changed.text
    assert changed == firewall.render(admin, admin.node("worker-1"))


def test_a_damaged_cache_is_ignored(tmp_path: Path) -> None:
    c = cluster()
    cache = tmp_path / "ruleset.cache"
    cache.write_bytes(b"\xff\xfe not a cache")
    assert firewall.render(c, c.node("worker-1"), cache) == \
        firewall.render(c, c.node("worker-1"))

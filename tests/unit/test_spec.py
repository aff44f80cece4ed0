"""Tests for netsetup.spec: loading and validating the cluster file."""

from __future__ import annotations

import base64
import ipaddress
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Callable

import pytest

from netsetup import spec
from netsetup.errors import IdentityError, SpecError


def b64_key(byte: int, length: int = 32) -> str:
    return base64.b64encode(bytes([byte]) * length).decode()


K1, K2, K3 = b64_key(1), b64_key(2), b64_key(3)

BASE = f"""\
# The Mascot cluster.
[cluster]
name = "mascot"
interface = "wg-mascot"
network = "10.77.0.0/24"
listen_port = 51820
protected_ports = [22, 5001]
nodelist = "/usr/local/mascot/config/nodelist.txt"

[[nodes]]
name = "master-pc"
role = "master"
address = "192.0.2.10"
vpn_address = "10.77.0.1"
public_key = "{K1}"

[[nodes]]
name = "worker-1"
role = "worker"
address = "192.0.2.11"
vpn_address = "10.77.0.11"
public_key = "{K2}"

[[nodes]]
name = "worker-2"
address = "192.0.2.12"
vpn_address = "10.77.0.12"
public_key = "{K3}"
"""

# The same cluster with every optional field left out.
MINIMAL = f"""\
[cluster]
name = "mascot"
interface = "wg-mascot"
network = "10.77.0.0/24"

[[nodes]]
name = "master-pc"
role = "master"
address = "192.0.2.10"
vpn_address = "10.77.0.1"
public_key = "{K1}"

[[nodes]]
name = "worker-1"
address = "192.0.2.11"
vpn_address = "10.77.0.11"
public_key = "{K2}"
"""

NODES_ONLY = BASE[BASE.index("[[nodes]]"):]


def parse(text: str) -> spec.Cluster:
    return spec.parse(tomllib.loads(text), "cluster.toml")


def write(tmp_path: Path, data: str | bytes) -> Path:
    path = tmp_path / "cluster.toml"
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


# --- edits of the base text ---------------------------------------------------

Edit = Callable[[str], str]


def sub(old: str, new: str) -> Edit:
    """Replace the one occurrence of `old` in the base text by `new`."""

    def edit(text: str) -> str:
        assert text.count(old) == 1, f"{old!r} must occur exactly once"
        return text.replace(old, new)

    return edit


def drop(line: str) -> Edit:
    return sub(line + "\n", "")


def after(anchor: str, line: str) -> Edit:
    return sub(anchor + "\n", anchor + "\n" + line + "\n")


def chain(*edits: Edit) -> Edit:
    def edit(text: str) -> str:
        for step in edits:
            text = step(text)
        return text

    return edit


def full(text: str | bytes) -> Callable[[str], str | bytes]:
    return lambda _base: text


W1_NAME = 'name = "worker-1"'
W2_NAME = 'name = "worker-2"'
M_ADDR = 'address = "192.0.2.10"'
W2_ADDR = 'address = "192.0.2.12"'
W2_VPN = 'vpn_address = "10.77.0.12"'
W2_KEY = f'public_key = "{K3}"'
IFACE = 'interface = "wg-mascot"'
NETWORK = 'network = "10.77.0.0/24"'
LPORT = "listen_port = 51820"
PPORTS = "protected_ports = [22, 5001]"
NODELIST = 'nodelist = "/usr/local/mascot/config/nodelist.txt"'


def noncanonical(key: str) -> str:
    """Return another spelling of `key`: the unused low bits set."""
    assert key.endswith("=") and not key.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(key[-2])
    other = key[:-2] + alphabet[last | 1 if last % 4 == 0 else last & ~3] + "="
    assert other != key
    assert base64.b64decode(other, validate=True) == base64.b64decode(key)
    return other


# (id, edit, expected message part, expected field, expected node)
BAD_FILES: list[tuple[str, Callable[[str], str | bytes], str, str | None,
                      str | None]] = [
    # duplicates
    ("duplicate_name", sub(W2_NAME, W1_NAME),
     "worker-1 is also used by node 'worker-1'", "name", "worker-1"),
    ("duplicate_name_differing_in_case", sub(W2_NAME, 'name = "Worker-1"'),
     "is also used by node 'worker-1'", "name", "Worker-1"),
    ("host_name_equal_to_other_node_name",
     after(W2_KEY, 'hostnames = ["WORKER-1"]'),
     "is also used by node 'worker-1'", "name", "worker-2"),
    ("duplicate_lan_address", sub(W2_ADDR, 'address = "192.0.2.11"'),
     "192.0.2.11 is also used by node 'worker-1'", "address", "worker-2"),
    ("duplicate_vpn_address", sub(W2_VPN, 'vpn_address = "10.77.0.11"'),
     "10.77.0.11 is also used by node 'worker-1'", "vpn_address", "worker-2"),
    # a LAN address inside the VPN network is refused before duplicates
    ("lan_address_equal_to_other_vpn_address",
     sub(W2_ADDR, 'address = "10.77.0.1"'),
     "10.77.0.1 is inside the VPN network", "address", "worker-2"),
    ("duplicate_public_key", sub(W2_KEY, f'public_key = "{K2}"'),
     "is also used by node 'worker-1'", "public_key", "worker-2"),
    ("duplicate_public_key_spelled_differently",
     sub(W2_KEY, f'public_key = "{noncanonical(K2)}"'),
     "is also used by node 'worker-1'", "public_key", "worker-2"),
    ("lan_address_inside_the_vpn_network",
     sub(W2_ADDR, 'address = "10.77.0.200"'),
     "10.77.0.200 is inside the VPN network 10.77.0.0/24", "address",
     "worker-2"),
    # VPN addresses
    ("vpn_address_outside_network", sub(W2_VPN, 'vpn_address = "10.78.0.12"'),
     "10.78.0.12 is outside network 10.77.0.0/24", "vpn_address", "worker-2"),
    ("vpn_address_is_network_address",
     sub(W2_VPN, 'vpn_address = "10.77.0.0"'),
     "network or broadcast address", "vpn_address", "worker-2"),
    ("vpn_address_is_broadcast_address",
     sub(W2_VPN, 'vpn_address = "10.77.0.255"'),
     "network or broadcast address", "vpn_address", "worker-2"),
    ("ipv6_vpn_address_in_ipv4_network",
     sub(W2_VPN, 'vpn_address = "fd00::12"'),
     "is outside network", "vpn_address", "worker-2"),
    ("vpn_address_not_an_address", sub(W2_VPN, 'vpn_address = "10.77.0.x"'),
     "is not an IP address", "vpn_address", "worker-2"),
    ("vpn_address_missing", drop(W2_VPN),
     "is required", "vpn_address", "worker-2"),
    # interface
    ("interface_of_16_bytes", sub(IFACE, 'interface = "wg-mascot-123456"'),
     "is not a valid interface name", "cluster.interface", None),
    ("interface_with_space", sub(IFACE, 'interface = "wg mascot"'),
     "is not a valid interface name", "cluster.interface", None),
    ("interface_with_slash", sub(IFACE, 'interface = "wg/mascot"'),
     "is not a valid interface name", "cluster.interface", None),
    ("interface_empty", sub(IFACE, 'interface = ""'),
     "is not a valid interface name", "cluster.interface", None),
    ("interface_with_trailing_newline", sub(IFACE, 'interface = "wg0\\n"'),
     "is not a valid interface name", "cluster.interface", None),
    ("interface_dot", sub(IFACE, 'interface = "."'),
     "is not a valid interface name", "cluster.interface", None),
    ("interface_dot_dot", sub(IFACE, 'interface = ".."'),
     "is not a valid interface name", "cluster.interface", None),
    ("interface_not_a_string", sub(IFACE, "interface = 7"),
     "must be a string", "cluster.interface", None),
    ("interface_missing", drop(IFACE), "is required", "cluster.interface", None),
    # network
    ("network_missing", drop(NETWORK), "is required", "cluster.network", None),
    ("network_with_host_bits_set", sub(NETWORK, 'network = "10.77.0.1/24"'),
     "has host bits set", "cluster.network", None),
    ("network_prefix_too_long", sub(NETWORK, 'network = "10.77.0.0/33"'),
     "10.77.0.0/33", "cluster.network", None),
    # names
    ("cluster_name_missing", drop('name = "mascot"'),
     "must be a short name", "cluster.name", None),
    ("cluster_name_with_space", sub('name = "mascot"', 'name = "my cluster"'),
     "must be a short name", "cluster.name", None),
    ("node_name_missing", drop(W2_NAME),
     "must be a host name", "nodes[2].name", None),
    ("node_name_with_trailing_newline", sub(W2_NAME, 'name = "worker-2\\n"'),
     "must be a host name", "nodes[2].name", None),
    ("node_name_with_underscore_first", sub(W2_NAME, 'name = "_worker-2"'),
     "must be a host name", "nodes[2].name", None),
    ("host_name_invalid", after(W2_KEY, 'hostnames = ["bad name"]'),
     "'bad name' is not a host name", "hostnames[0]", "worker-2"),
    ("host_names_not_a_list", after(W2_KEY, 'hostnames = "w2"'),
     "must be a list", "hostnames", "worker-2"),
    # keys
    ("public_key_not_base64", sub(W2_KEY, 'public_key = "not*base64!"'),
     "is not base64", "public_key", "worker-2"),
    ("public_key_with_newline", sub(W2_KEY, f'public_key = "{K3}\\n"'),
     "is not base64", "public_key", "worker-2"),
    ("public_key_of_31_bytes", sub(W2_KEY, f'public_key = "{b64_key(3, 31)}"'),
     "decodes to 31 bytes", "public_key", "worker-2"),
    ("public_key_of_33_bytes", sub(W2_KEY, f'public_key = "{b64_key(3, 33)}"'),
     "decodes to 33 bytes", "public_key", "worker-2"),
    ("public_key_missing", drop(W2_KEY),
     "is required", "public_key", "worker-2"),
    # ports
    ("listen_port_0", sub(LPORT, "listen_port = 0"),
     "0 is not a port (1-65535)", "cluster.listen_port", None),
    ("listen_port_65536", sub(LPORT, "listen_port = 65536"),
     "65536 is not a port", "cluster.listen_port", None),
    ("listen_port_negative", sub(LPORT, "listen_port = -1"),
     "-1 is not a port", "cluster.listen_port", None),
    ("listen_port_as_string", sub(LPORT, 'listen_port = "51820"'),
     "must be an integer, got '51820'", "cluster.listen_port", None),
    ("listen_port_as_bool", sub(LPORT, "listen_port = true"),
     "must be an integer, got True", "cluster.listen_port", None),
    ("listen_port_as_float", sub(LPORT, "listen_port = 51820.0"),
     "must be an integer", "cluster.listen_port", None),
    ("protected_port_0", sub(PPORTS, "protected_ports = [22, 0]"),
     "0 is not a port", "cluster.protected_ports[1]", None),
    ("protected_port_65536", sub(PPORTS, "protected_ports = [65536]"),
     "65536 is not a port", "cluster.protected_ports[0]", None),
    ("protected_port_as_string", sub(PPORTS, 'protected_ports = ["22"]'),
     "must be an integer, got '22'", "cluster.protected_ports[0]", None),
    ("protected_port_as_bool", sub(PPORTS, "protected_ports = [22, true]"),
     "must be an integer, got True", "cluster.protected_ports[1]", None),
    ("protected_ports_duplicate", sub(PPORTS, "protected_ports = [22, 5001, 22]"),
     "lists a port twice", "cluster.protected_ports", None),
    ("protected_ports_empty", sub(PPORTS, "protected_ports = []"),
     "must not be empty", "cluster.protected_ports", None),
    ("protected_ports_not_a_list", sub(PPORTS, "protected_ports = 22"),
     "must be a list", "cluster.protected_ports", None),
    ("ssh_port_0", after(LPORT, "ssh_port = 0"),
     "0 is not a port", "cluster.ssh_port", None),
    # unknown keys
    ("unknown_key_at_top_level", lambda text: 'colour = "blue"\n' + text,
     "unknown key", "colour", None),
    ("unknown_table_at_top_level", lambda text: text + "\n[extras]\nx = 1\n",
     "unknown key", "extras", None),
    ("unknown_key_in_cluster", after(NETWORK, "mut = 1400"),
     "unknown key", "cluster.mut", None),
    ("unknown_key_in_node", after(W2_VPN, 'vpn_adress = "10.77.0.12"'),
     "unknown key", "vpn_adress", "worker-2"),
    # roles
    ("role_misspelled", sub('role = "worker"', 'role = "wroker"'),
     "'wroker' is not one of master, worker", "role", "worker-1"),
    ("role_capitalised", sub('role = "master"', 'role = "Master"'),
     "'Master' is not one of", "role", "master-pc"),
    ("zero_masters", sub('role = "master"', 'role = "worker"'),
     "need exactly one master, found 0", "role", None),
    ("two_masters", sub('role = "worker"', 'role = "master"'),
     "need exactly one master, found 2 (master-pc, worker-1)", "role", None),
    # LAN addresses
    ("address_is_a_host_name", sub(M_ADDR, 'address = "master.example.org"'),
     "'master.example.org' is not an IP address", "address", "master-pc"),
    ("address_unspecified_v4", sub(M_ADDR, 'address = "0.0.0.0"'),
     "0.0.0.0 cannot be a node address", "address", "master-pc"),
    ("address_unspecified_v6", sub(M_ADDR, 'address = "::"'),
     ":: cannot be a node address", "address", "master-pc"),
    ("address_multicast", sub(M_ADDR, 'address = "224.0.0.1"'),
     "224.0.0.1 cannot be a node address", "address", "master-pc"),
    ("address_with_prefix", sub(M_ADDR, 'address = "192.0.2.10/24"'),
     "is not an IP address", "address", "master-pc"),
    ("address_missing", drop(M_ADDR), "is required", "address", "master-pc"),
    # other cluster fields
    ("admin_source_not_an_address",
     after(PPORTS, 'admin_sources = ["bastion.example.org"]'),
     "'bastion.example.org' is not an address or network",
     "cluster.admin_sources[0]", None),
    ("admin_source_not_a_string", after(PPORTS, "admin_sources = [22]"),
     "must be a string", "cluster.admin_sources[0]", None),
    ("nodelist_relative_path",
     sub(NODELIST, 'nodelist = "config/nodelist.txt"'),
     "'config/nodelist.txt' is not an absolute path", "cluster.nodelist[0]",
     None),
    ("nodelist_list_with_relative_path",
     sub(NODELIST, 'nodelist = ["/srv/a.txt", "b.txt"]'),
     "is not an absolute path", "cluster.nodelist[1]", None),
    ("nodelist_not_a_path", sub(NODELIST, "nodelist = 5"),
     "must be a path or a list of paths", "cluster.nodelist", None),
    ("mtu_below_1280", after(LPORT, "mtu = 1279"),
     "1279 is out of range (1280-9000)", "cluster.mtu", None),
    ("mtu_above_9000", after(LPORT, "mtu = 9001"),
     "9001 is out of range", "cluster.mtu", None),
    ("mtu_as_string", after(LPORT, 'mtu = "1420"'),
     "must be an integer", "cluster.mtu", None),
    ("persistent_keepalive_negative", after(LPORT, "persistent_keepalive = -1"),
     "-1 is out of range (0-65535)", "cluster.persistent_keepalive", None),
    ("persistent_keepalive_as_bool", after(LPORT, "persistent_keepalive = true"),
     "must be an integer, got True", "cluster.persistent_keepalive", None),
    ("persistent_keepalive_too_large",
     after(LPORT, "persistent_keepalive = 65536"),
     "65536 is out of range", "cluster.persistent_keepalive", None),
    ("rekey_interval_0", after(LPORT, "rekey_interval_days = 0"),
     "0 is out of range (1-3650)", "cluster.rekey_interval_days", None),
    # file shape
    ("not_toml", full("[cluster\nname = \n"), "not valid TOML", None, None),
    ("not_utf8", lambda text: text.encode().replace(b"# The", b"# \xff The"),
     "not UTF-8 text", None, None),
    ("nodes_not_an_array_of_tables",
     full(BASE[: BASE.index("[[nodes]]")].replace(
         "[cluster]", 'nodes = ["master-pc", "worker-1"]\n[cluster]')),
     "must be a table", "nodes[0]", None),
    ("nodes_a_string", full(BASE[: BASE.index("[[nodes]]")].replace(
        "[cluster]", 'nodes = "master-pc"\n[cluster]')),
     "missing [[nodes]] entries", "nodes", None),
    ("no_nodes", full(BASE[: BASE.index("[[nodes]]")]),
     "missing [[nodes]] entries", "nodes", None),
    ("missing_cluster_table", full(NODES_ONLY),
     "missing [cluster] table", "cluster", None),
    ("cluster_not_a_table", full('cluster = "mascot"\n' + NODES_ONLY),
     "missing [cluster] table", "cluster", None),
    ("empty_file", full(""), "missing [cluster] table", "cluster", None),
]


def test_bad_file_table_is_large_enough_and_ids_are_unique():
    ids = [case[0] for case in BAD_FILES]
    assert len(ids) >= 35
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    "edit, message, field, node",
    [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
def test_bad_cluster_file_is_rejected_with_one_line_naming_file_node_and_field(
    tmp_path, edit, message, field, node,
):
    path = write(tmp_path, edit(BASE))

    with pytest.raises(SpecError) as caught:
        spec.load(path)

    error = caught.value
    text = str(error)
    assert message in text
    assert error.field == field
    assert error.node == node
    assert error.path == str(path)
    assert "\n" not in text and "\r" not in text
    assert text.startswith(f"{path}: ")
    if node is not None:
        assert f"node {node!r}" in text
    if field is not None:
        assert f": {field}: " in text


def test_base_file_loads_with_the_values_it_states():
    cluster = parse(BASE)

    assert cluster.path == "cluster.toml"
    assert cluster.name == "mascot"
    assert cluster.interface == "wg-mascot"
    assert cluster.network == ipaddress.ip_network("10.77.0.0/24")
    assert cluster.listen_port == 51820
    assert cluster.protected_ports == (22, 5001)
    assert cluster.nodelist == (Path("/usr/local/mascot/config/nodelist.txt"),)
    assert [node.name for node in cluster.nodes] == [
        "master-pc", "worker-1", "worker-2"]
    assert cluster.master.name == "master-pc"
    assert [node.name for node in cluster.workers] == ["worker-1", "worker-2"]
    worker = cluster.node("worker-1")
    assert worker.role == "worker"
    assert worker.address == ipaddress.ip_address("192.0.2.11")
    assert worker.vpn_address == ipaddress.ip_address("10.77.0.11")
    assert worker.public_key == K2
    assert not worker.is_master


def test_base_file_gets_the_documented_defaults():
    cluster = parse(BASE)

    assert cluster.ssh_port == 22
    assert cluster.admin_sources == ()
    assert cluster.mtu is None
    assert cluster.persistent_keepalive == 25
    assert cluster.rekey_interval_days == 7
    worker = cluster.node("worker-2")
    assert worker.role == "worker"
    assert worker.hostnames == ()


def test_minimal_file_defaults_port_protected_ports_and_nodelist():
    cluster = parse(MINIMAL)

    assert cluster.listen_port == 51820
    assert cluster.protected_ports == (22, 5001)
    assert cluster.nodelist == (Path(spec.DEFAULT_NODELIST),)


def test_default_protected_ports_follow_ssh_port():
    cluster = parse(after(IFACE, "ssh_port = 2222")(MINIMAL))

    assert cluster.ssh_port == 2222
    assert cluster.protected_ports == (2222, 5001)


def test_optional_fields_are_read_when_given():
    text = chain(
        after(LPORT, "mtu = 1380"),
        after(LPORT, "persistent_keepalive = 0"),
        after(LPORT, "rekey_interval_days = 30"),
        after(PPORTS, 'admin_sources = ["198.51.100.7", "2001:db8::/64"]'),
        sub(NODELIST, 'nodelist = ["/srv/a/nodelist.txt", "/srv/b/nodes.txt"]'),
        after(W2_KEY, 'hostnames = ["w2", "w2.lan"]'),
    )(BASE)

    cluster = parse(text)

    assert cluster.mtu == 1380
    assert cluster.persistent_keepalive == 0
    assert cluster.rekey_interval_days == 30
    assert cluster.admin_sources == (
        ipaddress.ip_network("198.51.100.7/32"),
        ipaddress.ip_network("2001:db8::/64"))
    assert cluster.nodelist == (Path("/srv/a/nodelist.txt"),
                                Path("/srv/b/nodes.txt"))
    assert cluster.node("worker-2").hostnames == ("w2", "w2.lan")


def test_default_protected_ports_do_not_repeat_an_ssh_port_of_5001():
    # Leaving protected_ports out must not produce "lists a port twice".
    cluster = parse(after(IFACE, "ssh_port = 5001")(MINIMAL))

    assert cluster.protected_ports == (5001,)


@pytest.mark.parametrize("interface", ["w", "wg-mascot-12345", "wg_0.a-b"])
def test_interface_names_up_to_15_bytes_are_accepted(interface):
    cluster = parse(sub(IFACE, f'interface = "{interface}"')(BASE))

    assert cluster.interface == interface


def test_ipv6_cluster_is_accepted():
    text = chain(
        sub(NETWORK, 'network = "fd00:77::/64"'),
        sub('vpn_address = "10.77.0.1"', 'vpn_address = "fd00:77::1"'),
        sub('vpn_address = "10.77.0.11"', 'vpn_address = "fd00:77::11"'),
        sub(W2_VPN, 'vpn_address = "fd00:77::12"'),
        sub(W2_ADDR, 'address = "2001:db8::12"'),
    )(BASE)

    cluster = parse(text)

    assert cluster.node("worker-2").vpn_address == ipaddress.ip_address(
        "fd00:77::12")
    assert cluster.node("worker-2").address == ipaddress.ip_address(
        "2001:db8::12")


def test_ipv4_vpn_address_in_ipv6_network_is_rejected():
    text = sub(NETWORK, 'network = "fd00:77::/64"')(BASE)

    with pytest.raises(SpecError) as caught:
        parse(text)

    assert caught.value.field == "vpn_address"
    assert caught.value.node == "master-pc"
    assert "outside network fd00:77::/64" in str(caught.value)


def test_public_key_is_stored_in_the_spelling_the_device_reports():
    # WireGuard reports keys base64-encoded from the raw bytes; a file key
    # with the unused low bits set names the same key, and must compare
    # equal to the device's spelling or the plan would never converge.
    text = sub(W2_KEY, f'public_key = "{noncanonical(K3)}"')(BASE)

    cluster = parse(text)

    assert cluster.node("worker-2").public_key == K3


def test_unreadable_file_is_reported_with_its_path(tmp_path):
    path = tmp_path / "missing.toml"

    with pytest.raises(SpecError) as caught:
        spec.load(path)

    assert str(caught.value).startswith(f"{path}: cannot read")
    assert caught.value.field is None


def test_a_node_may_list_its_own_name_as_host_name():
    cluster = parse(after(W2_KEY, 'hostnames = ["WORKER-2"]')(BASE))

    assert cluster.node("worker-2").hostnames == ("WORKER-2",)


def test_peers_form_a_star_around_the_master():
    cluster = parse(BASE)

    assert [n.name for n in cluster.peers_of(cluster.master)] == [
        "worker-1", "worker-2"]
    assert [n.name for n in cluster.peers_of(cluster.node("worker-2"))] == [
        "master-pc"]


# --- identify -----------------------------------------------------------------


def addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def test_identify_by_name_ignores_the_addresses():
    cluster = parse(BASE)

    node = spec.identify(cluster, [addr("192.0.2.10")], "worker-2")

    assert node.name == "worker-2"


def test_identify_by_unknown_name_fails():
    cluster = parse(BASE)

    with pytest.raises(IdentityError, match="no node named 'worker-9'"):
        spec.identify(cluster, [addr("192.0.2.11")], "worker-9")


@pytest.mark.parametrize("local, expected", [
    (["127.0.0.1", "192.0.2.11", "fe80::1"], "worker-1"),
    (["10.77.0.12"], "worker-2"),
    (["10.77.0.1", "192.0.2.10"], "master-pc"),
])
def test_identify_by_address_finds_the_one_matching_node(local, expected):
    cluster = parse(BASE)

    node = spec.identify(cluster, [addr(a) for a in local], None)

    assert node.name == expected


def test_identify_without_matching_address_asks_for_node_name():
    cluster = parse(BASE)

    with pytest.raises(IdentityError) as caught:
        spec.identify(cluster, [addr("127.0.0.1"), addr("192.0.2.99")], None)

    assert str(caught.value).startswith("cluster.toml: ")
    assert "--node NAME" in str(caught.value)


def test_identify_with_addresses_of_two_nodes_names_both():
    cluster = parse(BASE)

    with pytest.raises(IdentityError) as caught:
        spec.identify(cluster, [addr("192.0.2.10"), addr("10.77.0.11")], None)

    assert "several nodes (master-pc, worker-1)" in str(caught.value)
    assert "--node NAME" in str(caught.value)


# --- command line --------------------------------------------------------------


@pytest.mark.parametrize("edit, field, node", [
    (sub(LPORT, "listen_port = 0"), "cluster.listen_port", None),
    (sub(W2_VPN, 'vpn_address = "10.78.0.12"'), "vpn_address", "worker-2"),
], ids=["cluster_field", "node_field"])
def test_cli_plan_with_bad_file_exits_2_with_one_line_on_stderr(
    tmp_path, edit, field, node,
):
    path = write(tmp_path, edit(BASE))
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("NETSETUP_")}
    env["NETSETUP_STATE_DIR"] = str(tmp_path / "state")
    env["NETSETUP_RUN_DIR"] = str(tmp_path / "run")

    result = subprocess.run(
        [sys.executable, "-m", "netsetup", "--config", str(path), "plan",
         "--node", "master-pc"],
        capture_output=True, text=True, env=env, timeout=60, check=False)

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    assert f": {field}: " in lines[0]
    if node is not None:
        assert f"node {node!r}" in lines[0]
    assert not (tmp_path / "state").exists()
    assert not (tmp_path / "run").exists()

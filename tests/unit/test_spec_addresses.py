"""Tests for netsetup.spec.parse_address and the fast checks built on it.

parse_address reads an address with socket.inet_pton and leaves the rest
to ipaddress; it must answer exactly as ipaddress.ip_address does, so the
tests compare the two on text chosen to sit at the edge of the grammar.
"""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from netsetup import spec
from netsetup.errors import SpecError


def outcome(parse: Any, text: str) -> tuple[Any, ...]:
    """Return what `parse` makes of `text`: the whole address, or the error."""
    try:
        address = parse(text)
    except ValueError as exc:
        return ("error", str(exc))
    # Equality ignores nothing that matters here, but the type, the text and
    # the scope id are compared too, so that no difference can hide.
    return ("address", type(address), address, str(address),
            getattr(address, "scope_id", None))


def same_as_ipaddress(text: str) -> None:
    expected = outcome(ipaddress.ip_address, text)
    assert outcome(spec.parse_address, text) == expected


EDGES = [
    "1.2.3.4", "0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3.04",
    "00.0.0.0", "1.2.3", "127.1", "1.2.3.4.5", "1..2.3", "256.1.1.1",
    "0x1.2.3.4", "+1.2.3.4", "1.2.3.-4", "1.2.3.4 ", " 1.2.3.4", "1.2.3.4\n",
    "1.2.3.4\t", "1.2.3.4\x00", "1.2.3.4\x00x", "\uff11.2.3.4", "1.2.3.\u0664",
    "\ud800", "", "::", ":::", "::::", "::1", "FE80::ABCD", "fe80::1%eth0",
    "fe80::1%", "fe80::1%%", "::ffff:1.2.3.4", "::1.2.3.4", "::ffff:01.2.3.4",
    "::ffff:1.2.3", "::ffff:256.1.1.1", "::ffff:1.2.3.4%x", "1::2::3",
    "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::",
    "::1:2:3:4:5:6:7", "::1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8::",
    "1:2:3:4:5:6::7:8", "0001::", "00001::", "1:2:3:4:5:6:1.2.3.4",
    "1:2:3:4:5:6:7:1.2.3.4", "1:2:3:4:5::1.2.3.4", "1:2:3:4:5:6:7::1.2.3.4",
    "1.2.3.4::", "::1.2.3.4:1", ":1::", "1::2:", ":1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:", "::1 ", " ::1", "::1\n", "::1\x00", "[::1]", "::g",
    "::0.0.0.0", "0:0:0:0:0:0:0.0.0.0", "1:2:3:4:5:6:7:",
]


@pytest.mark.parametrize("text", EDGES)
def test_parse_address_answers_as_ipaddress_on_edge_cases(text: str) -> None:
    same_as_ipaddress(text)


def test_parse_address_reads_plain_addresses_without_ipaddress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Else the comparisons below would only compare ipaddress with itself.
    def refuse(text: str) -> None:
        raise AssertionError(f"{text!r} went to ipaddress.ip_address")

    monkeypatch.setattr(ipaddress, "ip_address", refuse)
    for text in ("10.77.0.1", "0.0.0.0", "fd00::1", "::ffff:1.2.3.4", "::"):
        assert spec.parse_address(text)


def decimal(number: int, zeros: int) -> str:
    return "0" * zeros + str(number)


# Mostly well formed, so that inet_pton's answers get compared too, with
# a slip now and then: a stray character, a leading zero, a part too many.
SLIP = st.sampled_from(["", "", "", "", "", "", " ", "\t", "\n", "\x00",
                        "%", ".", ":"])
OCTET = st.builds(decimal, st.integers(0, 255) | st.integers(0, 999),
                  st.sampled_from([0] * 8 + [1, 2]))
QUAD = st.builds(
    lambda octets, before, after: before + ".".join(octets) + after,
    st.lists(OCTET, min_size=4, max_size=4) | st.lists(OCTET, max_size=6),
    SLIP, SLIP,
)
GROUP = (st.text("0123456789abcdefABCDEF", min_size=1, max_size=4)
         | st.text("0123456789abcdefABCDEFg", max_size=5))
ZONE = st.sampled_from(["", "", "", "", "%", "%eth0", "%1", "%%", "%/", "% "])


@st.composite
def near_ipv6(draw: st.DrawFn) -> str:
    count = draw(st.sampled_from([8, 8, 6, 9]) | st.integers(0, 9))
    groups = draw(st.lists(GROUP, min_size=count, max_size=count))
    if draw(st.booleans()):
        # "::" in place of none or some groups, at either end or inside
        at = draw(st.integers(0, len(groups)))
        del groups[at:at + draw(st.integers(0, 3))]
        if not groups:
            groups = ["", "", ""]
        elif at in (0, len(groups)):
            groups[at:at] = ["", ""]
        else:
            groups.insert(at, "")
    if draw(st.booleans()) and groups:
        groups[-2:] = [draw(QUAD)]  # an IPv4 address for the last 32 bits
    return draw(SLIP) + ":".join(groups) + draw(ZONE) + draw(SLIP)


@st.composite
def spellings(draw: st.DrawFn) -> str:
    """Draw an address in one of its spellings, maybe with one slip in it."""
    address = draw(st.ip_addresses())
    forms: list[str] = [str(address), address.exploded, str(address).upper()]
    if address.version == 6:
        last = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        forms += [address.exploded[:30] + str(last), str(address) + "%eth0"]
    text: str = draw(st.sampled_from(forms))
    at = draw(st.integers(0, len(text)))
    slips = ["", "", "", "", "delete", *"0.:% \t\n\x00g"]
    slip: str = draw(st.sampled_from(slips))
    if slip == "delete":
        return text[:at] + text[at + 1:]
    return text[:at] + slip + text[at:]


ALPHABET = (st.characters(codec="utf-8")
            | st.sampled_from("0123456789abcdef:.%"))


@settings(max_examples=500)
@given(st.text(ALPHABET, max_size=45))
@example("1.2.3.4")
@example("::")
def test_parse_address_answers_as_ipaddress_on_any_text(text: str) -> None:
    same_as_ipaddress(text)


@settings(max_examples=800)
@given(spellings())
def test_parse_address_answers_as_ipaddress_on_spelled_addresses(
    text: str,
) -> None:
    same_as_ipaddress(text)


@settings(max_examples=500)
@given(QUAD)
@example("01.2.3.4")
def test_parse_address_answers_as_ipaddress_on_near_dotted_quads(
    text: str,
) -> None:
    same_as_ipaddress(text)


@settings(max_examples=500)
@given(near_ipv6())
@example("fe80::1%eth0")
@example("::ffff:1.2.3.4")
def test_parse_address_answers_as_ipaddress_on_near_ipv6(text: str) -> None:
    same_as_ipaddress(text)


# The checks across nodes compare addresses as integers first; what they
# accept and reject must still follow ipaddress equality, which tells the
# versions apart and weighs an IPv6 scope id.

def b64_key(byte: int) -> str:
    return base64.b64encode(bytes([byte]) * 32).decode()


def cluster(network: str, *nodes: tuple[str, str]) -> dict[str, Any]:
    """Return a decoded cluster file with a master and workers at `nodes`."""
    return {
        "cluster": {"name": "c", "interface": "wg0", "network": network},
        "nodes": [
            {"name": f"n{i}", "role": "master" if i == 0 else "worker",
             "address": address, "vpn_address": vpn, "public_key": b64_key(i)}
            for i, (address, vpn) in enumerate(nodes)
        ],
    }


@pytest.mark.parametrize("first, second", [
    ("0.0.0.1", "::1"),  # one integer, two versions
    ("fe80::1%eth0", "fe80::1%eth1"),
    ("fe80::1%eth0", "fe80::1"),
])
def test_addresses_equal_only_as_integers_are_distinct(
    first: str, second: str,
) -> None:
    data = cluster("10.77.0.0/24", (first, "10.77.0.1"), (second, "10.77.0.2"))
    nodes = spec.parse(data, "f").nodes
    assert [str(node.address) for node in nodes] == [first, second]


def test_the_same_scoped_address_on_two_nodes_is_refused() -> None:
    data = cluster("10.77.0.0/24", ("fe80::1%eth0", "10.77.0.1"),
                   ("fe80::1%eth0", "10.77.0.2"))
    with pytest.raises(SpecError) as caught:
        spec.parse(data, "f")
    assert (caught.value.node, caught.value.field) == ("n1", "address")
    assert "fe80::1%eth0 is also used by node 'n0'" in str(caught.value)


def test_a_scoped_network_address_is_not_the_network_address() -> None:
    data = cluster("fd00::/64", ("192.0.2.1", "fd00::1"),
                   ("192.0.2.2", "fd00::%eth0"))
    assert str(spec.parse(data, "f").nodes[1].vpn_address) == "fd00::%eth0"
    data["nodes"][1]["vpn_address"] = "fd00::"
    with pytest.raises(SpecError, match="network or broadcast address"):
        spec.parse(data, "f")
